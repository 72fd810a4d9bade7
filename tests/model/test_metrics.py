"""Metric functions against hand-computed values: identical images, a known shift, a known mask."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from model import faces
from model import metrics as M


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(1)
    # Values kept in 20..230 so a +-10 shift never clips.
    return rng.integers(20, 231, (64, 64, 3), dtype=np.uint8)


def _box_mask(shape=(64, 64), top=10, left=5, h=20, w=30) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[top : top + h, left : left + w] = True
    return mask


def test_identical_images(image):
    mask = _box_mask()
    assert M.mse_masked(image, image, mask) == 0.0
    assert M.psnr(image, image) == math.inf
    assert M.ssim(image, image) == pytest.approx(1.0, abs=1e-6)
    assert M.lpips(image, image) == pytest.approx(0.0, abs=1e-6)


def test_constant_shift_inside_mask(image):
    mask = _box_mask()  # 20 x 30 = 600 pixels
    pred = image.copy()
    pred[mask] += 10  # +10 on each of R, G, B
    # Eq. 5: per mask pixel 3 * 10^2 = 300, averaged over mask pixels -> 300 exactly.
    assert M.mse_masked(pred, image, mask) == 300.0
    # Whole-image PSNR: MSE = 600 * 300 / (64 * 64 * 3).
    mse_whole = 600 * 300 / (64 * 64 * 3)
    assert M.psnr(pred, image) == pytest.approx(10 * math.log10(255**2 / mse_whole), abs=1e-9)
    assert 0.0 < M.ssim(pred, image) < 1.0
    # The shift outside the mask does not count in the masked MSE.
    outside = image.copy()
    outside[~mask] -= 10
    assert M.mse_masked(outside, image, mask) == 0.0


def test_mask_of_known_size(image):
    mask = _box_mask(h=10, w=20)  # 200 pixels
    pred = image.copy()
    r, c = np.argwhere(mask)[0]
    pred[r, c, 0] += 30  # one pixel, one channel: 900 summed over the mask -> 900 / 200
    assert M.mse_masked(pred, image, mask) == pytest.approx(4.5)
    assert math.isnan(M.mse_masked(pred, image, np.zeros((64, 64), bool)))


def test_batched_forms_match_numpy(image):
    mask = _box_mask()
    rng = np.random.default_rng(2)
    noisy = np.clip(image.astype(int) + rng.integers(-25, 26, image.shape), 0, 255).astype(np.uint8)
    pred_t, real_t = M.to_tensor(np.stack([noisy, image])), M.to_tensor(np.stack([image, image]))
    mask_t = torch.from_numpy(np.stack([mask, mask])[:, None].astype(np.float32))
    mse = M.mse_masked_batch(pred_t, real_t, mask_t)
    assert mse[0].item() == pytest.approx(M.mse_masked(noisy, image, mask), rel=1e-5)
    assert mse[1].item() == 0.0
    psnr = M.psnr_batch(pred_t, real_t)
    assert psnr[0].item() == pytest.approx(M.psnr(noisy, image), rel=1e-5)
    assert math.isinf(psnr[1].item())
    ssim = M.ssim_batch(pred_t, real_t)
    assert ssim[0].item() == pytest.approx(M.ssim(noisy, image), abs=1e-5)
    assert ssim[1].item() == pytest.approx(1.0, abs=1e-6)
    lp = M.lpips_batch(pred_t, real_t)
    assert lp[0].item() == pytest.approx(M.lpips(noisy, image), abs=1e-5)
    assert lp[0].item() > 0 and lp[1].item() == pytest.approx(0.0, abs=1e-6)


def test_tensor_round_trip(image):
    assert np.array_equal(M.to_uint8(M.to_tensor(image))[0], image)


def test_shape_and_dtype_errors(image):
    mask = _box_mask()
    with pytest.raises(ValueError, match="uint8"):
        M.mse_masked(image.astype(np.float32), image, mask)
    with pytest.raises(ValueError, match="differ in shape"):
        M.psnr(image, image[:32])
    with pytest.raises(ValueError, match="bool"):
        M.mse_masked(image, image, mask.astype(np.uint8))
    with pytest.raises(ValueError, match="mask must be"):
        M.mse_masked(image, image, mask[:10])
    with pytest.raises(ValueError, match="uint8"):
        M.ssim(image[..., 0], image[..., 0])
    with pytest.raises(ValueError, match="B, 3, H, W"):
        M.psnr_batch(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))
    with pytest.raises(ValueError, match="mask must be"):
        M.mse_masked_batch(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8), torch.zeros(1, 8, 8))


def test_nme_hand_computed():
    ref = np.zeros((68, 2))
    ref[M.LEFT_EYE_OUTER], ref[M.RIGHT_EYE_OUTER] = (0, 0), (50, 0)  # inter-ocular distance 50
    moved = ref + np.array([3.0, 4.0])  # every point 5 px away
    assert M.nme(moved, ref) == pytest.approx(5 / 50)
    assert M.nme(ref, ref) == 0.0
    with pytest.raises(ValueError, match="68, 2"):
        M.nme(ref[:5], ref)


@pytest.fixture(scope="module")
def aligned_astronaut(astronaut):
    return faces.find_and_align(astronaut)


def test_identity_and_landmarks_on_a_real_face(aligned_astronaut):
    face, lms = aligned_astronaut.image, aligned_astronaut.landmarks
    assert M.identity_distance(face, face, lms) == 0.0
    assert M.landmark_nme(face, face, lms) == 0.0
    # Covering the lower face moves the descriptor and the jaw/mouth points; mild noise barely does.
    noisy = np.clip(face.astype(int) + np.random.default_rng(0).integers(-8, 9, face.shape), 0, 255)
    noisy = noisy.astype(np.uint8)
    covered = face.copy()
    covered[150:] = 128
    d_noisy, d_covered = (
        M.identity_distance(noisy, face, lms),
        M.identity_distance(covered, face, lms),
    )
    assert 0 < d_noisy < 0.3 < d_covered
    assert M.landmark_nme(noisy, face, lms) < M.landmark_nme(covered, face, lms)
    with pytest.raises(ValueError, match="68, 2"):
        M.box_of(lms[:10])


def test_ssim_agrees_with_scikit_image(image):
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(3)
    noisy = np.clip(image.astype(int) + rng.integers(-25, 26, image.shape), 0, 255).astype(np.uint8)
    # The same definition written independently: Gaussian window sigma 1.5 (truncated at 11 px),
    # population covariances, data range 255, mean over the RGB channels.
    expected = structural_similarity(
        noisy,
        image,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
        channel_axis=2,
    )
    assert M.ssim(noisy, image) == pytest.approx(expected, abs=1e-5)
