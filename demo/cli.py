"""`unmask demo`: its options here, so that `unmask demo --help` answers without importing gradio."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Serves on http://HOST:PORT with the shipped weights, offline. UNMASK_UNTRAINED=1 (for "
        "tests only) uses randomly initialised networks instead of the weights (noise output)."
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")


def run(args: argparse.Namespace) -> int:
    from demo.app import serve

    return serve(args.host, args.port)
