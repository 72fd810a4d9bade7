"""Shared test fixtures: offline environment, the research data folder (skip when absent), test images."""

from __future__ import annotations

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
