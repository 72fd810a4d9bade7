"""Every --help of the study, demo and report commands has a description line and shows each
option's default (or says it has none, or that it is required); on/off flags need none."""

from __future__ import annotations

import argparse

import pytest

from analysis import report
from model.cli import build_parser

COMMANDS = [("study", "build"), ("study", "serve"), ("study", "export"), ("demo",)]


def _parser(path: tuple[str, ...]) -> argparse.ArgumentParser:
    parser = build_parser(only=path[0])
    for name in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return parser


def _check(parser: argparse.ArgumentParser) -> None:
    assert parser.description and parser.description.strip(), parser.prog
    formatter = parser._get_formatter()
    for action in parser._actions:
        if not action.option_strings or action.nargs == 0:  # positional, --help, a flag
            continue
        text = formatter._expand_help(action)
        said = "(required)" in text if action.required else "default" in text
        assert said, (parser.prog, action.option_strings, text)
    assert parser.description in parser.format_help()


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_unmask_help_has_a_description_and_defaults(path):
    _check(_parser(path))


def test_report_help_has_a_description_and_defaults():
    _check(report.build_parser())
