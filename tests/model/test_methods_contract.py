"""Contract tests over every registry method (untrained networks at the `tiny` preset, 64x64 faces):
shapes, dtype, determinism, known pixels kept by compositing methods, Telea really inpainting."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from model.checkpoint import WeightsError
from model.methods import METHODS

SIZE = 64


def load(key: str):
    spec = METHODS[key]
    return spec.load(untrained=True, preset="tiny", device="cpu") if spec.trainable else spec.load()


@pytest.fixture(scope="module")
def face(astronaut) -> np.ndarray:
    return cv2.resize(astronaut[30:230, 140:340], (SIZE, SIZE), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def hole() -> np.ndarray:
    m = np.zeros((SIZE, SIZE), bool)
    m[36:60, 14:50] = True  # the lower face, as a face mask covers it
    return m


@pytest.mark.parametrize("key", list(METHODS))
def test_inpaint_shape_dtype_determinism(key, face, hole):
    torch.set_num_threads(1)
    method = load(key)
    assert method.spec.key == key
    masked = face.copy()
    masked[hole] = (90, 140, 200)
    out = method.inpaint(masked, hole)
    assert out.shape == face.shape and out.dtype == np.uint8
    assert np.array_equal(out, method.inpaint(masked, hole)), "same input, same output"
    assert np.array_equal(out, load(key).inpaint(masked, hole)), "a second build (same seed) agrees"
    if method.composites:
        assert np.array_equal(out[~hole], masked[~hole]), "known pixels must be returned unchanged"


@pytest.mark.parametrize("key", list(METHODS))
def test_inpaint_batch_contract(key, face, hole):
    torch.set_num_threads(1)
    method = load(key)
    x = (
        torch.from_numpy(np.stack([face, face[:, ::-1].copy()])).permute(0, 3, 1, 2).float() / 127.5
        - 1
    )
    m = torch.from_numpy(np.stack([hole, hole[:, ::-1].copy()]))[:, None].float()
    y = method.inpaint_batch(x, m)
    assert y.shape == x.shape and y.dtype == torch.float32 and y.device == x.device
    assert float(y.min()) >= -1 and float(y.max()) <= 1
    assert torch.equal(y, method.inpaint_batch(x, m))
    # The batched path and the one-image path give the same picture (up to uint8 rounding).
    one = method.inpaint(face, hole).astype(int)
    batched = ((y[0].permute(1, 2, 0) + 1) * 127.5).round().numpy().astype(int)
    assert np.abs(one - batched).max() <= 1
    if method.composites:
        assert torch.equal(y * (1 - m), x * (1 - m))


def test_telea_fills_a_smooth_hole():
    """On a smooth gradient Telea continues the gradient into the hole."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    truth = np.stack([xx * 3, yy * 3, 128 + 0 * xx], -1).clip(0, 255).astype(np.uint8)
    hole = np.zeros((SIZE, SIZE), bool)
    hole[24:40, 24:40] = True
    masked = truth.copy()
    masked[hole] = 255
    out = METHODS["telea"].load().inpaint(masked, hole)
    err = np.abs(out.astype(int) - truth.astype(int))[hole]
    assert err.mean() < 8, err.mean()
    assert np.abs(masked.astype(int) - truth.astype(int))[hole].mean() > 50


def test_patchmatch_copies_nothing_from_outside_the_photo(astronaut):
    """The flat grey fill where the aligned square runs past the photo is no source for
    PatchMatch: no grey patch is pasted into the face (before: 2-12 % of these holes)."""
    from model.faces import OUTSIDE_FILL, find_and_align
    from model.masks import apply_mask

    aligned = find_and_align(astronaut)
    face = aligned.image.copy()
    face[:, :50] = face[:, -50:] = face[-50:] = OUTSIDE_FILL  # a photo cropped tight around it
    inside = np.zeros(face.shape[:2], bool)
    inside[:-50, 50:-50] = True
    method = METHODS["patchmatch"].load()
    for seed in (0, 1, 2):
        m = apply_mask(face, aligned.landmarks, seed=seed, style="surgical")
        out = method.inpaint(m.image, m.seg)
        assert not (out[m.seg & inside] == OUTSIDE_FILL).all(-1).any(), seed


@pytest.mark.parametrize("key", [k for k, s in METHODS.items() if s.trainable])
def test_missing_weights_name_the_file(key, tmp_path):
    with pytest.raises(WeightsError, match=str(tmp_path / f"{key}.safetensors")):
        METHODS[key].load(weights_dir=tmp_path, device="cpu")


@pytest.mark.parametrize(
    "key", [k for k, s in METHODS.items() if s.recipe and s.recipe.self_ensemble]
)
def test_self_ensemble_is_mirror_symmetric(key, face, hole):
    """A self-ensembled method answers a mirrored face with the mirror of its answer (up to float
    rounding), which one pass of a generator with random weights does not."""
    from model.methods.gan import generate

    torch.set_num_threads(1)
    method = load(key)
    torch.manual_seed(0)
    with torch.no_grad():  # random weights everywhere, so that no layer is symmetric by chance
        for p in method.net.parameters():
            p.normal_(0, 0.2)
    x = torch.from_numpy(face).permute(2, 0, 1)[None].float() / 127.5 - 1
    m = torch.from_numpy(hole)[None, None].float()
    y, y_mirrored = method.inpaint_batch(torch.cat([x, x.flip(-1)]), torch.cat([m, m.flip(-1)]))
    assert torch.allclose(y_mirrored, y.flip(-1), atol=1e-5)
    with torch.no_grad():
        one, one_mirrored = generate(
            method.recipe, method.net, torch.cat([x, x.flip(-1)]), torch.cat([m, m.flip(-1)])
        )
    assert (one_mirrored - one.flip(-1)).abs().max() > 0.01, "one pass is not symmetric"
