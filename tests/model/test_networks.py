"""Architectures and losses: output shapes, the weight budget of the shipped (compact) widths,
and the paper's loss definitions (C2 = Eq. 5 of Yoshihashi et al., C1 on jaw points 0..16)."""

from __future__ import annotations

import pytest
import torch

from model import losses
from model.methods.gan import RECIPES, build_generator, input_channels
from model.metrics import mse_masked_batch
from model.networks import build_network, count_params
from model.networks.landmark_regressor import MIRROR_68
from model.train_config import load_preset

MIB = 2**20


def test_compact_widths_fit_the_weight_budget():
    """docs/DESIGN.md: each shipped file <= 16 MiB, all shipped weights <= 64 MiB (fp16: 2 bytes a parameter)."""
    nets = load_preset("compact")["networks"]
    sizes = {k: count_params(build_generator(k, nets)) for k in RECIPES}
    sizes["segmenter"] = count_params(build_network("unet_segmenter", **nets["unet_segmenter"]))
    sizes["landmark_regressor"] = count_params(
        build_network("landmark_regressor", **nets["landmark_regressor"])
    )
    assert all(2 * n <= 16 * MIB for n in sizes.values()), sizes
    assert 2 * sum(sizes.values()) <= 64 * MIB, sizes
    # unmask's file also holds its prior's buffers (int8 basis, fp16 rest, as exported).
    state = build_generator("unmask", nets).state_dict()
    stored = sum(v.numel() * (1 if v.dtype == torch.int8 else 2) for v in state.values())
    assert stored <= 16 * MIB, stored / MIB
    assert (
        all(sizes[k] <= 4.5e6 for k in RECIPES)
        and sizes["segmenter"] <= 1e6
        and sizes["landmark_regressor"] <= 1e6
    )


@pytest.mark.parametrize("key", list(RECIPES))
def test_tiny_generators_and_discriminators_shapes(key):
    torch.manual_seed(0)
    nets = load_preset("tiny")["networks"]
    g = build_generator(key, nets).eval()
    x, m = torch.rand(2, 3, 64, 64) * 2 - 1, (torch.rand(2, 1, 64, 64) > 0.5).float()
    with torch.no_grad():
        y = (
            g(x, m)
            if RECIPES[key].inputs == "image,mask"
            else g(torch.cat([x, m], 1)[:, : input_channels(RECIPES[key])])
        )
        assert y.shape == x.shape and y.abs().max() <= 1
        d = build_network(
            "patchgan", **nets["patchgan"], in_channels=input_channels(RECIPES[key]) + 3
        )
        assert d(torch.cat([x, m, y], 1)[:, : input_channels(RECIPES[key]) + 3]).shape[1] == 1


def test_paper_pix2pix_unet_is_isolas_size():
    net = build_network("unet_pix2pix", **load_preset("paper")["networks"]["unet_pix2pix"])
    assert 54.0e6 < count_params(net) < 54.5e6  # pix2pix unet_256, ngf 64


def test_masked_mse_is_eq5_and_matches_the_metric():
    torch.manual_seed(0)
    a, b = torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 16, 16) * 2 - 1
    m = torch.zeros(2, 1, 16, 16)
    m[:, :, 8:, 4:12] = 1
    expected = mse_masked_batch(a, b, m).mean()
    torch.testing.assert_close(losses.masked_mse(a, b, m), expected, rtol=1e-5, atol=1e-3)


def test_jaw_landmark_loss_is_zero_for_the_real_face_and_has_a_gradient():
    reg = build_network("landmark_regressor", width=8).eval().requires_grad_(False)
    real = torch.rand(1, 3, 64, 64) * 2 - 1
    assert float(losses.jaw_landmark_loss(reg, real, real)) == 0
    fake = (torch.rand(1, 3, 64, 64) * 2 - 1).requires_grad_()
    losses.jaw_landmark_loss(reg, fake, real).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0


def test_local_adversarial_weighting_is_per_image():
    """Per image, then over the batch: splitting a batch over processes gives the same loss."""
    logits = torch.randn(4, 1, 6, 6)
    w = (torch.rand(4, 1, 6, 6) > 0.3).float()
    whole = losses.adversarial(logits, True, w)
    halves = (
        losses.adversarial(logits[:2], True, w[:2]) + losses.adversarial(logits[2:], True, w[2:])
    ) / 2
    torch.testing.assert_close(whole, halves)


def test_mirror_permutation_is_an_involution_swapping_left_and_right():
    assert sorted(MIRROR_68) == list(range(68))
    assert all(MIRROR_68[MIRROR_68[i]] == i for i in range(68))
    assert (
        MIRROR_68[0] == 16 and MIRROR_68[36] == 45 and MIRROR_68[48] == 54 and MIRROR_68[30] == 30
    )


def test_mirrored_gappy_pca_basis_is_closed_under_mirroring():
    from model.networks.gappy_pca import GappyPCAConfig, fit_gappy_pca

    faces = torch.randint(
        0, 256, (12, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    cfg = GappyPCAConfig(size=16, components=8, mirror=True)
    prior = fit_gappy_pca(faces, cfg)
    mean = prior.mean.view(3, 16, 16)
    assert torch.allclose(mean, mean.flip(-1), atol=1e-6)
    comps = prior.components.view(8, 3, 16, 16)
    # The data's covariance commutes with the flip: each component is symmetric or antisymmetric.
    cos = (comps * comps.flip(-1)).flatten(1).sum(1)  # (8,) of +-1 for unit components
    assert torch.allclose(cos.abs(), torch.ones(8), atol=1e-3), cos
    plain = fit_gappy_pca(faces, GappyPCAConfig(size=16, components=8))
    plain_cos = plain.components.view(8, 3, 16, 16) * plain.components.view(8, 3, 16, 16).flip(-1)
    assert plain_cos.flatten(1).sum(1).abs().min() < 0.9  # random faces: no symmetry without it


@pytest.mark.parametrize("hole_rows", [3, 13])  # a hole smaller, then larger than half
def test_gappy_pca_visible_gram_from_either_side(hole_rows):
    """B_v^T B_v as the full Gram minus the hole's equals the sum over the visible pixels."""
    from model.networks.gappy_pca import _visible_gram

    comp = torch.randn(6, 3 * 16 * 16, generator=torch.Generator().manual_seed(0))
    visible = torch.ones(3, 16, 16, dtype=torch.bool)
    visible[:, 16 - hole_rows :, 2:14] = False
    visible = visible.flatten()
    direct = (comp * visible) @ comp.T
    assert torch.allclose(_visible_gram(comp, comp @ comp.T, visible), direct, atol=1e-3)


def _two_populations(n: int, seed: int) -> torch.Tensor:
    """n faces (n, 3, 8, 8) in [-1, 1] from each of two populations that one Gaussian describes
    badly: both vary along one direction t, which moves the upper half (visible) the same way in
    both but the lower half (the hole) in opposite ways; an offset of the upper half tells them
    apart. Overall the hole is uncorrelated with t, within each population it is determined by it."""
    g = torch.Generator().manual_seed(0)  # the populations are fixed; `seed` draws the faces
    upper = torch.zeros(3, 8, 8)
    upper[:, :4] = 1
    upper = upper.flatten()
    a, h, off = (torch.randn(192, generator=g) * w for w in (upper, 1 - upper, upper))
    a, h, off = a / a.norm(), h / h.norm(), 3.2 * off / off.norm()
    d = torch.Generator().manual_seed(seed)
    t = 2.0 * torch.randn(2, n, 1, generator=d)
    faces = torch.cat([t[0] * (a + h), off + t[1] * (a - h)])
    faces = faces + 0.02 * torch.randn(2 * n, 192, generator=d)
    return faces.clamp(-1, 1).view(2 * n, 3, 8, 8)


def test_mixture_prior_shrinks_only_the_covariance_of_a_cluster_smaller_than_the_basis():
    """A cluster of fewer faces than components has a singular sample covariance: it is shrunk
    (Ledoit-Wolf) so its prior does not pin fits to those faces; larger clusters keep the sample
    covariance (so the shipped fits do not change)."""
    from scipy.cluster.vq import kmeans2

    from model.networks.gappy_pca import GappyPCAConfig, fit_gappy_pca

    cfg = GappyPCAConfig(size=8, components=10, fit_size=8, ridge=0.05, clusters=2)
    small = fit_gappy_pca(_two_populations(7, 1), cfg)  # 14 faces: both clusters < 10 components
    low = torch.linalg.eigvalsh(small.cluster_cov.double()).min(dim=1).values
    assert (low > 0.01).all(), low  # a sample covariance of < 10 faces has 1e-3 (rank < 10)
    big = fit_gappy_pca(_two_populations(150, 1), cfg)  # clusters of ~150 faces: as before
    data = _two_populations(150, 1).reshape(300, -1) - big.mean
    u = data @ big.components.T / big.variance.sqrt()
    _, label = kmeans2(u[:, :40].double().numpy(), 2, minit="++", seed=0)  # the fit's own clusters
    label = torch.from_numpy(label)
    for k in range(2):
        sample = torch.cov(u[label == k].T.double()) + 1e-3 * torch.eye(10, dtype=torch.float64)
        assert torch.allclose(big.cluster_cov[k].double(), sample, atol=1e-3)


def test_mixture_prior_fills_a_two_population_hole_better_than_one_gaussian():
    from dataclasses import replace

    from model.networks.gappy_pca import GappyPCA, GappyPCAConfig, fit_gappy_pca

    train, test = _two_populations(150, 1), _two_populations(20, 2)
    mask = torch.zeros(len(test), 1, 8, 8)
    mask[..., 4:, :] = 1  # the lower half, as a mask covers the lower face
    cfg = GappyPCAConfig(size=8, components=10, fit_size=8, ridge=0.05, temperature=0.1)
    plain = fit_gappy_pca(train, cfg)
    mixture = fit_gappy_pca(train, replace(cfg, clusters=2))
    assert "cluster_cov" not in plain.state_dict() and mixture.cluster_cov.shape == (2, 10, 10)

    def hole_mse(prior: GappyPCA) -> float:
        with torch.no_grad():
            return float(((prior(test, mask) - test) ** 2 * mask).sum() / (3 * mask.sum()))

    # Measured: 0.0086 against 0.0223.
    assert hole_mse(mixture) < 0.5 * hole_mse(plain), (hole_mse(mixture), hole_mse(plain))
    # Shipped weights store floats in fp16: the mixture survives the round trip.
    half = GappyPCA(mixture.cfg)
    state = mixture.state_dict()
    half.load_state_dict({k: v.half() if v.is_floating_point() else v for k, v in state.items()})
    assert abs(hole_mse(half) - hole_mse(mixture)) < 0.1 * hole_mse(mixture)

    # From the stored state (int8 basis): mixture_weight 0 is the one-Gaussian fit on the same
    # basis; 0.5 lies halfway between that and the mixture.
    def with_weight(lam: float) -> GappyPCA:
        prior = GappyPCA(replace(mixture.cfg, mixture_weight=lam))
        prior.load_state_dict(state)
        return prior

    one = GappyPCA(replace(cfg, clusters=1))
    one.load_state_dict({k: v for k, v in state.items() if not k.startswith("cluster_")})
    with torch.no_grad():
        c = [
            p.coefficients(test, mask)
            for p in (with_weight(0.0), one, with_weight(0.5), with_weight(1.0))
        ]
    assert torch.allclose(c[0], c[1], atol=1e-4)
    assert torch.allclose(c[2], (c[0] + c[3]) / 2, atol=1e-4)
