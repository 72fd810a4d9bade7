"""`unmask demo`'s address: a flag, else Gradio's GRADIO_SERVER_NAME / GRADIO_SERVER_PORT, else ours.

(The shared demo_server fixture starts the real server with the environment variables only.)
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from demo.cli import DEFAULT_HOST, DEFAULT_PORT, listen_address
from model.cli import build_parser
from model.config import REPO_DIR

ENV = {"GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": "7999"}


def _args(*argv: str):
    args = build_parser(only="demo").parse_args(["demo", *argv])
    return args.host, args.port


def test_defaults_without_flags_or_environment():
    assert (
        listen_address(*_args(), environ={}) == (DEFAULT_HOST, DEFAULT_PORT) == ("127.0.0.1", 7860)
    )


def test_environment_is_honoured_when_no_flag_is_given():
    assert listen_address(*_args(), environ=ENV) == ("0.0.0.0", 7999)
    assert listen_address(*_args("--port", "7860"), environ=ENV) == ("0.0.0.0", 7860)


def test_flags_win_over_the_environment():
    assert listen_address(*_args("--host", "127.0.0.1", "--port", "7001"), environ=ENV) == (
        "127.0.0.1",
        7001,
    )


@pytest.mark.parametrize("port", ["seven", "70000", "0"])
def test_a_bad_port_is_a_message(port):
    with pytest.raises(ValueError, match="port"):
        listen_address(None, None, environ={"GRADIO_SERVER_PORT": port})


def test_a_bad_port_ends_the_command_with_a_message():
    out = subprocess.run(
        [sys.executable, "-m", "model", "demo"],
        cwd=REPO_DIR,
        env={"GRADIO_SERVER_PORT": "seven", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert "GRADIO_SERVER_PORT='seven' is not a port number" in out.stderr
    assert "Traceback" not in out.stderr
