"""Gappy PCA (Everson & Sirovich 1995): a linear face prior that fills a hole from the visible pixels.

A PCA basis of aligned training faces (mean, components, variances, as buffers) is fitted once by
`fit_gappy_pca`. Per face, the coefficients are a ridge (Gaussian-prior, MAP) least-squares fit to
the visible pixels only (Hwang & Lee 2003 use the same fit for damaged faces); the reconstruction
fills the hole. Fitting runs at `fit_size` (the basis area-downscaled, which is exact for a linear
model), the reconstruction at `size`, then bilinear up to the input size.

With `clusters` > 1 the Gaussian prior on the coefficients is a mixture: the training faces'
standardised coefficients are clustered (k-means++), each cluster keeps its own mean and full
covariance, each face is fitted under every cluster's prior, and the fits are averaged with
weights softmax(-objective / temperature) (a Gaussian mixture prior in a PCA subspace, as in the
mixtures of local linear models of Hinton, Dayan & Revow 1997 and Tipping & Bishop 1999, here with
one shared basis); `mixture_weight` < 1 shrinks that towards the one-Gaussian fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class GappyPCAConfig:
    size: int = 128  # side of the stored basis (reconstruction resolution)
    components: int = 160  # K, principal components kept
    fit_size: int = 64  # side at which the coefficients are fitted to the visible pixels
    # Ridge strength relative to the per-component prior variance: (B_v^T B_v + ridge * diag(1/var)) c
    # = B_v^T (x_v - mean_v). In pixel units of [-1, 1]^2; chosen on validation faces (see the card).
    ridge: float = 0.02
    # Fit the basis on the training faces and their mirror images (left-right flipped): twice
    # the examples of a face's variation, and a basis closed under mirroring (Kirby & Sirovich
    # 1990 extend their eigenface ensemble the same way).
    mirror: bool = False
    # A Gaussian-mixture prior on the coefficients: this many clusters of training faces, each with
    # its own mean and covariance (1 = one zero-mean Gaussian with the PCA variances, the plain fit).
    clusters: int = 1
    # The mixture's weights: softmax(-objective / temperature) over the clusters, the objective in
    # the ridge fit's units (squared [-1, 1] residual summed over the visible fit-size pixels).
    temperature: float = 1.0
    # The fill is mixture_weight x the mixture's fit + (1 - mixture_weight) x the one-Gaussian fit
    # (shrinkage towards the population prior: fewer faces that a wrongly weighted cluster spoils).
    mixture_weight: float = 1.0


class GappyPCA(nn.Module):
    """image (B, 3, H, W) in [-1, 1] + mask (B, 1, H, W) {0, 1} -> the prior's face (B, 3, H, W).

    The output is the reconstruction everywhere (not composited); callers composite. A face whose
    visible pixels are all grey (R = G = B) gets a grey reconstruction.
    """

    def __init__(self, cfg: GappyPCAConfig = GappyPCAConfig()):
        super().__init__()
        self.cfg = cfg
        p = 3 * cfg.size * cfg.size
        self.register_buffer("mean", torch.zeros(p))  # (P,) at `size`
        self.register_buffer(
            "components", torch.zeros(cfg.components, p)
        )  # (K, P), orthonormal rows
        self.register_buffer("variance", torch.ones(cfg.components))  # (K,) training variance
        if cfg.clusters > 1:
            # Per cluster: mean (C, K) and covariance (C, K, K) of the coefficients divided by
            # sqrt(variance) (standardised units).
            k, c = cfg.components, cfg.clusters
            self.register_buffer("cluster_mean", torch.zeros(c, k))
            self.register_buffer("cluster_cov", torch.eye(k).repeat(c, 1, 1))
        self._fit_cache: tuple[int, torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._precision_cache: tuple[int, torch.Tensor] | None = None

    # The basis is stored as int8 with one scale per component (symmetric, max-abs): half the
    # bytes of fp16, so a 128x128 x 160 basis is 7.5 MiB. Reconstructions change by well under a
    # grey level (benchmarks/eigenface_tradeoff.py measures it).
    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        comp = destination.pop(prefix + "components").detach().float()
        # The scale is rounded to fp16 first: the fp16 export then stores it exactly.
        scale = (comp.abs().amax(1, keepdim=True).clamp_min(1e-6) / 127).half().float()  # (K, 1)
        destination[prefix + "components_q"] = (
            (comp / scale).round().clamp(-127, 127).to(torch.int8)
        )
        destination[prefix + "components_scale"] = scale

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self._fit_cache = None  # a new basis invalidates the fit-size copy
        self._precision_cache = None
        if prefix + "components_q" in state_dict:
            q = state_dict.pop(prefix + "components_q")
            scale = state_dict.pop(prefix + "components_scale")
            state_dict[prefix + "components"] = q.float() * scale.float()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _fit_basis(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean (P_f,) and components (K, P_f) area-downscaled to `fit_size`, and their Gram matrix
        (K, K) over every pixel (cached: read-only)."""
        key = self.components.data_ptr() + self.components._version
        if self._fit_cache is None or self._fit_cache[0] != key:
            s, f = self.cfg.size, self.cfg.fit_size
            comp = self.components.float().view(-1, 3, s, s)
            mean = self.mean.float().view(1, 3, s, s)
            if f != s:
                comp = F.interpolate(comp, size=(f, f), mode="area")
                mean = F.interpolate(mean, size=(f, f), mode="area")
            comp = comp.reshape(comp.shape[0], -1)
            self._fit_cache = (key, mean.reshape(-1), comp, comp @ comp.T)
        return self._fit_cache[1:]

    def _precision(self) -> torch.Tensor:
        """The clusters' prior precisions (C, K, K), inverse covariances with eigenvalues clamped at
        1e-3 (a covariance stored in fp16 may lose definiteness by rounding); cached: read-only."""
        cov = self.cluster_cov
        key = cov.data_ptr() + cov._version
        if self._precision_cache is None or self._precision_cache[0] != key:
            e, q = torch.linalg.eigh(cov.double())
            p = (q / e.clamp_min(1e-3)[:, None, :]) @ q.transpose(1, 2)
            self._precision_cache = (key, p.float())
        return self._precision_cache[1]

    def coefficients(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, K) MAP coefficients from the visible pixels (Everson & Sirovich 1995, Eq. 8 with a
        Gaussian prior on the coefficients); with clusters, the mixture's weighted average of the
        per-cluster MAP coefficients."""
        f = self.cfg.fit_size
        x = F.interpolate(image.float(), size=(f, f), mode="area")  # (B, 3, f, f)
        # A fit-size pixel is visible only if none of the pixels it averages lies in the hole.
        v = 1.0 - F.adaptive_max_pool2d(mask.float(), (f, f))  # (B, 1, f, f)
        v = v.expand(-1, 3, -1, -1).reshape(len(x), -1)  # (B, P_f)
        mean, comp, gram = self._fit_basis()
        r = (x.reshape(len(x), -1) - mean) * v  # (B, P_f) visible residual
        a = torch.stack([_visible_gram(comp, gram, vi > 0.5) for vi in v])  # (B, K, K) = B_v^T B_v
        if self.cfg.clusters == 1:
            a = a + torch.diag_embed(self.cfg.ridge / self.variance.float()).expand_as(a)
            # a is symmetric positive definite (a Gram matrix plus a positive diagonal): Cholesky.
            chol = torch.linalg.cholesky(a)
            return torch.cholesky_solve((r @ comp.T).unsqueeze(-1), chol).squeeze(-1)  # (B, K)
        # Per cluster, in standardised units u = c / sqrt(variance) with prior N(mu, S):
        # (D^1/2 a D^1/2 + ridge S^-1) u = D^1/2 B_v^T r + ridge S^-1 mu, D = diag(variance).
        sd = self.variance.float().sqrt()  # (K,)
        a_std = a * sd[:, None] * sd[None, :]  # (B, K, K)
        rhs = (r @ comp.T) * sd  # (B, K)
        prec, mu = self._precision(), self.cluster_mean.float()  # (C, K, K), (C, K)
        lam = self.cfg.mixture_weight
        if lam < 1:  # the one Gaussian N(0, I) as a last row, fitted in the same batch
            eye = torch.eye(prec.shape[1], device=prec.device, dtype=prec.dtype)
            prec = torch.cat([prec, eye[None]])
            mu = torch.cat([mu, torch.zeros_like(mu[:1])])
        ridge = self.cfg.ridge
        chol = torch.linalg.cholesky(a_std[None] + ridge * prec[:, None])  # (C, B, K, K)
        pm = torch.einsum("ckl,cl->ck", prec, mu)  # (C, K)
        u = torch.cholesky_solve((rhs[None] + ridge * pm[:, None]).unsqueeze(-1), chol)
        u = u.squeeze(-1)  # (C, B, K)
        d = u - mu[:, None]
        fit = ((r[None] - ((u * sd) @ comp) * v[None]) ** 2).sum(-1)  # (C, B) visible residual
        objective = fit + ridge * torch.einsum("cbk,ckl,cbl->cb", d, prec, d)
        c = self.cfg.clusters
        w = torch.softmax(-objective[:c] / self.cfg.temperature, dim=0)  # (C, B)
        mixed = (w[..., None] * u[:c]).sum(0)  # (B, K)
        if lam < 1:
            mixed = lam * mixed + (1 - lam) * u[c]
        return mixed * sd  # (B, K)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # fp32 even under bf16 autocast: the normal equations need it (and bf16 is slower here).
        with torch.autocast(image.device.type, enabled=False):
            return self._reconstruct(image, mask)

    def _reconstruct(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        s = self.cfg.size
        c = self.coefficients(image, mask)  # (B, K)
        recon = (self.mean.float() + c @ self.components.float()).view(-1, 3, s, s)
        if recon.shape[-2:] != image.shape[-2:]:
            recon = F.interpolate(
                recon, size=image.shape[-2:], mode="bilinear", align_corners=False
            )
        # A grey photo gives a grey fill: luminance (Rec. 601) copied to the three channels.
        img = image.float()
        known = (1 - mask.float()).expand_as(img)
        spread = ((img.amax(1) - img.amin(1)).unsqueeze(1) * known[:, :1]).flatten(1).amax(1)
        grey = spread < 2.0 / 255  # (B,) within rounding of R = G = B on every visible pixel
        if grey.any():
            lum = 0.299 * recon[:, :1] + 0.587 * recon[:, 1:2] + 0.114 * recon[:, 2:3]
            recon = torch.where(grey[:, None, None, None], lum.expand_as(recon), recon)
        return recon.clamp(-1, 1).to(image.dtype)


def _visible_gram(comp: torch.Tensor, gram: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """B_v^T B_v (K, K) of the components (K, P) over the visible pixels (P,) bool: from the fewer
    of the visible and the hidden pixels (the full Gram minus the hole's when the hole is smaller,
    as under a face mask: about a third of the work)."""
    if 2 * int(visible.sum()) <= visible.numel():
        part = comp[:, visible]
        return part @ part.T
    part = comp[:, ~visible]
    return gram - part @ part.T


@torch.no_grad()
def fit_gappy_pca(
    faces: torch.Tensor, cfg: GappyPCAConfig, *, oversample: int = 20, iters: int = 3, seed: int = 0
) -> GappyPCA:
    """PCA of faces (N, 3, S, S) uint8 or float in [-1, 1], at `cfg.size`, by randomized SVD
    (Halko, Martinsson & Tropp 2011, via `torch.svd_lowrank`); with `cfg.mirror` of the faces
    and their mirror images (2N examples). Returns the fitted module. Raises ValueError when
    N <= `cfg.components`."""
    n = faces.shape[0]
    if n <= cfg.components:
        raise ValueError(f"{n} faces cannot give {cfg.components} components: need more faces")
    chunks = []
    for part in faces.split(512):
        x = part.float() / 127.5 - 1 if part.dtype == torch.uint8 else part.float()
        if x.shape[-1] != cfg.size:
            x = F.interpolate(x, size=(cfg.size, cfg.size), mode="area")
        chunks.append(x.reshape(len(x), -1))
        if cfg.mirror:
            chunks.append(x.flip(-1).reshape(len(x), -1))
    data = torch.cat(chunks)  # (N or 2N, P)
    n = len(data)
    mean = data.mean(0)
    data -= mean
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        q = min(cfg.components + oversample, *data.shape)
        _, sv, vt = torch.svd_lowrank(data, q=q, niter=iters)
    finally:
        torch.random.set_rng_state(gen_state)
    model = GappyPCA(cfg)
    model.mean.copy_(mean)
    model.components.copy_(vt[:, : cfg.components].T)
    model.variance.copy_(sv[: cfg.components] ** 2 / (n - 1))
    if cfg.clusters > 1:
        _fit_clusters(model, data @ model.components.T / model.variance.sqrt(), seed)
    return model


def _fit_clusters(model: GappyPCA, u: torch.Tensor, seed: int) -> None:
    """The mixture prior from the training faces' standardised coefficients u (n, K): k-means++
    (scipy's `kmeans2`, seeded) on the first 40 of them, then each cluster's mean and covariance
    (plus 1e-3 on the diagonal). A cluster of at most K faces has a singular sample covariance
    (its prior would pin the fit to the cluster's few faces): it gets the Ledoit & Wolf (2004)
    shrinkage estimate instead (scikit-learn's `ledoit_wolf`). Raises ValueError when a cluster has
    fewer than 2 faces."""
    from scipy.cluster.vq import kmeans2
    from sklearn.covariance import ledoit_wolf

    c = model.cfg.clusters
    _, label = kmeans2(u[:, :40].double().numpy(), c, minit="++", seed=seed)
    label = torch.from_numpy(label).long()
    sizes = torch.bincount(label, minlength=c).tolist()
    if min(sizes) < 2:
        raise ValueError(f"clusters of {sizes} faces: each needs at least 2; use fewer clusters")
    eye = torch.eye(u.shape[1], dtype=torch.float64)
    for k in range(c):
        uk = u[label == k].double()
        model.cluster_mean[k] = uk.mean(0).float()
        if len(uk) > u.shape[1]:
            cov = torch.cov(uk.T)
        else:
            cov = torch.from_numpy(ledoit_wolf(uk.numpy())[0])
        model.cluster_cov[k] = (cov + 1e-3 * eye).float()
