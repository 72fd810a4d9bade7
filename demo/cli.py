"""`unmask demo`: its options here, so that `unmask demo --help` answers without importing gradio."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Serves on http://HOST:PORT with the shipped weights, offline. Without --host / --port,\n"
        "Gradio's own GRADIO_SERVER_NAME / GRADIO_SERVER_PORT are honoured. UNMASK_UNTRAINED=1\n"
        "(for tests only) uses randomly initialised networks instead of the weights (noise output)."
    )
    parser.add_argument(
        "--host",
        default=None,
        help=f"address to listen on (default: $GRADIO_SERVER_NAME, else {DEFAULT_HOST})",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"port (default: $GRADIO_SERVER_PORT, else {DEFAULT_PORT})",
    )


def listen_address(
    host: str | None, port: int | None, environ: Mapping[str, str] = os.environ
) -> tuple[str, int]:
    """(host, port): a flag wins, then Gradio's environment variables, then our defaults.
    Raises ValueError with a readable message for a GRADIO_SERVER_PORT that is not a port."""
    host = host or environ.get("GRADIO_SERVER_NAME", "").strip() or DEFAULT_HOST
    if port is None:
        raw = environ.get("GRADIO_SERVER_PORT", "").strip()
        try:
            port = int(raw) if raw else DEFAULT_PORT
        except ValueError:
            raise ValueError(f"GRADIO_SERVER_PORT={raw!r} is not a port number") from None
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range (1-65535)")
    return host, port


def run(args: argparse.Namespace) -> int:
    try:
        host, port = listen_address(args.host, args.port)
    except ValueError as err:
        print(f"unmask demo: {err}", file=sys.stderr)
        return 2

    from demo.app import serve

    return serve(host, port)
