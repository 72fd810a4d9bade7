"""`unmask train`, `eval`, `promote` and every `gpu` step: a description line and each option's
default in --help (the same check as tests/test_help.py); train's options are its config's fields."""

from __future__ import annotations

from dataclasses import fields

import pytest

from model.train_config import TrainConfig
from tests.test_help import _check, _parser

COMMANDS = [("train",), ("eval",), ("promote",)] + [
    ("gpu", step) for step in ("pack", "size", "train", "unpack")
]


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_model_help_has_a_description_and_defaults(path):
    _check(_parser(path))


def test_train_options_are_the_config_fields():
    """Every TrainConfig field a command line can set is an option, with the field's help text,
    and not giving it leaves the preset's value in charge (None)."""
    parser = _parser(("train",))
    by_dest = {a.dest: a for a in parser._actions}
    for f in fields(TrainConfig):
        if f.metadata.get("cli") is False:
            assert f.name not in by_dest or f.name == "method"
            continue
        action = by_dest[f.name]
        assert action.default is None and f.metadata["help"].split("(")[0][:20] in action.help
    # The flags the README and the Makefile use still parse.
    args = parser.parse_args(
        ["--method", "unmask", "--data", "d", "--no-fresh-masks", "--budget", "50m",
         "--warmup-steps", "600", "--val-every", "100", "--ckpt-every", "100", "--resume",
         "--no-export", "--precision", "bf16"]
    )  # fmt: skip
    assert (args.fresh_masks, args.export, args.warmup_steps, args.resume) == (
        False,
        False,
        600,
        True,
    )
