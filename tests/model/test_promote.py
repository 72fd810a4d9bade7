"""`unmask promote` for the mask segmenter: the same command as for every network, comparing the run
and the shipped weights side by side on the same validation faces (masked, bare, drawn examples),
refusing a worse run unless --force, and recording what it replaced in the card."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from model.checkpoint import load_weights, save_weights
from model.cli import main
from model.config import WEIGHTS_DIR
from tests.conftest import write_astronaut_dataset

N_VAL = 3


@pytest.fixture(scope="module")
def data(tmp_path_factory, astronaut) -> Path:
    """Three val faces wearing a surgical, a cloth and an N95 mask."""
    root = tmp_path_factory.mktemp("promote") / "data"
    return write_astronaut_dataset(root, astronaut, 0, N_VAL, ("surgical", "cloth", "n95"))


def _untrained_run(folder: Path) -> Path:
    """A segmenter run folder holding seeded, untrained weights (what a failed run would export)."""
    from model.segmenter import load_segmenter

    net = load_segmenter(untrained=True, preset="tiny").net
    card = {"label": "segmenter", "architecture": net.architecture, "images_seen": 0}
    save_weights("segmenter", net.state_dict(), card, folder / "weights")
    return folder


def test_segmenter_promoted_only_when_better_or_forced(data, tmp_path, capsys):
    if not (WEIGHTS_DIR / "segmenter.safetensors").exists():
        pytest.skip("no shipped segmenter in model/weights to compare against")
    torch.set_num_threads(1)
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    bad = _untrained_run(tmp_path / "bad")
    # A run of `python -m model.segmenter_train` from before it exported into weights/: the
    # shipped segmenter's own files at the top of the run folder.
    good = tmp_path / "good"
    good.mkdir()
    for name in ("segmenter.safetensors", "segmenter.json"):
        shutil.copyfile(WEIGHTS_DIR / name, good / name)
    promote = ["promote", "--data", str(data), "--weights-dir", str(shipped), "--faces", "3"]
    promote += ["--templates", ""]  # procedural masks only: no research data needed

    assert main([*promote, "--run", str(bad)]) == 0  # nothing shipped yet: nothing to beat
    capsys.readouterr()
    assert main([*promote, "--run", str(good)]) == 0
    out = capsys.readouterr().out
    for word in ("iou", "bare_under_1pct", "examples_iou", "score", "run", "shipped"):
        assert word in out, (word, out)
    _, card = load_weights("segmenter", shipped)
    assert card["sha256"] == json.loads((good / "segmenter.json").read_text())["sha256"]
    record = card["promotion"]
    assert "first 3 val faces" in record["compared_on"]
    assert record["this"]["score"] > record["replaced"]["score"]
    assert record["this"]["bare_under_1pct"] == 1.0  # the astronaut bare: left alone

    assert main([*promote, "--run", str(bad)]) == 1  # worse: refused, the shipped files kept
    out = capsys.readouterr().out
    assert "not promoted" in out and "scores" in out
    assert load_weights("segmenter", shipped)[1]["sha256"] == card["sha256"]
    assert main([*promote, "--run", str(bad), "--force"]) == 0
    forced = load_weights("segmenter", shipped)[1]
    assert forced["sha256"] != card["sha256"] and "scores" in forced["promotion"]["forced"]


def test_segmenter_train_has_no_promote_of_its_own():
    from model import segmenter_train

    assert not hasattr(segmenter_train, "promote")
    with pytest.raises(SystemExit):
        segmenter_train.main(["--promote", "runs/x"])
