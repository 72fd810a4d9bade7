"""Training examples that teach the segmenter what a face mask is, and what it is not.

The first segmenter saw only masked faces and learned "lower face". Here each aligned face with
its landmarks becomes one of three kinds, then gets things that are not masks on top:
- `bare`: the face as it is, target empty (the same faces the masks are drawn on);
- `mask`: a synthetic mask (model.masks) made to look real: recoloured dark or light, printed
  text, ear loops, a sheen, all inside the target;
- `partial`: the mask pulled down under the nose or under the chin: the target is only the fabric.
Then (any kind): hands, glasses, beards, hair, a microphone or a scarf over the face, all left
out of the target; walls and shirts in mask colours behind the face; the photo's edge cutting the
crop; and camera effects (colour, blur, noise, JPEG). One seed gives the same example.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from model.config import IMAGE_SIZE
from model.faces import OUTSIDE_FILL
from model.masks import PALETTES, TemplateSet, _FaceFrame, apply_mask

KINDS = ("bare", "mask", "partial")
KIND_SHARE = (0.35, 0.45, 0.20)

# Probability of each occluder per kind: (bare, mask, partial).
OCCLUDER_SHARE = {
    "hand": (0.22, 0.15, 0.12),
    "glasses": (0.2, 0.25, 0.15),
    "hair": (0.15, 0.15, 0.15),
    "microphone": (0.06, 0.06, 0.04),
    "scarf": (0.1, 0.0, 0.0),
}
BEARD_SHARE = (0.15, 0.05, 0.2)  # drawn on the skin, under any mask
BACKGROUND_SHARE = 0.3
EDGE_SHARE = 0.1


@dataclass
class Example:
    image: np.ndarray  # (256, 256, 3) uint8, the segmenter's input
    target: np.ndarray  # (256, 256) bool, True = face-mask fabric
    kind: str  # one of KINDS
    extras: list[str] = field(default_factory=list)  # what else was drawn (for sheets and tests)


# --- helpers ------------------------------------------------------------------------------------


def _skin(face: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """Median colour of both cheeks (between the jaw and the nose), RGB float."""
    pts = np.concatenate(
        [_box(face, 0.5 * (lm[2] + lm[31]), 5), _box(face, 0.5 * (lm[14] + lm[35]), 5)]
    )
    return np.median(pts, axis=0).astype(np.float32)


def _box(img: np.ndarray, c: np.ndarray, r: int) -> np.ndarray:
    x, y = int(np.clip(c[0], r, img.shape[1] - r - 1)), int(np.clip(c[1], r, img.shape[0] - r - 1))
    return img[y - r : y + r + 1, x - r : x + r + 1].reshape(-1, 3).astype(np.float32)


def _blend(image: np.ndarray, layer: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = np.clip(alpha, 0, 1)[..., None].astype(np.float32)
    out = image.astype(np.float32) * (1 - a) + layer.astype(np.float32) * a
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _px(points: np.ndarray) -> np.ndarray:
    """Float (N, 2) -> int32 points at 1/8 pixel (cv2 shift=3)."""
    return np.round(np.asarray(points, np.float64) * 8).astype(np.int32)


def _fabric(
    shape: tuple[int, int], rng: np.random.Generator, templates: TemplateSet | None
) -> np.ndarray:
    """A (h, w, 3) float surface in face-mask colours: a palette colour, shaded, sometimes a print."""
    h, w = shape
    style = list(PALETTES)[rng.integers(len(PALETTES))]
    names = list(PALETTES[style])
    colour = np.array(PALETTES[style][names[rng.integers(len(names))]], np.float32)
    if templates is not None and templates.textures and rng.random() < 0.25:
        tex = templates.texture(templates.textures[rng.integers(len(templates.textures))])
        reps = (h // tex.shape[0] + 1, w // tex.shape[1] + 1, 1)
        return np.tile(tex, reps)[:h, :w].astype(np.float32)
    low = cv2.resize(
        rng.normal(0, 0.06, (4, 4)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC
    )
    grain = rng.normal(0, 0.02, (h, w)).astype(np.float32)
    surf = colour * np.clip(1 + low + grain, 0.5, 1.5)[..., None]
    if rng.random() < 0.3:  # pleats / folds
        yy = np.arange(h, dtype=np.float32)[:, None]
        period = rng.uniform(10, 30)
        surf *= (1 - 0.12 * (np.sin(2 * np.pi * yy / period) > 0.8))[..., None]
    return surf


# --- masks made to look real (all inside the target) -------------------------------------------


def _recolour(image, target, rng) -> tuple[np.ndarray, str]:
    """Keep the mask's folds and shading, change its colour: dark, light or any."""
    px = image[target].astype(np.float32)
    lum = px.mean(axis=1, keepdims=True) / max(float(px.mean()), 1.0)
    r = rng.random()
    if r < 0.45:
        colour, name = rng.uniform(15, 70) * rng.uniform(0.8, 1.2, 3), "dark"
    elif r < 0.7:
        colour, name = rng.uniform(200, 245) * rng.uniform(0.95, 1.03, 3), "light"
    else:
        hsv = np.uint8([[[rng.integers(180), rng.integers(40, 255), rng.integers(60, 240)]]])
        colour, name = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32), "colour"
    out = image.copy()
    out[target] = np.clip(colour * np.clip(lum, 0.5, 1.4) + 0.5, 0, 255).astype(np.uint8)
    return out, f"recolour:{name}"


def _print(image, target, rng) -> np.ndarray:
    """Text or a logo printed on the fabric."""
    ys, xs = np.nonzero(target)
    layer = np.zeros(image.shape[:2], np.uint8)
    cx, cy = int(np.median(xs)), int(np.percentile(ys, rng.uniform(30, 70)))
    if rng.random() < 0.6:
        text = "".join(chr(rng.integers(65, 91)) for _ in range(rng.integers(2, 7)))
        scale = rng.uniform(0.5, 1.2)
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
        cv2.putText(
            layer,
            text,
            (cx - tw // 2, cy + th // 2),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            1,
            int(rng.integers(1, 4)),
            cv2.LINE_AA,
        )
    else:
        for _ in range(rng.integers(1, 4)):
            c = (cx + int(rng.integers(-30, 31)), cy + int(rng.integers(-15, 16)))
            cv2.circle(
                layer, c, int(rng.integers(4, 14)), 1, -1 if rng.random() < 0.5 else 2, cv2.LINE_AA
            )
    ink = rng.uniform(0, 255, 3) if rng.random() < 0.7 else 255 - image[target].mean(0)
    alpha = (layer > 0) & target
    return _blend(image, np.broadcast_to(ink, image.shape), alpha.astype(np.float32))


def _ear_loops(image, target, lm, rng) -> np.ndarray:
    """Elastic loops from the mask's sides towards the ears; returns the loop pixels (bool)."""
    ys, xs = np.nonzero(target)
    top, bottom = ys.min(), ys.max()
    colour = (
        image[target].mean(0) * rng.uniform(0.85, 1.1)
        if rng.random() < 0.7
        else rng.uniform(0, 255, 3)
    )
    layer = np.zeros(image.shape[:2], np.uint8)
    t = int(rng.integers(1, 4))
    frame = _FaceFrame(lm)
    for side, ear_top, ear_low in (("left", 0, 2), ("right", 16, 14)):
        for frac, ear in ((0.15, ear_top), (0.75, ear_low)):
            y = int(top + frac * (bottom - top))
            row = np.nonzero(target[y])[0]
            if not len(row):
                continue
            x = row.min() if side == "left" else row.max()
            out = lm[ear] + (lm[ear] - lm[30]) * rng.uniform(0.05, 0.25)  # just past the jaw
            out = out - frame.v * frame.iod * rng.uniform(0.0, 0.15)
            cv2.line(layer, (int(x), y), tuple(int(v) for v in out), 1, t, cv2.LINE_AA)
    loops = layer > 0
    return _blend(image, np.broadcast_to(colour, image.shape), loops.astype(np.float32)), loops


def _sheen(image, target, rng) -> np.ndarray:
    """A soft specular highlight (lamps on synthetic fabric)."""
    ys, xs = np.nonzero(target)
    i = rng.integers(len(ys))
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]].astype(np.float32)
    sx, sy = rng.uniform(6, 25), rng.uniform(4, 14)
    blob = np.exp(-(((xx - xs[i]) / sx) ** 2 + ((yy - ys[i]) / sy) ** 2)) * rng.uniform(0.3, 0.7)
    return _blend(image, np.full_like(image, 255), blob * target)


def _pull_down(face, masked, target, lm, rng) -> tuple[np.ndarray, np.ndarray, str]:
    """The mask slid down the face: its top under the nose, or the whole mask under the chin.
    Moved and squashed along the face's vertical axis; the face shows where it was."""
    frame = _FaceFrame(lm)
    ys, xs = np.nonzero(target)
    v_now = frame.local(np.stack([xs, ys], 1).astype(np.float64))[:, 1].min()
    loc = frame.loc
    if rng.random() < 0.5:
        where, v_top, squash = (
            "under_nose",
            loc[33, 1] + rng.uniform(0.05, 0.2),
            rng.uniform(0.75, 1.0),
        )
    else:
        f = rng.uniform(0.3, 0.9)
        where, v_top, squash = (
            "under_chin",
            loc[57, 1] + f * (loc[8, 1] - loc[57, 1]),
            rng.uniform(0.55, 0.85),
        )
    top = frame.world(np.array([loc[30, 0], v_now]))  # squash about the mask's top centre
    v = frame.v
    lin = np.eye(2) + (squash - 1) * np.outer(v, v)
    shift = (v_top - v_now) * frame.iod * v
    m = np.hstack([lin, (top + shift - lin @ top)[:, None]])
    size = (face.shape[1], face.shape[0])
    layer = cv2.warpAffine(masked, m, size, flags=cv2.INTER_LINEAR)
    seg = cv2.warpAffine(target.astype(np.float32), m, size, flags=cv2.INTER_LINEAR) > 0.5
    out = face.copy()
    out[seg] = layer[seg]
    # The bunched top edge: a darker fold along it.
    dist = cv2.distanceTransform(np.pad(seg.astype(np.uint8), 1), cv2.DIST_L2, 3)[1:-1, 1:-1]
    yy = np.mgrid[: seg.shape[0], : seg.shape[1]][0]
    rows = np.where(seg.any(1))[0]
    upper = yy < (rows.min() + 0.35 * (rows.max() - rows.min()) if len(rows) else 0)
    fold = seg & (dist < rng.uniform(2, 5)) & upper
    out[fold] = (out[fold] * rng.uniform(0.6, 0.85)).astype(np.uint8)
    return out, seg, where


# --- things that are not masks (left out of the target) ----------------------------------------


def _hand(image, lm, rng, face) -> tuple[np.ndarray, np.ndarray]:
    """A hand (palm + four fingers + thumb) in skin colour over the mouth, chin or a cheek."""
    frame = _FaceFrame(lm)
    iod = frame.iod
    c = frame.world(frame.loc[[51, 57, 8, 30]].mean(0) + rng.uniform([-0.9, -0.3], [0.9, 0.7]))
    ang = rng.uniform(0, 2 * np.pi)
    d = np.array([np.cos(ang), np.sin(ang)])  # towards the fingertips
    n = np.array([-d[1], d[0]])
    s = iod * rng.uniform(0.8, 1.3)
    canvas = np.zeros(image.shape[:2], np.float32)
    cv2.ellipse(
        canvas,
        (_px(c)[0], _px(c)[1]),
        (int(0.5 * s * 8), int(0.42 * s * 8)),
        float(np.degrees(ang)),
        0,
        360,
        1.0,
        -1,
        cv2.LINE_AA,
        3,
    )
    widths = s * rng.uniform(0.15, 0.2)
    for k, off in enumerate(np.linspace(-0.3, 0.3, 4)):
        base = c + d * 0.35 * s + n * off * s
        tip = (
            base
            + d * s * rng.uniform(0.55, 0.85) * (0.8 if k in (0, 3) else 1.0)
            + n * rng.normal(0, 0.05) * s
        )
        cv2.line(
            canvas, tuple(_px(base)), tuple(_px(tip)), 1.0, max(2, int(widths)), cv2.LINE_AA, 3
        )
    thumb = c - n * 0.45 * s
    cv2.line(
        canvas,
        tuple(_px(thumb)),
        tuple(_px(thumb + (d - n) * 0.4 * s)),
        1.0,
        max(2, int(widths * 1.1)),
        cv2.LINE_AA,
        3,
    )
    skin = _skin(face, lm) * rng.uniform(0.85, 1.15, 3)
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]].astype(np.float32)
    along = ((xx - c[0]) * d[0] + (yy - c[1]) * d[1]) / s
    shade = np.clip(1 + 0.12 * along + rng.normal(0, 0.02, canvas.shape), 0.6, 1.3)
    edge = (
        cv2.morphologyEx(
            (canvas > 0.5).astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)
        )
        > 0
    )
    shade[edge] *= 0.8  # the outline between fingers and against the face
    return _blend(image, skin * shade[..., None], canvas), canvas > 0.3


def _glasses(image, lm, rng, face) -> tuple[np.ndarray, np.ndarray]:
    """Frames around the eyes (sometimes dark lenses), bridge and temples."""
    frame = _FaceFrame(lm)
    iod, roll = frame.iod, float(np.degrees(np.arctan2(frame.u[1], frame.u[0])))
    a, b = 0.42 * iod * rng.uniform(0.9, 1.15), 0.3 * iod * rng.uniform(0.85, 1.25)
    drop = frame.v * iod * rng.uniform(0.0, 0.1)
    rim = np.zeros(image.shape[:2], np.float32)
    lens = np.zeros_like(rim)
    t = int(rng.integers(1, 5))
    centres = [lm[36:42].mean(0) + drop, lm[42:48].mean(0) + drop]
    for cen in centres:
        axes = (int(a * 8), int(b * 8))
        cv2.ellipse(lens, tuple(_px(cen)), axes, roll, 0, 360, 1.0, -1, cv2.LINE_AA, 3)
        cv2.ellipse(rim, tuple(_px(cen)), axes, roll, 0, 360, 1.0, t, cv2.LINE_AA, 3)
    inner = [centres[0] + frame.u * a, centres[1] - frame.u * a]
    cv2.line(rim, tuple(_px(inner[0])), tuple(_px(inner[1])), 1.0, t, cv2.LINE_AA, 3)
    for cen, sgn, ear in ((centres[0], -1, 0), (centres[1], 1, 16)):
        cv2.line(
            rim, tuple(_px(cen + sgn * frame.u * a)), tuple(_px(lm[ear])), 1.0, t, cv2.LINE_AA, 3
        )
    colour = [(20, 20, 22), (90, 60, 40), (150, 150, 155), (200, 170, 90)][rng.integers(4)]
    out = image
    cover = rim > 0.3
    if rng.random() < 0.25:  # sunglasses
        out = _blend(out, np.full_like(image, 25), lens * rng.uniform(0.7, 0.92))
        cover |= lens > 0.3
    elif rng.random() < 0.5:  # a slight tint
        out = _blend(out, np.full_like(image, 200), lens * rng.uniform(0.05, 0.2))
    out = _blend(out, np.broadcast_to(np.array(colour, np.float32), image.shape), rim)
    return out, cover


def _beard(image, lm, rng) -> tuple[np.ndarray, np.ndarray]:
    """Hair on the jaw, chin and upper lip (lips left bare), from stubble to a full beard."""
    frame = _FaceFrame(lm)
    loc = frame.loc
    v_cheek = loc[33, 1] + rng.uniform(-0.05, 0.2)
    left, right = frame.jaw_at(v_cheek, "left"), frame.jaw_at(v_cheek, "right")
    inner_l = left + rng.uniform(0.15, 0.35) * (loc[48] - left)
    inner_r = right + rng.uniform(0.15, 0.35) * (loc[54] - right)
    moustache = [
        loc[48] + [-0.05, -0.08],
        loc[50] + [0, -0.12],
        loc[52] + [0, -0.12],
        loc[54] + [0.05, -0.08],
    ]
    jaw = [loc[i] for i in range(13, 2, -1) if loc[i, 1] > v_cheek]
    poly = frame.world(np.array([left, inner_l, *moustache, inner_r, right, *jaw]))
    region = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(region, [_px(poly)], 1, cv2.LINE_AA, 3)
    lips = np.zeros_like(region)
    cv2.fillPoly(lips, [_px(lm[48:60])], 1, cv2.LINE_AA, 3)
    area = (region > 0) & ~(cv2.dilate(lips, np.ones((3, 3), np.uint8)) > 0)
    noise = rng.normal(0, 1, image.shape[:2]).astype(np.float32)
    k = np.zeros((7, 7), np.float32)
    k[:, 3] = 1 / 7  # strands run down the face
    noise = cv2.filter2D(noise, -1, k)
    colour = np.array(
        [(30, 22, 18), (60, 42, 30), (110, 90, 70), (150, 145, 140), (140, 80, 45)][
            rng.integers(5)
        ],
        np.float32,
    )
    density = rng.uniform(0.35, 0.95)
    alpha = cv2.GaussianBlur(area.astype(np.float32), (0, 0), 2.5) * np.clip(
        density + 0.25 * noise, 0, 1
    )
    layer = colour * np.clip(1 + 0.25 * noise, 0.5, 1.6)[..., None]
    return _blend(image, layer, alpha), alpha > 0.3


def _hair(image, lm, rng, face) -> tuple[np.ndarray, np.ndarray]:
    """Strands or a lock of hair falling over the face from above."""
    frame = _FaceFrame(lm)
    colour = np.array(
        [(25, 20, 18), (70, 50, 35), (150, 120, 80), (200, 180, 130), (120, 60, 30)][
            rng.integers(5)
        ],
        np.float32,
    )
    canvas = np.zeros(image.shape[:2], np.float32)
    side = rng.choice([-1.0, 1.0])
    lock = rng.random() < 0.4
    for _ in range(1 if lock else int(rng.integers(3, 12))):
        u0 = side * rng.uniform(0.2, 1.1)
        ctrl = np.array(
            [
                [u0, -1.2],
                [u0 + rng.normal(0, 0.3), rng.uniform(0, 0.8)],
                [u0 + rng.normal(0, 0.4), rng.uniform(0.8, 2.2)],
            ]
        )
        t = np.linspace(0, 1, 30)[:, None]
        curve = frame.world((1 - t) ** 2 * ctrl[0] + 2 * (1 - t) * t * ctrl[1] + t**2 * ctrl[2])
        width = int(rng.integers(6, 16)) if lock else int(rng.integers(1, 3))
        cv2.polylines(canvas, [_px(curve)], False, 1.0, width, cv2.LINE_AA, 3)
    shade = np.clip(1 + rng.normal(0, 0.15, canvas.shape), 0.5, 1.5)
    return _blend(image, colour * shade[..., None], canvas * rng.uniform(0.8, 1.0)), canvas > 0.3


def _microphone(image, lm, rng, face) -> tuple[np.ndarray, np.ndarray]:
    """A hand-held microphone in front of the mouth: a meshed ball on a handle."""
    frame = _FaceFrame(lm)
    iod = frame.iod
    head = frame.world(frame.loc[[51, 57]].mean(0) + rng.uniform([-0.6, 0.0], [0.6, 0.8]))
    r = iod * rng.uniform(0.25, 0.45)
    canvas = np.zeros(image.shape[:2], np.float32)
    end = head + np.array([rng.uniform(-1, 1), 1.0]) * iod * 3
    cv2.line(canvas, tuple(_px(head)), tuple(_px(end)), 1.0, int(r * 0.9), cv2.LINE_AA, 3)
    ball = np.zeros_like(canvas)
    cv2.circle(ball, tuple(_px(head)), int(r * 8), 1.0, -1, cv2.LINE_AA, 3)
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    mesh = ((xx + yy) % 4 < 1) | ((xx - yy) % 4 < 1)
    grey = np.full(image.shape, rng.uniform(20, 60), np.float32)
    grey[mesh & (ball > 0.5)] *= 2.2
    alpha = np.maximum(canvas, ball)
    return _blend(image, grey, alpha), alpha > 0.3


def _scarf(image, lm, rng, face, templates=None) -> tuple[np.ndarray, np.ndarray]:
    """A scarf or collar around the neck, below the chin (not over it)."""
    frame = _FaceFrame(lm)
    drop = rng.uniform(0.3, 0.6)
    pts = [frame.world(frame.loc[i] + [0, drop]) for i in range(2, 15)]
    h, w = image.shape[:2]
    poly = np.array([[0, h + 5], *pts, [w, h + 5]])
    poly[1:-1, 1] = np.maximum(poly[1:-1, 1], frame.world(frame.loc[8])[1] + drop * frame.iod * 0.5)
    region = np.zeros((h, w), np.uint8)
    cv2.fillPoly(region, [_px(poly)], 1, cv2.LINE_AA, 3)
    layer = _fabric((h, w), rng, templates)
    return _blend(image, layer, region.astype(np.float32)), region > 0


OCCLUDERS = {"hand": _hand, "glasses": _glasses, "hair": _hair, "microphone": _microphone}


# --- the scene around the face -----------------------------------------------------------------


def face_region(lm: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: jaw line plus a forehead above the brows (the head's front, roughly)."""
    frame = _FaceFrame(lm)
    brows = frame.world(frame.loc[17:27] - [0, 0.7])
    hull = cv2.convexHull(np.vstack([lm[0:17], brows]).astype(np.float32))
    region = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(region, _px(hull[:, 0]), 1, cv2.LINE_AA, 3)
    return region > 0


def _background(image, keep, lm, rng, templates) -> np.ndarray:
    """Part of the background (a wall, a shirt) in face-mask colours and prints."""
    h, w = image.shape[:2]
    guard = (
        cv2.dilate((face_region(lm, (h, w)) | keep).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    )
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    ang = rng.uniform(0, 2 * np.pi)
    half = (xx - w / 2) * np.cos(ang) + (yy - h / 2) * np.sin(ang) > rng.uniform(-60, 40)
    area = half & ~guard
    alpha = cv2.GaussianBlur(area.astype(np.float32), (0, 0), 1.0)
    return _blend(image, _fabric((h, w), rng, templates), alpha)


def _photo_edge(image, target, rng) -> tuple[np.ndarray, np.ndarray, str]:
    """The photo ends inside the crop (a face cut by the frame): beyond it, the neutral fill."""
    h, w = image.shape[:2]
    side = rng.choice(["bottom", "bottom", "left", "right"])
    out, tgt = image.copy(), target.copy()
    cut = (
        int(rng.integers(int(0.78 * h), h - 4))
        if side == "bottom"
        else int(rng.integers(4, int(0.18 * w)))
    )
    sl = {"bottom": np.s_[cut:, :], "left": np.s_[:, :cut], "right": np.s_[:, w - cut :]}[side]
    out[sl] = OUTSIDE_FILL  # what model.faces.align_face puts outside the photo
    tgt[sl] = False
    return out, tgt, f"edge:{side}"


def _camera(image, rng) -> np.ndarray:
    """Colour cast, exposure, blur, sensor noise and JPEG, as different photos bring them."""
    x = image.astype(np.float32)
    x = x * rng.uniform(0.75, 1.2) * rng.uniform(0.92, 1.08, 3) + rng.uniform(-15, 15)
    if rng.random() < 0.3:
        grey = x.mean(axis=2, keepdims=True)
        x = grey + (x - grey) * rng.uniform(0.3, 1.3)
    if rng.random() < 0.25:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.5, 1.8))
    if rng.random() < 0.3:
        x = x + rng.normal(0, rng.uniform(2, 8), x.shape)
    out = np.clip(x + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < 0.4:
        ok, buf = cv2.imencode(
            ".jpg", out[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(25, 85))]
        )
        if ok:
            out = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])
    return out


# --- entry point --------------------------------------------------------------------------------


def make_example(
    face: np.ndarray,
    landmarks: np.ndarray,
    seed: int,
    templates: TemplateSet | None = None,
    kind: str | None = None,
) -> Example:
    """One training example from an aligned face (256², uint8) and its 68 landmarks."""
    rng = np.random.default_rng(seed)
    lm = np.asarray(landmarks, np.float64)
    kind = kind or str(rng.choice(KINDS, p=KIND_SHARE))
    k = KINDS.index(kind)
    extras: list[str] = []
    skin = face
    if rng.random() < BEARD_SHARE[k]:
        skin, _ = _beard(face, lm, rng)
        extras.append("beard")
    if kind == "bare":
        image, target = skin.copy(), np.zeros(face.shape[:2], bool)
    else:
        m = apply_mask(skin, lm, seed=int(rng.integers(2**31)), templates=templates)
        image, target = m.image, m.seg.copy()
        extras.append(m.style)
        if target.any():
            if rng.random() < 0.3:
                image, name = _recolour(image, target, rng)
                extras.append(name)
            if rng.random() < 0.15:
                image = _print(image, target, rng)
                extras.append("print")
            if rng.random() < 0.2:
                image = _sheen(image, target, rng)
                extras.append("sheen")
            if kind == "partial":
                image, target, where = _pull_down(skin, image, target, lm, rng)
                extras.append(where)
            if target.any() and rng.random() < 0.35:
                image, loops = _ear_loops(image, target, lm, rng)
                target |= loops
                extras.append("ear_loops")
    if rng.random() < OCCLUDER_SHARE["scarf"][k]:
        image, cover = _scarf(image, lm, rng, face, templates)
        target &= ~cover
        extras.append("scarf")
    if rng.random() < BACKGROUND_SHARE:
        image = _background(image, target, lm, rng, templates)
        extras.append("background")
    for name, fn in OCCLUDERS.items():
        if rng.random() < OCCLUDER_SHARE[name][k]:
            image, cover = fn(image, lm, rng, face)
            target &= ~cover
            extras.append(name)
    if rng.random() < EDGE_SHARE:
        image, target, where = _photo_edge(image, target, rng)
        extras.append(where)
    image = _camera(image, rng)
    return Example(image=image, target=target, kind=kind, extras=extras)


def make_examples(
    faces: np.ndarray, landmarks: np.ndarray, seeds: list[int], templates_dir: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """A batch of examples (worker entry point): images (N, 256, 256, 3), targets (N, 256, 256)."""
    from model.masks import cached_templates

    templates = cached_templates(templates_dir) if templates_dir else None
    out = [
        make_example(f, lm, s, templates) for f, lm, s in zip(faces, landmarks, seeds, strict=True)
    ]
    return np.stack([e.image for e in out]), np.stack([e.target for e in out])


def example_sheet(faces, landmarks, path, n: int = 24, seed: int = 0, templates=None) -> None:
    """A PNG of `n` examples: input above, target overlaid in red below."""
    tiles = []
    for i in range(n):
        e = make_example(faces[i % len(faces)], landmarks[i % len(faces)], seed + i, templates)
        over = e.image.astype(np.float32)
        over[e.target] = 0.5 * over[e.target] + [127, 0, 0]
        col = np.vstack([e.image, over.astype(np.uint8)])
        cv2.putText(
            col,
            f"{e.kind} {' '.join(x.split(':')[-1] for x in e.extras)}"[:40],
            (3, 12),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.33,
            (255, 255, 0),
            1,
            cv2.LINE_AA,
        )
        tiles.append(col)
    cols = 8
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    sheet = np.vstack([np.hstack(tiles[i : i + cols]) for i in range(0, len(tiles), cols)])
    cv2.imwrite(str(path), sheet[:, :, ::-1])


assert IMAGE_SIZE == 256  # the drawing sizes above are tuned for 256² aligned faces
