"""The `unmask` console script: one entry point, one subcommand per job.

Each subcommand lives in the module that owns the job; that module defines
`add_arguments(parser)` and `run(args) -> int`. Modules are imported only when their subcommand
is used, so `unmask --help` stays fast (no torch, no gradio).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import textwrap

# name -> (module, one-line help). The module owns its options.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "data": ("model.data", "build the paired masked-face dataset, or a contact sheet of it"),
    "train": ("model.train", "train a method, the mask segmenter or the landmark regressor"),
    "promote": (
        "model.promote",
        "ship a training run's weights into model/weights, only when better on validation",
    ),
    "gpu": ("model.gpu_job", "pack, run and unpack the one job that trains every network on a GPU"),
    "eval": ("model.evaluate", "evaluate methods on a dataset split (papers' Tables 1 and 2)"),
    "inpaint": (
        "model.inpaint",
        "remove the mask from photos: detect, align, segment, inpaint, paste back",
    ),
    "demo": ("demo.cli", "serve the Gradio demo (side-by-side comparison)"),
    "study": ("study.cli", "build stimuli, serve the rater study, export responses"),
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """--help with each option's default: "(default: X)" after its help, unless the help says it
    already; "none" for an option unset by default, "required" for one without a default;
    nothing for an on/off flag. Descriptions and
    epilogs keep their line breaks. Every `unmask` command gets it (`finish_help`)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        flag = action.nargs == 0  # --resume, --no-export: on or off, no value to show
        if "default" in text or not action.option_strings or flag or action.default is False:
            return text
        if action.required:  # nothing to default to: argparse asks for it
            return f"{text} (required)".lstrip()
        if action.default in (None, ""):
            return f"{text} (default: none)".lstrip()
        return super()._get_help_string(action)


def finish_help(parser: argparse.ArgumentParser, description: str | None = None) -> None:
    """A parser and every sub-parser below it (`unmask gpu pack`): a description line (its one-line
    help when it has none) and defaults shown, also for options given no help text."""
    parser.formatter_class = HelpFormatter
    parser.description = parser.description or description
    if parser.epilog and "\n" not in parser.epilog:  # the raw formatter would print one long line
        parser.epilog = textwrap.fill(parser.epilog, 79)
    # argparse has no public API to walk a parser's options and sub-parsers.
    for action in parser._actions:
        if action.help is None and action.option_strings and action.default is not False:
            action.help = "(default: %(default)s)"  # argparse prints nothing for help=None
            if action.default is None:
                action.help = "(default: none)"
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                finish_help(sub, helps.get(name))


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unmask",
        description="Remove face masks from photos with GANs, and prove it with people.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == only:  # import only the module whose options are needed
            importlib.import_module(module_name).add_arguments(p)
            finish_help(p)
    return parser


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in SUBCOMMANDS:
        parser = build_parser()
        if command is not None:
            parser.error(f"unknown command {command!r}; choose from {', '.join(SUBCOMMANDS)}")
        parser.print_help()
        return 0 if ("-h" in argv or "--help" in argv) else 2
    args = build_parser(only=command).parse_args(argv)
    module = importlib.import_module(SUBCOMMANDS[command][0])
    try:
        return int(module.run(args) or 0)
    except FileNotFoundError as err:  # a missing dataset, run folder or file: its message alone
        print(f"unmask {command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
