"""The `unmask` console script: one entry point, one subcommand per job.

Each subcommand lives in the module that owns the job; that module defines
`add_arguments(parser)` and `run(args) -> int`. Modules are imported only when their subcommand
is used, so `unmask --help` stays fast (no torch, no gradio).
"""

from __future__ import annotations

import argparse
import importlib
import sys

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
    return parser


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
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
