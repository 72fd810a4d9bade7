"""Image-quality metrics (definitions in docs/DESIGN.md): masked MSE (Yoshihashi Eq. 5), PSNR,
SSIM, LPIPS, identity distance (dlib face descriptors), landmark NME (dlib 68 points), and
`METRICS`, the one table of every metric's name, direction, format and function.

Each has a numpy single-image form (uint8 (H, W, 3) RGB, bool (H, W) mask) and, where it is
pure tensor maths, a batched torch form (float (B, 3, H, W) in [-1, 1]) for the eval loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from pytorch_msssim import ssim as _msssim

DATA_RANGE = 255.0
# Outer eye corners of the 68-point scheme (iBUG 300-W): the inter-ocular normaliser of NME.
LEFT_EYE_OUTER, RIGHT_EYE_OUTER = 36, 45


# ---- input checks -----------------------------------------------------------------------------


def _check_pair(pred: np.ndarray, real: np.ndarray) -> None:
    for name, a in (("pred", pred), ("real", real)):
        if not isinstance(a, np.ndarray) or a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
            desc = f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
            raise ValueError(f"{name} must be a uint8 (H, W, 3) RGB array, got {desc}")
    if pred.shape != real.shape:
        raise ValueError(f"pred and real differ in shape: {pred.shape} vs {real.shape}")


def _check_mask(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.shape != shape[:2]:
        raise ValueError(f"mask must be (H, W) = {shape[:2]}, got {mask.shape}")
    if mask.dtype != bool:
        raise ValueError(f"mask must be bool (True = hole), got {mask.dtype}")
    return mask


def _check_batch(pred: torch.Tensor, real: torch.Tensor) -> None:
    if pred.ndim != 4 or pred.shape[1] != 3 or pred.shape != real.shape:
        raise ValueError(
            f"expected two (B, 3, H, W) tensors of one shape, got {tuple(pred.shape)} and {tuple(real.shape)}"
        )
    if not (pred.is_floating_point() and real.is_floating_point()):
        raise ValueError(f"expected float tensors in [-1, 1], got {pred.dtype} and {real.dtype}")


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) or (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1]."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.shape[-1] != 3 or images.ndim not in (3, 4):
        raise ValueError(
            f"expected uint8 (H, W, 3) or (N, H, W, 3), got {images.dtype} {images.shape}"
        )
    if images.ndim == 3:
        images = images[None]
    # A copy: the input may be a read-only view (decoded image, memory map).
    return torch.from_numpy(np.array(images, copy=True)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """float (N, 3, H, W) in [-1, 1] -> uint8 (N, H, W, 3), rounded as an image file would be."""
    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def _to_255(x: torch.Tensor) -> torch.Tensor:
    return (x.float() + 1.0) * 127.5


# ---- MSE in the mask region (Yoshihashi et al. 2022, Eq. 5) ------------------------------------


def mse_masked(pred: np.ndarray, real: np.ndarray, mask: np.ndarray) -> float:
    """Per mask pixel, sum over R, G, B of the squared 0-255 difference; mean over mask pixels.

    NaN when the mask is empty (no pixel to average over).
    """
    _check_pair(pred, real)
    mask = _check_mask(mask, pred.shape)
    n = int(mask.sum())
    if n == 0:
        return float("nan")
    d = pred.astype(np.float64) - real.astype(np.float64)  # (H, W, 3)
    return float((d**2).sum(axis=2)[mask].sum() / n)


def mse_masked_batch(pred: torch.Tensor, real: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Batched Eq. 5: pred/real (B, 3, H, W) in [-1, 1], mask (B, 1, H, W) {0, 1} -> (B,)."""
    _check_batch(pred, real)
    if (
        mask.ndim != 4
        or mask.shape[1] != 1
        or mask.shape[0] != pred.shape[0]
        or mask.shape[2:] != pred.shape[2:]
    ):
        raise ValueError(
            f"mask must be (B, 1, H, W) matching {tuple(pred.shape)}, got {tuple(mask.shape)}"
        )
    m = (mask > 0.5).double()  # (B, 1, H, W)
    per_pixel = (
        (_to_255(pred).double() - _to_255(real).double()).pow(2).sum(1, keepdim=True)
    )  # (B, 1, H, W)
    n = m.sum(dim=(1, 2, 3))
    out = (per_pixel * m).sum(dim=(1, 2, 3)) / n
    return torch.where(n > 0, out, torch.full_like(out, float("nan"))).float()


# ---- PSNR over the whole image ---------------------------------------------------------------


def _psnr_from_mse(mse: float) -> float:
    return float("inf") if mse == 0 else 10.0 * math.log10(DATA_RANGE**2 / mse)


def psnr(pred: np.ndarray, real: np.ndarray) -> float:
    """PSNR in dB over the whole RGB image, data range 255 (MSE averaged over H, W and channels).

    `inf` for identical images; aggregate with care (evaluate.py leaves non-finite values out).
    """
    _check_pair(pred, real)
    mse = float(((pred.astype(np.float64) - real.astype(np.float64)) ** 2).mean())
    return _psnr_from_mse(mse)


def psnr_batch(pred: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> (B,) dB; inf where an image is reproduced exactly."""
    _check_batch(pred, real)
    mse = (_to_255(pred).double() - _to_255(real).double()).pow(2).mean(dim=(1, 2, 3))
    return (10.0 * torch.log10(DATA_RANGE**2 / mse)).float()  # 1/0 -> inf, as psnr()


# ---- SSIM over the whole image (pytorch-msssim defaults: Gaussian window 11, sigma 1.5) --------


def ssim_batch(pred: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> (B,) SSIM on the 0-255 scale (mean over RGB channels)."""
    _check_batch(pred, real)
    return _msssim(
        _to_255(pred),
        _to_255(real),
        data_range=DATA_RANGE,
        size_average=False,
        win_size=11,
        win_sigma=1.5,
    )


def ssim(pred: np.ndarray, real: np.ndarray) -> float:
    """SSIM of two uint8 RGB images, data range 255, Gaussian window 11, sigma 1.5."""
    _check_pair(pred, real)
    return float(ssim_batch(to_tensor(pred), to_tensor(real))[0])


# ---- LPIPS (v0.1, AlexNet) ---------------------------------------------------------------------


def lpips_batch(pred: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> (B,) LPIPS v0.1 alex distances (whole image)."""
    from model.lpips import load_lpips

    _check_batch(pred, real)
    net = load_lpips(pred.device)
    with torch.no_grad():
        return net(pred.float(), real.float())


def lpips(pred: np.ndarray, real: np.ndarray) -> float:
    """LPIPS v0.1 alex distance between two uint8 RGB images."""
    _check_pair(pred, real)
    return float(lpips_batch(to_tensor(pred), to_tensor(real))[0])


# ---- identity and landmarks (dlib) -------------------------------------------------------------


@cache
def _face_descriptor_net():
    import dlib

    from model.faces import model_file

    return dlib.face_recognition_model_v1(
        str(model_file("dlib_face_recognition_resnet_model_v1.dat"))
    )


def _rect(box: tuple[int, int, int, int]):
    import dlib

    left, top, right, bottom = (int(round(v)) for v in box)
    return dlib.rectangle(left, top, right, bottom)


def box_of(landmarks: np.ndarray) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) bounding box of 68 points, the box every shape fit uses."""
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.shape != (68, 2):
        raise ValueError(f"landmarks must be (68, 2), got {pts.shape}")
    (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
    return int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(x1)), int(np.ceil(y1))


def reference_box(real: np.ndarray, real_landmarks: np.ndarray) -> tuple[int, int, int, int]:
    """The box every landmark fit of this face uses: dlib's HOG box on the real face (what the
    shape predictor was trained on), or the landmarks' bounding box when HOG finds nothing."""
    from model.faces import detect_faces

    found = detect_faces(real, upsample=0, threshold=-0.3)
    return tuple(found[0].box) if found else box_of(real_landmarks)


def fit_landmarks(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """dlib's 68 points fitted on `image` inside a given face box -> (68, 2) float32.

    A fixed box (the real face's) makes the fit always succeed and compares like with like;
    running the face detector on a poor output could fail or land elsewhere.
    """
    from model.faces import shape_predictor

    shape = shape_predictor()(np.ascontiguousarray(image), _rect(box))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


def face_descriptor(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """dlib's 128-d face descriptor of `image`, aligned by the given 68 landmarks -> (128,)."""
    import dlib

    pts = dlib.points([dlib.point(int(round(x)), int(round(y))) for x, y in np.asarray(landmarks)])
    shape = dlib.full_object_detection(_rect(box_of(landmarks)), pts)
    return np.array(
        _face_descriptor_net().compute_face_descriptor(np.ascontiguousarray(image), shape)
    )


def identity_distance(pred: np.ndarray, real: np.ndarray, real_landmarks: np.ndarray) -> float:
    """Euclidean distance between dlib's 128-d descriptors of `pred` and `real` (0 = same).

    Both faces are aligned with the real face's 68 landmarks, so only the pixels differ, not the
    crop (the masked input's own landmarks would be unreliable). dlib calls 0.6 the same-person
    threshold.
    """
    _check_pair(pred, real)
    return float(
        np.linalg.norm(
            face_descriptor(pred, real_landmarks) - face_descriptor(real, real_landmarks)
        )
    )


def nme(points: np.ndarray, reference: np.ndarray) -> float:
    """Normalised mean error of (68, 2) points against a reference: mean point-to-point
    distance divided by the reference's inter-ocular (outer eye corner) distance."""
    points, reference = np.asarray(points, np.float64), np.asarray(reference, np.float64)
    if points.shape != (68, 2) or reference.shape != (68, 2):
        raise ValueError(f"expected two (68, 2) arrays, got {points.shape} and {reference.shape}")
    iod = np.linalg.norm(reference[RIGHT_EYE_OUTER] - reference[LEFT_EYE_OUTER])
    if iod <= 0:
        raise ValueError("reference landmarks have zero inter-ocular distance")
    return float(np.linalg.norm(points - reference, axis=1).mean() / iod)


def landmark_nme(pred: np.ndarray, real: np.ndarray, real_landmarks: np.ndarray) -> float:
    """NME of dlib's 68 points fitted on `pred` against those fitted on `real`.

    Both fits use the real face's box (`reference_box`, see `fit_landmarks`).
    """
    _check_pair(pred, real)
    box = reference_box(real, real_landmarks)
    return nme(fit_landmarks(pred, box), fit_landmarks(real, box))


# ---- what the face metrics need from the real face ----------------------------------------------


@dataclass(frozen=True)
class FaceRef:
    """The real face's side of the face metrics, computed once per image."""

    landmarks: np.ndarray  # (68, 2) dataset landmarks on the aligned face: the descriptor alignment
    descriptor: np.ndarray  # (128,) dlib descriptor of the real face
    box: tuple[int, int, int, int]  # face box on the real face; every landmark fit uses it
    fitted: np.ndarray  # (68, 2) dlib's points fitted on the real face in `box` (NME reference)

    @classmethod
    def of(cls, real: np.ndarray, real_landmarks: np.ndarray) -> FaceRef:
        box = reference_box(real, real_landmarks)
        return cls(
            real_landmarks,
            face_descriptor(real, real_landmarks),
            box,
            fit_landmarks(real, box),
        )


def _identity_from_ref(out: np.ndarray, ref: FaceRef) -> float:
    return float(np.linalg.norm(face_descriptor(out, ref.landmarks) - ref.descriptor))


def _nme_from_ref(out: np.ndarray, ref: FaceRef) -> float:
    return nme(fit_landmarks(out, ref.box), ref.fitted)


# ---- the metrics table --------------------------------------------------------------------------

BatchFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
FaceFn = Callable[[np.ndarray, FaceRef], float]


@dataclass(frozen=True)
class Metric:
    """One row of `METRICS`: everything a table, a log, a model card or a promotion needs."""

    name: str  # the column in Tables 1 and 2 (CSV: <name>_mean, <name>_ci95, <name>_n)
    title: str  # what a reader sees ("PSNR")
    unit: str  # printed after a value ("dB", "px") or ""
    lower_is_better: bool
    decimals: int  # in Tables 1 and 2
    brief: str  # format of a model card's figure on the demo's About page
    definition: str = ""  # one sentence for the table notes: how exactly it is computed
    # The key in training logs (log.jsonl), checkpoints and model cards, when it is not `name`
    # (kept for the cards already shipped).
    logged_as: str = ""
    # Batched form on the eval/validation tensors: pred, real (B, 3, H, W) in [-1, 1], mask
    # (B, 1, H, W) in {0, 1} -> (B,). None: not computed this way.
    batch: BatchFn | None = None
    # Per-image form on a uint8 (H, W, 3) output against its real face (dlib; CPU only).
    face: FaceFn | None = None

    @property
    def key(self) -> str:
        """The name in logs, checkpoints and model cards."""
        return self.logged_as or self.name

    @property
    def header(self) -> str:
        """Column header of the Markdown tables; the arrow says which way is better."""
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.title}{unit} {'↓' if self.lower_is_better else '↑'}"

    def better(self, new: float, old: float) -> bool:
        return new < old if self.lower_is_better else new > old


def _psnr3(pred: torch.Tensor, real: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return psnr_batch(pred, real)


def _ssim3(pred: torch.Tensor, real: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return ssim_batch(pred, real)


def _lpips3(pred: torch.Tensor, real: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return lpips_batch(pred, real)


# fmt: off
METRICS: tuple[Metric, ...] = (
    # The inpainting metrics, in the order of the papers' Tables 1 and 2.
    Metric("mse", "MSE (mask)", "", True, 1, "{:,.0f}",
           "MSE: Yoshihashi et al. Eq. 5, per mask pixel the sum over R, G, B of the squared 0–255 "
           "error, averaged over the mask (its pixels inside the photo).",
           logged_as="mse_mask", batch=mse_masked_batch),
    Metric("psnr", "PSNR", "dB", False, 2, "{:.2f}",
           "PSNR: whole 256² RGB image, data range 255.", batch=_psnr3),
    Metric("ssim", "SSIM", "", False, 4, "{:.3f}",
           "SSIM (Gaussian window 11, σ 1.5): whole 256² RGB image, data range 255.",
           batch=_ssim3),
    Metric("lpips", "LPIPS", "", True, 4, "{:.3f}",
           "LPIPS: v0.1, AlexNet, whole image.", batch=_lpips3),
    Metric("identity", "Identity dist.", "", True, 4, "{:.3f}",
           "Identity distance: Euclidean distance of dlib's 128-d face descriptors (output vs "
           "real, both aligned by the real face's landmarks; dlib's same-person threshold is 0.6).",
           face=_identity_from_ref),
    Metric("landmark_nme", "Landmark NME", "", True, 4, "{:.4f}",
           "Landmark NME: dlib's 68 points fitted on the output vs on the real face (same box), "
           "mean error / outer-eye-corner distance.",
           face=_nme_from_ref),
    # The helpers' validation (computed by their training tasks and model/segmenter_train.py).
    Metric("iou", "IoU", "", False, 4, "{:.3f}"),
    Metric("bare_under_1pct", "bare faces under 1% mask", "", False, 4, "{:.3f}"),
    Metric("bare_area_mean", "mask area on bare faces", "", True, 4, "{:.4f}"),
    Metric("examples_iou", "IoU on real photos", "", False, 4, "{:.3f}"),
    Metric("error_px", "landmark error", "px", True, 2, "{:.1f}"),
    Metric("jaw_error_px", "jaw error", "px", True, 2, "{:.1f}"),
)
# fmt: on
# What evaluation scores every method output on (the columns of Tables 1 and 2).
OUTPUT_METRICS = tuple(m for m in METRICS if m.batch or m.face)
# What training validation computes on tensors for an inpainting method.
BATCH_METRICS = tuple(m for m in METRICS if m.batch)


def metric(name: str) -> Metric:
    """The row whose `name` or logged key is `name`; KeyError names the known ones."""
    for m in METRICS:
        if name in (m.name, m.key):
            return m
    known = ", ".join(m.key for m in METRICS)
    raise KeyError(
        f"unknown metric {name!r} (add its row to model.metrics.METRICS); known: {known}"
    )
