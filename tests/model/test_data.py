"""`unmask data build` on a folder of awkward inputs: a manifest row with the right status for
every file, the docs/DESIGN.md layout, a no-op rerun, deterministic resume, load_split and the sheet."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model import cli
from model.data import (
    BuildConfig,
    build_dataset,
    contact_sheet,
    id_of,
    load_split,
    seed_of,
    split_of,
)
from model.masks import STYLES
from tests.conftest import shared_or_skip

EXPECTED = {
    "astronaut.jpg": "ok",
    "exif_rotated.jpg": "ok",  # pixels stored sideways, EXIF orientation tag says how to turn them
    "rotated_pixels.png": "ok",  # sideways with no tag: found on a turned copy
    "turned_150.png": "ok",  # turned 150 degrees: found on the 180 copy, fitted again level
    "flipped.jpg": "ok",
    "cmyk.jpg": "ok",
    "rgba.png": "ok",
    "truncated.jpg": "unreadable",
    "notes.jpg": "not_image",  # a text file named .jpg
    "README.txt": "not_image",
    "landscape.jpg": "no_face",
    "two_faces.jpg": "several_faces",
    "tiny.png": "too_small",  # the astronaut at 128 x 128: a 23 px face
}


def _make_inputs(folder: Path, astronaut: np.ndarray) -> None:
    from skimage import data

    folder.mkdir(parents=True)
    img = Image.fromarray(astronaut)
    img.save(folder / "astronaut.jpg", quality=92)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    Image.fromarray(np.ascontiguousarray(np.rot90(astronaut, 1))).save(
        folder / "exif_rotated.jpg", quality=92, exif=exif.tobytes()
    )
    Image.fromarray(np.ascontiguousarray(np.rot90(astronaut, 3))).save(
        folder / "rotated_pixels.png"
    )
    Image.fromarray(np.ascontiguousarray(astronaut[:, ::-1])).save(
        folder / "flipped.jpg", quality=92
    )
    img.convert("CMYK").save(folder / "cmyk.jpg", quality=92)
    rgba = np.dstack([astronaut, np.full(astronaut.shape[:2], 255, np.uint8)])
    rgba[:40, :, 3] = 0
    Image.fromarray(rgba).save(folder / "rgba.png")
    full = (folder / "astronaut.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(full[: len(full) // 3])
    (folder / "notes.jpg").write_text("not a picture, just words\n")
    (folder / "README.txt").write_text("photos for the test\n")
    Image.fromarray(data.coffee()).save(folder / "landscape.jpg", quality=92)
    two = np.hstack([astronaut, astronaut[:, ::-1]])
    Image.fromarray(two).save(folder / "two_faces.jpg", quality=92)
    img.resize((128, 128), Image.Resampling.BOX).save(folder / "tiny.png")
    Image.fromarray(_turned(astronaut, 150)).save(folder / "turned_150.png")


def _turned(image: np.ndarray, degrees: float) -> np.ndarray:
    import cv2

    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    side = int(np.ceil(np.hypot(h, w)))
    m[:, 2] += (side - w) / 2, (side - h) / 2
    return cv2.warpAffine(image, m, (side, side), borderValue=(200, 200, 200))


@pytest.fixture(scope="module")
def built(tmp_path_factory, astronaut):
    root = tmp_path_factory.mktemp("build")
    _make_inputs(root / "in", astronaut)
    report = build_dataset(
        BuildConfig(root / "in", root / "out", seed=7, workers=1), progress=False
    )
    return root, report


def _manifest(out: Path) -> list[dict]:
    with open(out / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_every_file_has_a_row_with_the_right_status(built):
    root, report = built
    rows = {r["source"]: r for r in _manifest(root / "out")}
    assert set(rows) == set(EXPECTED)
    assert {s: r["status"] for s, r in rows.items()} == EXPECTED
    for r in rows.values():
        if r["status"] != "ok":
            assert r["reason"], f"{r['source']}: a failure needs a reason"
    assert report["total"] == len(EXPECTED)
    assert report["counts"] == {
        "ok": 7,
        "unreadable": 1,
        "not_image": 2,
        "no_face": 1,
        "several_faces": 1,
        "too_small": 1,
    }


def test_turned_photo_is_stored_upright(built, astronaut):
    """A photo turned by 150 degrees (no EXIF) was stored aligned 30 degrees off, as `ok`."""
    import cv2

    root, _ = built
    rows = {r["source"]: r for r in _manifest(root / "out")}
    faces = [
        cv2.GaussianBlur(
            np.asarray(Image.open(root / "out" / "face" / f"{rows[n]['id']}.png")).astype(
                np.float32
            ),
            (0, 0),
            3,
        )
        for n in ("astronaut.jpg", "turned_150.png")
    ]
    centre = np.s_[60:200, 60:196]
    assert np.abs(faces[0][centre] - faces[1][centre]).mean() < 14


def test_layout_and_rows(built):
    root, _ = built
    out = root / "out"
    rows = _manifest(out)
    assert list(rows[0]) == [
        "id",
        "source",
        "split",
        "status",
        "reason",
        "mask_style",
        "mask_colour",
        "yaw_deg",
        "seed",
    ]
    ok = [r for r in rows if r["status"] == "ok"]
    with np.load(out / "landmarks.npz") as z:
        assert sorted(z.files) == sorted(r["id"] for r in ok)
        for r in ok:
            assert z[r["id"]].shape == (68, 2) and z[r["id"]].dtype == np.float32
    for r in rows:
        assert r["id"] == id_of(r["source"]) and r["split"] == split_of(r["source"])
        assert int(r["seed"]) == seed_of(7, r["source"])
    for r in ok:
        assert r["mask_style"] in STYLES and r["mask_colour"] and abs(float(r["yaw_deg"])) < 20
        face = np.asarray(Image.open(out / "face" / f"{r['id']}.png"))
        masked = np.asarray(Image.open(out / "masked" / f"{r['id']}.png"))
        seg = np.asarray(Image.open(out / "seg" / f"{r['id']}.png"))
        assert face.shape == masked.shape == (256, 256, 3) and seg.shape == (256, 256)
        assert set(np.unique(seg)) <= {0, 255}
        assert not (face != masked).any(axis=2)[seg == 0].any()  # changed only under the mask
    assert json.loads((out / "report.json").read_text())["counts"]["ok"] == len(ok)
    assert not list(out.rglob("*.tmp*")) and not (out / "progress.jsonl").exists()


def test_upright_copies_give_the_same_face(built):
    root, _ = built
    out = root / "out"
    faces = {
        s: np.asarray(Image.open(out / "face" / f"{id_of(s)}.png")).astype(int)
        for s in EXPECTED
        if EXPECTED[s] == "ok"
    }
    for name in ("exif_rotated.jpg", "rotated_pixels.png", "rgba.png", "cmyk.jpg"):
        assert np.abs(faces[name] - faces["astronaut.jpg"]).mean() < 12, name


def test_rerun_is_a_no_op(built, capsys):
    root, _ = built
    out = root / "out"
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    code = cli.main(
        [
            "data",
            "build",
            "--faces",
            str(root / "in"),
            "--out",
            str(out),
            "--seed",
            "7",
            "--workers",
            "1",
        ]
    )
    assert code == 0
    assert "nothing to do" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_resume_redoes_only_what_is_missing_and_identically(built, tmp_path):
    root, _ = built
    out = tmp_path / "out"
    shutil.copytree(root / "out", out)
    victim = out / "masked" / f"{id_of('flipped.jpg')}.png"
    original = victim.read_bytes()
    victim.unlink()
    report = build_dataset(BuildConfig(root / "in", out, seed=7, workers=1), progress=False)
    assert report["processed"] == 1 and report["skipped"] == len(EXPECTED) - 1
    assert victim.read_bytes() == original  # same seed, same mask, byte for byte
    with pytest.raises(ValueError, match="another --out"):
        build_dataset(BuildConfig(root / "in", out, seed=8, workers=1), progress=False)


def test_interrupted_run_resumes_from_its_journal(built, tmp_path):
    # A run killed before the manifest was written leaves progress.jsonl: its rows count as done.
    root, _ = built
    out = tmp_path / "out"
    shutil.copytree(root / "out", out)
    rows = _manifest(out)
    with np.load(out / "landmarks.npz") as z:
        lms = {k: z[k].tolist() for k in z.files}
    (out / "manifest.csv").unlink()
    (out / "landmarks.npz").unlink()
    with open(out / "progress.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps({"row": r, "landmarks": lms.get(r["id"])}) + "\n")
        f.write('{"row": {"sour')  # the line the kill cut short
    report = build_dataset(BuildConfig(root / "in", out, seed=7, workers=1), progress=False)
    assert report["processed"] == 0 and report["total"] == len(EXPECTED)
    assert _manifest(out) == rows and not (out / "progress.jsonl").exists()
    assert (
        len(load_split(out, "train")) + len(load_split(out, "val")) + len(load_split(out, "test"))
        == 7
    )


def test_split_is_deterministic_80_10_10():
    names = [f"{i}_0_0_2017.jpg.chip.jpg" for i in range(3000)]
    splits = [split_of(n) for n in names]
    assert splits == [split_of(n) for n in names]
    share = {s: splits.count(s) / len(splits) for s in ("train", "val", "test")}
    assert abs(share["train"] - 0.8) < 0.03 and abs(share["val"] - 0.1) < 0.02
    assert seed_of(0, "a.jpg") != seed_of(1, "a.jpg") != seed_of(0, "b.jpg")


def test_load_split(built):
    root, _ = built
    out = root / "out"
    parts = [load_split(out, s) for s in ("train", "val", "test")]
    assert sum(len(p) for p in parts) == 7
    p = max(parts, key=len)
    n = len(p)
    assert p.face.shape == p.masked.shape == (n, 256, 256, 3) and p.face.dtype == np.uint8
    assert p.seg.shape == (n, 256, 256) and p.seg.dtype == bool
    assert p.landmarks.shape == (n, 68, 2) and p.landmarks.dtype == np.float32
    assert not ((p.face != p.masked).any(axis=3) & ~p.seg).any()
    assert len(load_split(out, p.ids and "train", limit=1)) <= 1
    with pytest.raises(ValueError):
        load_split(out, "holdout")
    with pytest.raises(FileNotFoundError):
        load_split(out / "nowhere", "train")


def test_contact_sheet(built, tmp_path):
    root, _ = built
    path = contact_sheet(root / "out", tmp_path / "figures" / "sheet.png", n=4, seed=0)
    sheet = np.asarray(Image.open(path))
    assert sheet.ndim == 3 and sheet.shape[1] >= 3 * 128


@pytest.mark.data
def test_utkface_60_images_two_workers(tmp_path):
    src = shared_or_skip("utkface", "images")
    folder = tmp_path / "utk"
    folder.mkdir()
    for p in sorted(src.iterdir())[:60]:
        (folder / p.name).symlink_to(p)
    templates = shared_or_skip("masktheface")
    report = build_dataset(
        BuildConfig(folder, tmp_path / "out", templates=templates, workers=2), progress=False
    )
    assert report["total"] == 60
    assert report["counts"].get("ok", 0) >= 57, report["counts"]
    rows = _manifest(tmp_path / "out")
    assert any(r["mask_style"].startswith("template:") for r in rows)
