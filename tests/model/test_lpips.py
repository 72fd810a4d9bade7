"""LPIPS is the real one: published values on the reference examples, identity and symmetry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from model.lpips import load_lpips, weights_path
from model.metrics import to_tensor
from tests.conftest import shared_or_skip


def _example(name: str) -> torch.Tensor:
    path = shared_or_skip("lpips-examples", f"{name}.png")
    return to_tensor(np.asarray(Image.open(path).convert("RGB")))


@pytest.mark.data
def test_published_values_on_reference_examples():
    net = load_lpips()
    ref, p0, p1 = _example("ex_ref"), _example("ex_p0"), _example("ex_p1")
    with torch.no_grad():
        d0, d1 = float(net(ref, p0)), float(net(ref, p1))
    assert d0 == pytest.approx(0.722, abs=1e-3)
    assert d1 == pytest.approx(0.138, abs=1e-3)


def test_zero_on_identical_and_symmetric():
    rng = np.random.default_rng(0)
    a = to_tensor(rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8))
    b = to_tensor(rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8))
    net = load_lpips()
    with torch.no_grad():
        assert torch.allclose(net(a, a), torch.zeros(2), atol=1e-7)
        ab, ba = net(a, b), net(b, a)
    assert torch.allclose(ab, ba, atol=1e-6)
    assert (ab > 0.05).all()


def test_loader_is_cached_and_weights_are_local():
    assert load_lpips() is load_lpips("cpu")
    assert weights_path().name == "alexnet.ckpt" and weights_path().is_file()


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="one shape"):
        load_lpips()(torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 32, 32))
