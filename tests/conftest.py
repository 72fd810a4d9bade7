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
