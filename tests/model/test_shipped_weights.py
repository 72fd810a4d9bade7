"""Golden test on what ships: every file in model/weights loads through the registry (or its own
loader), and on a fixed synthetic masked face (the astronaut, aligned by the real pipeline, one
seeded mask of each procedural style) every learned method fills the hole far closer to the truth
than the masked input, and `unmask` beats `eigenface` and `telea`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.config import WEIGHTS_DIR
from model.masks import STYLES, apply_mask
from model.methods import METHODS
from model.metrics import mse_masked

SHIPPED = sorted(p.stem for p in WEIGHTS_DIR.glob("*.safetensors"))
LEARNED = [k for k, s in METHODS.items() if s.trainable]


@pytest.fixture(scope="module")
def cases(astronaut):
    """[(style, truth, masked, hole)] on the astronaut's aligned face."""
    from model.faces import find_and_align

    aligned = find_and_align(astronaut)
    out = []
    for i, style in enumerate(STYLES):
        m = apply_mask(aligned.image, aligned.landmarks, seed=100 + i, style=style)
        out.append((style, aligned.image, m.image, m.seg))
    return out


@pytest.fixture(scope="module")
def mse_of(cases):
    """key -> mean MSE (mask region, 0-255 RGB summed) over the styles, from the shipped weights."""
    torch.set_num_threads(2)
    table = {
        "masked": np.mean([mse_masked(masked, truth, hole) for _, truth, masked, hole in cases])
    }
    for key, spec in METHODS.items():
        method = spec.load(device="cpu") if spec.trainable else spec.load()
        table[key] = np.mean(
            [
                mse_masked(method.inpaint(masked, hole), truth, hole)
                for _, truth, masked, hole in cases
            ]
        )
    return table


def test_every_learned_method_ships():
    assert set(LEARNED) <= set(SHIPPED), f"no weights for {set(LEARNED) - set(SHIPPED)}"


@pytest.mark.parametrize("key", SHIPPED)
def test_every_weights_file_loads(key):
    """Through the registry for methods; the helpers through their own loaders. sha256 checked."""
    if key in METHODS:
        method = METHODS[key].load(device="cpu")
        assert method.card["sha256"]
    elif key == "segmenter":
        from model.segmenter import load_segmenter

        assert load_segmenter().net is not None
    else:
        from model.checkpoint import load_weights
        from model.networks import from_architecture

        state, card = load_weights(key)
        from_architecture(card["architecture"]).load_state_dict(state)


@pytest.mark.parametrize("key", LEARNED)
def test_learned_method_beats_the_masked_input(key, mse_of):
    assert mse_of[key] < 0.5 * mse_of["masked"], (key, mse_of[key], mse_of["masked"])


def test_unmask_beats_telea(mse_of):
    assert mse_of["unmask"] < mse_of["telea"], mse_of


def test_unmask_beats_eigenface(mse_of):
    assert mse_of["unmask"] < mse_of["eigenface"], mse_of
