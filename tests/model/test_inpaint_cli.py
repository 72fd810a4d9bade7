"""`unmask inpaint` over a folder: results per photo and method, a message per bad file, no abort."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from model import pipeline
from model.cli import main
from model.methods import METHODS


@pytest.fixture(autouse=True)
def untrained(monkeypatch):
    monkeypatch.setenv(pipeline.UNTRAINED_ENV, "1")


@pytest.fixture(scope="module")
def masked_photo(astronaut) -> np.ndarray:
    """The astronaut wearing a synthetic surgical mask, at photo size."""
    return pipeline.with_synthetic_mask(pipeline.prepare(astronaut), "surgical", seed=0).photo


def test_folder_with_bad_files_is_handled_file_by_file(tmp_path, masked_photo, capsys):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(masked_photo).save(src / "astronaut.png")
    Image.fromarray(np.full((200, 300, 3), 90, np.uint8)).save(src / "blank.jpg")
    (src / "notes.txt").write_text("not a photo")
    out = tmp_path / "out"
    square = np.zeros((256, 256), np.uint8)
    square[150:220, 70:190] = 255
    Image.fromarray(square).save(tmp_path / "mask.png")

    rc = main(["inpaint", "--input", str(src), "--out", str(out), "--method", "telea",
               "--mask", str(tmp_path / "mask.png")])  # fmt: skip

    assert rc == 1  # two files could not be handled, but the batch went on
    text = capsys.readouterr()
    printed = text.out + text.err
    assert "blank.jpg" in printed and "No face" in printed
    assert "notes.txt" in printed and "not an image" in printed
    result = np.asarray(Image.open(out / "astronaut" / "telea.png"))
    assert result.shape == masked_photo.shape
    assert np.asarray(Image.open(out / "astronaut" / "telea_face.png")).shape == (256, 256, 3)
    assert np.array_equal(np.asarray(Image.open(out / "astronaut" / "mask.png")) > 0, square > 0)


def test_every_method_on_one_file(tmp_path, masked_photo):
    path = tmp_path / "face.jpg"
    Image.fromarray(masked_photo).save(path, quality=95)
    # A mask at the photo's size (warped onto the aligned face): untrained segmenters may find none.
    mask = np.zeros(masked_photo.shape[:2], np.uint8)
    mask[230:330, 170:330] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    rc = main(["inpaint", "--input", str(path), "--out", str(tmp_path / "out"), "--method", "all",
               "--mask", str(tmp_path / "mask.png")])  # fmt: skip
    assert rc == 0
    for key in METHODS:
        assert (tmp_path / "out" / "face" / f"{key}.png").is_file()


def test_console_entry_point_reports_a_missing_input(tmp_path):
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "model",
            "inpaint",
            "--input",
            str(tmp_path / "none.png"),
            "--out",
            str(tmp_path / "out"),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1
    assert "no files" in run.stdout
