"""Shared test fixtures: offline environment, the research data folder (skip when absent), test images."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from model.config import set_offline_env, shared_data_dir

set_offline_env()

SHARED = shared_data_dir()


def shared_or_skip(*parts: str):
    """Path inside ../shared/data, or skip the test with a clear reason when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(
            f"research data not present at {path} (set UNMASK_SHARED_DATA or put ../shared/data beside the repo)"
        )
    return path


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """skimage's astronaut (512x512 RGB uint8): a real face that an installed package ships."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


@pytest.fixture
def gan_weights_missing(monkeypatch):
    """model.pipeline as on a fresh clone before any training: every trainable method fails to
    load with the WeightsError a missing file gives; telea still loads."""
    from model import pipeline
    from model.checkpoint import WeightsError
    from model.methods import METHODS

    real = pipeline._method

    def no_gan_weights(key: str, untrained: bool):
        if METHODS[key].trainable:
            raise WeightsError(f"model/weights/{key}.safetensors not found")
        return real(key, untrained)

    monkeypatch.setattr(pipeline, "_method", no_gan_weights)


def write_astronaut_dataset(
    root: Path, astronaut: np.ndarray, n_train: int, n_val: int, styles: tuple[str, ...] = ()
) -> Path:
    """A dataset folder as `unmask data build` writes it (face/, masked/, seg/ PNGs, manifest.csv,
    landmarks.npz), made of shifted, relit copies of the aligned astronaut: the first `n_train`
    faces in the train split, the next `n_val` in val; face i wears mask style styles[i] when
    given, else a seeded random style."""
    import cv2

    from model.faces import find_and_align
    from model.masks import apply_mask

    for d in ("face", "masked", "seg"):
        (root / d).mkdir(parents=True)
    aligned = find_and_align(astronaut)
    rng = np.random.default_rng(0)
    rows, lms = [], {}
    for i in range(n_train + n_val):
        dx, dy = rng.uniform(-6, 6, 2)
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        face = cv2.warpAffine(aligned.image, m, (256, 256), borderMode=cv2.BORDER_REFLECT)
        face = np.clip(face * rng.uniform(0.8, 1.2), 0, 255).astype(np.uint8)
        lm = (aligned.landmarks + [dx, dy]).astype(np.float32)
        fid, seed = f"astro_{i:02d}", 1000 + i
        masked = apply_mask(face, lm, seed=seed, **({"style": styles[i]} if styles else {}))
        for d, img in (("face", face), ("masked", masked.image)):
            cv2.imwrite(str(root / d / f"{fid}.png"), img[:, :, ::-1])
        cv2.imwrite(str(root / "seg" / f"{fid}.png"), masked.seg.astype(np.uint8) * 255)
        split = "train" if i < n_train else "val"
        rows.append(dict(id=fid, source=f"{fid}.jpg", split=split, status="ok", reason="",
                         mask_style=masked.style, mask_colour=masked.colour, yaw_deg="0", seed=seed))  # fmt: skip
        lms[fid] = lm
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    np.savez(root / "landmarks.npz", **lms)
    return root
