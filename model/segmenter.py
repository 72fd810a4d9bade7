"""The mask segmenter as a service: where is the face mask on an aligned face (weights key
"segmenter"), and the one rule that turns its prediction into the hole to inpaint, or into "no
mask" (`find_mask_region`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from model.config import WEIGHTS_DIR

THRESHOLD = 0.5


class Segmenter:
    def __init__(self, net: nn.Module, device: torch.device, card: dict | None = None):
        self.net = net.to(device).eval()
        self.net.requires_grad_(False)
        self.device = device
        self.card = card or {}

    @torch.no_grad()
    def predict_batch(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) in [-1, 1] -> (B, 1, H, W) probability that a pixel is mask."""
        x = images.to(self.device, torch.float32)
        return torch.sigmoid(self.net(x).float()).to(images.device)

    def probability(self, image: np.ndarray) -> np.ndarray:
        """image uint8 (H, W, 3) (an aligned face) -> float32 (H, W), probability of mask."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 127.5 - 1
        return self.predict_batch(x)[0, 0].numpy()

    def predict(self, image: np.ndarray, margin_px: int = 0) -> np.ndarray:
        """image uint8 (H, W, 3) (an aligned 256x256 face) -> bool (H, W), True = mask.

        `margin_px` grows the region: for inpainting a hole a little too large is harmless (the
        `unmask` model is trained on such holes) while a missed rim of mask fabric stays visible.
        """
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 127.5 - 1
        mask = self.predict_batch(x)[:, :1] > THRESHOLD  # (1, 1, H, W)
        if margin_px > 0:
            k = 2 * margin_px + 1
            mask = torch.nn.functional.max_pool2d(mask.float(), k, stride=1, padding=margin_px) > 0
        return mask[0, 0].cpu().numpy()


# --- the final region: one rule, used by the pipeline, the demo and the evaluation -------------

NO_MASK_AREA = 0.01  # a region under 1 % of the aligned face is "no mask"
MIN_CONFIDENCE = 0.6  # ... and so is one whose mean probability (in the photo) is below this
GROW_THRESHOLD = 0.4  # the confident piece (p > THRESHOLD) grows through connected p > this
MIDLINE_REACH = 0.1  # a mask crosses the face's midline: the band through the nose, mouth and
# chin landmarks, widened by this (inter-ocular distances); a piece only beside it (a collar, a
# shoulder, a hand at the cheek, a background wall) is not a mask
SIDE_REACH = 0.35  # the region may reach this far past the jaw line (inter-ocular distances)
CHIN_REACH = 0.9  # ... and this far below the chin (masks run under it)
EDGE_REACH_PX = 14  # a region this close to the photo's edge is extended to it
CLOSE_PX = 4  # closing radius: rims and gaps in printed fabric
STRIP_PX = 10  # an arm of the region narrower than 2 * STRIP_PX + 1 (a strap, a lanyard, a dark
STRIP_MIN_AREA = 0.003  # edge beside the jaw) covering this share of the face or more is cut off
CORE_REACH = 0.05  # the core of the zone: the jaw line grown this little; past it, in the margin
# up to SIDE_REACH / CHIN_REACH, colour decides (`_colour_refined`: a wall, a neck, a collar beside
# the mask that the network took for fabric)
COLOUR_ITERS = 5  # GrabCut iterations of that decision
COLOUR_MIN_PX = 200  # ... made only when the core holds this many mask pixels to learn from
RIM_PX = 2  # the hole to inpaint is the region grown this much: a mask's outline (dark, 1-2 px,
# half covered by the anti-aliased edge) stays outside a tight region and shows as a line in every
# method's fill. The generators were trained with holes grown up to 4 px (GanRecipe.grow_px).
HOLE_MAX = 0.012  # holes in the region up to this share of the face are filled (a print, a logo);
# larger ones are kept (a hand or a microphone in front of the mask is not to be inpainted)
NO_MASK_MESSAGE = (
    "No face mask was found on this face, so the photo is left unchanged. To inpaint anyway, "
    "paint the region yourself (brush, or --mask), or add a synthetic mask to compare against "
    "the real face."
)


@dataclass(frozen=True)
class MaskRegion:
    """The answer to "where is the face mask?" on an aligned face."""

    mask: np.ndarray  # bool (256, 256): where the mask is (the final region); all False when
    # not found
    found: bool  # False: no mask (the photo is to be left unchanged)
    area: float  # share of the aligned face `mask` covers inside the photo (the part past the
    # photo's edge is never a mask); when not found, the network's region's (the no-mask test)
    confidence: float  # mean predicted probability inside the network's region
    message: str | None = None  # for a person, when not found
    hole: np.ndarray | None = None  # bool (256, 256): what to inpaint, `mask` grown by RIM_PX
    # (`with_rim`); all False when not found


def lower_face_zone(
    landmarks: np.ndarray,
    shape: tuple[int, int] = (256, 256),
    side_reach: float = SIDE_REACH,
    chin_reach: float = CHIN_REACH,
) -> np.ndarray:
    """(H, W) bool: where a face mask can be: below the eyes (model.masks.eye_guard, the rule the
    synthetic masks follow), inside the jaw line grown by `side_reach` at the cheeks and
    `chin_reach` under the chin (inter-ocular distances). Never the background beside the head,
    never the hair or the eyes."""
    from model.masks import _FaceFrame, eye_guard

    frame = _FaceFrame(landmarks)
    loc = frame.loc
    centre = loc[[30, 33, 51, 57]].mean(0)
    pts = []
    for i in range(17):
        w = float(np.clip(1 - abs(i - 8) / 5, 0, 1))  # 0 at the ears, 1 at the chin
        reach = side_reach + (chin_reach - side_reach) * w
        d = loc[i] - centre
        pts.append(loc[i] + reach * d / max(np.linalg.norm(d), 1e-6))
    # The top edge: the lower eyelids at the sides, a hair above landmark 28 on the nose
    # bridge (where KN95 masks sit); eye_guard then cuts the eyes themselves out.
    eyelids = loc[[40, 41, 46, 47], 1].max()
    bridge = np.array([loc[27, 0], loc[28, 1] - 0.05])
    pts = [np.array([p[0], max(p[1], eyelids)]) for p in pts]  # none above the eyelids
    pts = [np.array([pts[0][0], eyelids]), *pts, np.array([pts[-1][0], eyelids]), bridge]
    zone = np.zeros(shape, np.uint8)
    poly = np.round(frame.world(np.array(pts)) * 8).astype(np.int32)
    cv2.fillPoly(zone, [poly], 1, lineType=cv2.LINE_8, shift=3)
    return (zone > 0) & ~eye_guard(landmarks, shape)


def midline_band(landmarks: np.ndarray, shape: tuple[int, int] = (256, 256)) -> np.ndarray:
    """(H, W) bool: the face's midline, from the nose bridge down past the chin: pixels whose
    position across the face (along the eye line) lies within MIDLINE_REACH of the span of the
    landmarks 27, 30, 33, 51, 57 and 8. Every mask crosses it, even one pulled under the chin."""
    from model.masks import _FaceFrame

    frame = _FaceFrame(landmarks)
    across = frame.loc[[27, 30, 33, 51, 57, 8], 0]
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    u = frame.local(np.stack([xx, yy], -1))[..., 0]
    return (u >= across.min() - MIDLINE_REACH) & (u <= across.max() + MIDLINE_REACH)


def final_region(
    prob: np.ndarray,
    landmarks: np.ndarray,
    inside: np.ndarray | None = None,
    image: np.ndarray | None = None,
) -> np.ndarray:
    """The mask's region on an aligned face, from the segmenter's probabilities (H, W) (the hole to
    inpaint is this region with its rim: `with_rim`).

    1. threshold, and keep only the lower-face zone (`lower_face_zone`) inside the photo (past its
       edge the network sees only the flat fill: no evidence of a mask there);
    2. keep the largest connected piece that crosses the face's midline (`midline_band`; a mask is
       one piece across the face: strays on hands, hair, collars and shoulders go), grown through
       the pixels connected to it with p > GROW_THRESHOLD;
    3. close (CLOSE_PX) and fill small holes (HOLE_MAX: a print the network missed), then smooth
       the outline (a blur and threshold) and clip to the zone in the photo again; cut off thin
       arms (`_without_strips`: a strap or lanyard hanging from the mask, a dark edge beside the
       jaw);
    4. with `inside` (bool (H, W), which aligned pixels lie in the photo): where the region comes
       within EDGE_REACH_PX of the photo's edge, extend it straight to the edge (along the edge's
       normal: a pixel of the band joins when the region lies right behind it, so what is beside
       the mask there, a collar or a shirt, stays), so no band of mask stays between the hole
       and the border;
    5. with the aligned `image` (H, W, 3) uint8 RGB: let colour decide the doubtful pixels, those
       past the jaw line and the band of step 4 (`_colour_refined`: a wall beside the face, or a
       chin under a mask that stops short of the edge, is not the mask's fabric);
    6. with `inside`, let the region run a little past the photo's edge (for the feathered
       paste-back).
    """
    m, zone, reach = _network_region(prob, landmarks, inside)
    return _finished(m, zone, reach, landmarks, inside, image)


def _network_region(
    prob: np.ndarray, landmarks: np.ndarray, inside: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps 1-4 of `final_region` (the network's region, from its probabilities and the
    geometry alone): (region, zone, the band of step 4), each bool (H, W)."""
    from scipy.ndimage import binary_fill_holes

    prob = np.asarray(prob)
    zone = lower_face_zone(landmarks, prob.shape)
    seen = zone if inside is None else zone & np.asarray(inside, bool)
    m = (prob > THRESHOLD) & seen
    reach = np.zeros_like(m)  # the band added between the region and the photo's edge
    _, labels, stats, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=8)
    crossing = np.unique(labels[m & midline_band(landmarks, prob.shape)])
    crossing = crossing[crossing > 0]
    if crossing.size == 0:
        return np.zeros_like(m), zone, reach
    m = labels == crossing[int(np.argmax(stats[crossing, cv2.CC_STAT_AREA]))]
    # Hysteresis: light masks on real photos often come out at p 0.3-0.5 at their edges.
    _, weak = cv2.connectedComponents(((prob > GROW_THRESHOLD) & seen).astype(np.uint8), 8)
    m = np.isin(weak, np.unique(weak[m]))
    disk = _disk(CLOSE_PX)
    m = cv2.morphologyEx(m.astype(np.uint8), cv2.MORPH_CLOSE, disk) > 0
    holes = binary_fill_holes(m) & ~m
    n, labels, stats, _ = cv2.connectedComponentsWithStats(holes.astype(np.uint8), connectivity=4)
    small = np.nonzero(stats[1:, cv2.CC_STAT_AREA] <= HOLE_MAX * m.size)[0] + 1
    m |= np.isin(labels, small)
    m = (cv2.GaussianBlur(m.astype(np.float32), (0, 0), 2.0) > 0.5) & seen
    m = _without_strips(m)
    if _cut(inside) and m.any():
        reach = _toward_edge(m, np.asarray(inside, bool)) & _grown(zone, 8) & ~m
        m |= reach
    return m, zone, reach


def _cut(inside: np.ndarray | None) -> bool:
    """Does the photo end inside the aligned square?"""
    return inside is not None and not np.asarray(inside).all()


def _finished(
    m: np.ndarray,
    zone: np.ndarray,
    reach: np.ndarray,
    landmarks: np.ndarray,
    inside: np.ndarray | None,
    image: np.ndarray | None,
) -> np.ndarray:
    """Steps 5-6 of `final_region` on the network's region `m` (`_network_region`)."""
    if image is not None and m.any():
        m = _colour_refined(m, image, landmarks, zone, inside, reach)
    if _cut(inside) and m.any():
        m = m | (~inside & (cv2.dilate(m.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0))
    return m


def _without_strips(region: np.ndarray) -> np.ndarray:
    """`region` without its thin arms: the parts that an opening of radius STRIP_PX removes, where
    one such part covers STRIP_MIN_AREA of the image or more (the few pixels an opening shaves off
    the region's corners stay, so no rim of mask is left there). A region thin everywhere (a
    mask pulled far down) is returned as it is."""
    disk = _disk(STRIP_PX)
    body = cv2.morphologyEx(region.astype(np.uint8), cv2.MORPH_OPEN, disk) > 0
    if not body.any():
        return region
    arms = region & ~body
    _, labels, stats, _ = cv2.connectedComponentsWithStats(arms.astype(np.uint8), connectivity=8)
    big = np.nonzero(stats[1:, cv2.CC_STAT_AREA] >= STRIP_MIN_AREA * region.size)[0] + 1
    return region & ~np.isin(labels, big)


def _colour_refined(
    region: np.ndarray,
    image: np.ndarray,
    landmarks: np.ndarray,
    zone: np.ndarray,
    inside: np.ndarray | None,
    reach: np.ndarray,
) -> np.ndarray:
    """`region` with its doubtful pixels kept only where GrabCut (Rother, Kolmogorov & Blake 2004,
    OpenCV's `cv2.grabCut`) assigns them to the mask. Doubtful: the zone's margin (past the jaw
    line grown by CORE_REACH, up to SIDE_REACH / CHIN_REACH) and `reach`, the band added between
    the region and the photo's edge (bool (H, W)). The colour models start from the rest of the
    region (the mask, certain), the rest of the core (the bare face, certain), everything outside
    the zone (background, hair, clothing, certain) and the doubtful pixels as probable background
    (were they probable mask, their own colours would enter the mask's model and keep them). The network, which sees a mask's print or a pale wall at the face's side much
    alike, says "mask" on such a wall with p 0.9; the colours of the two differ. So do a mask that
    stops short of the photo's edge and the chin or collar below it, while a mask running off the
    edge keeps its band. Inside the core the network's answer stands (a print on the mask may have
    any colour); what it keeps of the doubtful pixels must join that part. `image` (H, W, 3) uint8
    RGB; returns a bool (H, W). GrabCut's k-means starts from a fixed seed (reproducible)."""
    core = lower_face_zone(landmarks, region.shape, CORE_REACH, CORE_REACH)
    doubt = (zone & ~core) | reach
    certain = region & ~doubt
    if not (region & doubt).any() or certain.sum() < COLOUR_MIN_PX:
        return region  # nothing to decide, or too few mask pixels to learn the mask's colours
    labels = np.full(region.shape, cv2.GC_BGD, np.uint8)
    labels[certain] = cv2.GC_FGD
    labels[doubt] = cv2.GC_PR_BGD  # the mask's colours are learnt from the certain part only
    if inside is not None:
        labels[~np.asarray(inside, bool)] = cv2.GC_BGD  # the flat fill past the photo's edge
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # the calling thread's generator (OpenCV keeps one per thread)
    bgr = np.ascontiguousarray(np.asarray(image, np.uint8)[..., ::-1])
    try:
        cv2.grabCut(bgr, labels, None, bgd, fgd, COLOUR_ITERS, cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # a degenerate colour model (e.g. a one-colour photo): keep the network's
        return region
    mask_coloured = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
    kept = region & (~doubt | mask_coloured)
    # Only doubtful pixels joined to the certain part: not the specks of a print on a shirt
    # whose light threads match a light mask.
    _, pieces = cv2.connectedComponents(kept.astype(np.uint8), connectivity=8)
    return kept & np.isin(pieces, np.unique(pieces[certain & kept]))


def _toward_edge(region: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """(H, W) bool: the pixels of the photo within EDGE_REACH_PX of its edge that have `region`
    right behind them: one step past EDGE_REACH_PX deeper, along the inward normal of the edge
    (the gradient of the distance to it)."""
    to_edge = cv2.distanceTransform(inside.astype(np.uint8), cv2.DIST_L2, 5)
    gy, gx = np.gradient(cv2.GaussianBlur(to_edge, (0, 0), 1.5))
    norm = np.hypot(gx, gy)
    ys, xs = np.nonzero((to_edge > 0) & (to_edge <= EDGE_REACH_PX) & (norm > 1e-3))
    if ys.size == 0:
        return np.zeros_like(region, dtype=bool)
    step = (EDGE_REACH_PX + 2 - to_edge[ys, xs]) / norm[ys, xs]
    h, w = region.shape
    qy = np.clip(np.round(ys + gy[ys, xs] * step).astype(int), 0, h - 1)
    qx = np.clip(np.round(xs + gx[ys, xs] * step).astype(int), 0, w - 1)
    out = np.zeros_like(region, dtype=bool)
    out[ys, xs] = region[qy, qx]
    return out


def _disk(px: int) -> np.ndarray:
    """A disk of radius `px` as an OpenCV structuring element ((2 px + 1)² uint8)."""
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1))


def _grown(mask: np.ndarray, px: int) -> np.ndarray:
    k = 2 * px + 1
    return cv2.dilate(mask.astype(np.uint8), np.ones((k, k), np.uint8)) > 0


def find_mask_region(
    segmenter: Segmenter,
    face: np.ndarray,
    landmarks: np.ndarray,
    inside: np.ndarray | None = None,
) -> MaskRegion:
    """Where the face mask is on an aligned face, or that there is none.

    "No mask" when the network's region (`final_region` before the photo's colours) covers under
    NO_MASK_AREA of the face inside the photo or its mean probability there is under
    MIN_CONFIDENCE: the photo is then to be left unchanged. (Both limits: 200 val faces without
    masks, 98 % "no mask"; the first 27 real masked photos, all found.) The colours shape the
    hole but do not decide whether there is one: trimming a region's doubtful pixels raises its
    mean probability, which would turn a bare laughing face's mouth region (expressions-tw
    2731b07, p 0.585) into a mask. Otherwise the hole is the final region, and `area` its share.
    Without `inside`, the flat fill tells what lay outside the photo
    (`model.faces.inside_from_fill`): the network, trained mostly on faces whose crops were
    edge-replicated, takes the grey band under a tight crop's chin for a mask.
    """
    from model.faces import inside_from_fill

    prob = segmenter.probability(face)
    inside = inside_from_fill(face) if inside is None else np.asarray(inside, bool)
    network, zone, reach = _network_region(prob, landmarks, inside)
    seen = network & inside
    area = float(seen.mean())
    confidence = float(prob[seen].mean()) if seen.any() else 0.0
    if area < NO_MASK_AREA or confidence < MIN_CONFIDENCE:
        empty = np.zeros_like(network)
        return MaskRegion(empty, False, area, confidence, NO_MASK_MESSAGE, empty)
    region = _finished(network, zone, reach, landmarks, inside, face)
    area = float((region & inside).mean())
    return MaskRegion(region, True, area, confidence, None, with_rim(region, landmarks))


def with_rim(region: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The hole to inpaint for a final region (bool (H, W)): grown by RIM_PX (a disk), never onto
    the eyes (`model.masks.eye_guard`)."""
    from model.masks import eye_guard

    disk = _disk(RIM_PX)
    grown = cv2.dilate(np.asarray(region, np.uint8), disk) > 0
    return grown & ~eye_guard(landmarks, grown.shape)


def load_segmenter(
    untrained: bool = False,
    *,
    preset: str = "compact",
    device: str | torch.device | None = None,
    weights_dir: str | Path = WEIGHTS_DIR,
) -> Segmenter:
    """The shipped segmenter (WeightsError when missing/corrupt), or a seeded untrained one."""
    from model.checkpoint import load_weights
    from model.networks import build_network, from_architecture
    from model.train_config import load_preset

    dev = torch.device(device) if device is not None else torch.device("cpu")
    if untrained:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            net = build_network(
                "unet_segmenter",
                **load_preset(preset).get("networks", {}).get("unet_segmenter", {}),
            )
        return Segmenter(net, dev, {"untrained": True})
    state, card = load_weights("segmenter", weights_dir)
    net = from_architecture(card["architecture"])
    net.load_state_dict(state)
    return Segmenter(net, dev, card)
