"""Synthetic face masks on aligned faces: procedural styles shaped from the 68 landmarks and
MaskTheFace templates warped by a homography; each returns the masked face and the exact
boolean segmentation of the covered pixels, deterministically for a seed.
"""

from __future__ import annotations

import configparser
import functools
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from model.faces import head_pose

STYLES = ("surgical", "kn95", "n95", "cloth")
TEMPLATE_PREFIX = "template:"
TEMPLATE_YAW_DEG = 15.0  # beyond this, a template's _left / _right variant is used
TEMPLATE_MAX_SIDE = 420  # templates are stored smaller: warping into 256x256 needs no more
TEMPLATE_SHARE = 0.5  # with templates and no style asked, half the masks come from templates

# Named colours per style (RGB): what such masks look like in photos.
PALETTES: dict[str, dict[str, tuple[int, int, int]]] = {
    "surgical": {
        "light_blue": (150, 196, 226),
        "blue": (92, 150, 205),
        "teal": (108, 186, 184),
        "white": (236, 238, 238),
        "green": (150, 205, 170),
        "pink": (236, 170, 190),
        "black": (38, 38, 42),
        "grey": (165, 170, 175),
    },
    "kn95": {
        "white": (238, 238, 236),
        "black": (34, 34, 36),
        "grey": (150, 152, 156),
        "pink": (232, 178, 190),
        "navy": (44, 58, 96),
        "beige": (222, 206, 182),
    },
    "n95": {
        "white": (240, 240, 236),
        "off_white": (226, 222, 206),
        "yellow": (230, 214, 150),
        "blue_grey": (150, 166, 186),
        "green": (120, 150, 120),
    },
}
CLOTH_PATTERNS = ("plain", "stripes", "dots", "check", "texture")


@dataclass
class MaskedFace:
    image: np.ndarray  # (256, 256, 3) uint8: the face with the mask on
    seg: np.ndarray  # (256, 256) bool: exactly the pixels that differ in kind (covered by the mask)
    style: str  # one of STYLES, or "template:<name>"
    colour: str  # colour name, "#rrggbb", or "#rrggbb <pattern>"
    seed: int


@dataclass
class Template:
    name: str
    rgba: np.ndarray  # (h, w, 4) uint8
    anchors: np.ndarray  # (6, 2) float32: mask_a .. mask_f in template pixels


@dataclass
class TemplateSet:
    """A MaskTheFace masks folder: templates grouped by base name, each with its front and
    (where present) `_left` / `_right` variants, plus the textures folder's images."""

    root: Path
    groups: dict[str, dict[str, Template]]  # base -> {"": front, "left": ..., "right": ...}
    textures: list[Path]
    _texture_cache: dict[Path, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def names(self) -> list[str]:
        return sorted(self.groups)

    def texture(self, path: Path) -> np.ndarray:
        if path not in self._texture_cache:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise ValueError(f"cannot read texture {path}")
            s = 160 / max(bgr.shape[:2])  # texture is tiled over a ~150 px mask: keep it small
            if s < 1:
                bgr = cv2.resize(bgr, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
            self._texture_cache[path] = np.ascontiguousarray(bgr[:, :, ::-1])
        return self._texture_cache[path]


# --- templates --------------------------------------------------------------------------------


def _resolve(root: Path, rel: str) -> Path | None:
    """masks.cfg paths are relative to MaskTheFace's repo ("masks/templates/x.png"): try the
    path as given, then below root, then the file name in root/templates."""
    rel_path = Path(rel.strip())
    candidates = [root / rel_path, root / "templates" / rel_path.name, root / rel_path.name]
    if len(rel_path.parts) > 1:
        candidates.insert(1, root.joinpath(*rel_path.parts[1:]))  # "masks/" is this folder
    for cand in candidates:
        if cand.is_file():
            return cand
    return None


def load_templates(directory: str | Path) -> TemplateSet:
    """Parse masks.cfg (INI: `template` path and anchors `mask_a`..`mask_f` as "x, y") and load
    each template PNG (RGBA). Sections without a template file (e.g. "empty") are skipped."""
    root = Path(directory)
    cfg_path = root / "masks.cfg"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path} not found: not a MaskTheFace masks folder")
    cfg = configparser.ConfigParser(delimiters=(":", "="), comment_prefixes=(";", "#"))
    cfg.read(cfg_path)
    groups: dict[str, dict[str, Template]] = {}
    for name in cfg.sections():
        sec = cfg[name]
        keys = [f"mask_{k}" for k in "abcdef"]
        if "template" not in sec or not all(k in sec for k in keys):
            continue
        path = _resolve(root, sec["template"])
        if path is None:
            continue
        rgba = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if rgba is None or rgba.ndim != 3 or rgba.shape[2] != 4:
            continue
        rgba = cv2.cvtColor(rgba, cv2.COLOR_BGRA2RGBA)
        anchors = np.array([[float(v) for v in sec[k].split(",")] for k in keys], np.float32)
        s = TEMPLATE_MAX_SIDE / max(rgba.shape[:2])
        if s < 1:
            rgba = cv2.resize(rgba, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
            anchors = anchors * s
        base, variant = name, ""
        for side in ("left", "right"):
            if name.endswith("_" + side):
                base, variant = name[: -len(side) - 1], side
        groups.setdefault(base, {})[variant] = Template(name, np.ascontiguousarray(rgba), anchors)
    groups = {b: v for b, v in groups.items() if "" in v}  # a front view is required
    if not groups:
        raise ValueError(f"{cfg_path}: no usable template (need `template` + mask_a..mask_f)")
    tex_dir = root / "textures"
    exts = {".png", ".jpg", ".jpeg"}
    textures = (
        sorted(p for p in tex_dir.rglob("*") if p.suffix.lower() in exts)
        if tex_dir.is_dir()
        else []
    )
    return TemplateSet(root=root, groups=groups, textures=textures)


def six_points(landmarks: np.ndarray) -> np.ndarray:
    """(6, 2) face anchors matching MaskTheFace's mask_a..mask_f: b on the nose bridge (29),
    a/c on the jaw line halfway between 29 and the nose tip's height, d/f on the jaw at the
    lower lip's height, e the chin (8). (A little lower than MaskTheFace's own points: with
    theirs, the templates' top corners reached the lower eyelids on about one face in ten.)"""
    frame = _FaceFrame(landmarks)
    lm = frame.lm
    v_a = frame.local(0.5 * (lm[29] + lm[30]))[1]
    v_lip = frame.local(lm[57])[1]
    pts = [
        frame.jaw_at(v_a, "left"),
        frame.local(lm[29]),
        frame.jaw_at(v_a, "right"),
        frame.jaw_at(v_lip, "left"),
        frame.local(lm[8]),
        frame.jaw_at(v_lip, "right"),
    ]
    return frame.world(np.array(pts))


def eye_guard(landmarks: np.ndarray, shape: tuple[int, int], gap: float = 0.1) -> np.ndarray:
    """(H, W) bool: each eye's landmarks' hull grown by `gap` inter-ocular distances, and
    everything above it. No mask may cover this (a mask pressed against the face stops under
    the eyes)."""
    frame = _FaceFrame(landmarks)
    guard = np.zeros(shape, np.uint8)
    for idx in (slice(36, 42), slice(42, 48)):
        eye = frame.loc[idx]
        grown = eye.mean(0) + (eye - eye.mean(0)) * 1.15
        lo, hi = grown[:, 0].min() - gap, grown[:, 0].max() + gap
        top = grown[:, 1].min() - 3.0  # up to well above the brows
        bottom = grown[:, 1].max() + gap
        box = np.array([[lo, top], [hi, top], [hi, bottom], [lo, bottom]])
        pts = np.round(frame.world(box) * 8).astype(np.int32)
        cv2.fillConvexPoly(guard, pts, 1, lineType=cv2.LINE_8, shift=3)
    return guard.astype(bool)


def choose_variant(yaw_deg: float, available) -> str:
    """MaskTheFace's rule: a head turned past the threshold wears the `_left` (nose towards the
    image left, yaw < 0) or `_right` variant, when the template has one; else the front view."""
    if yaw_deg < -TEMPLATE_YAW_DEG and "left" in available:
        return "left"
    if yaw_deg > TEMPLATE_YAW_DEG and "right" in available:
        return "right"
    return ""


def _apply_template(
    face: np.ndarray,
    landmarks: np.ndarray,
    rng: np.random.Generator,
    base: str,
    templates: TemplateSet,
) -> tuple[np.ndarray, np.ndarray, str]:
    variants = templates.groups[base]
    tpl = variants[choose_variant(head_pose(landmarks)[0], variants)]
    size = face.shape[1], face.shape[0]
    dst = six_points(landmarks)
    iod = np.linalg.norm(landmarks[42:48].mean(0) - landmarks[36:42].mean(0))
    dst = dst + rng.normal(0, 0.03 * iod, dst.shape)  # small shape variety per seed
    h, _ = cv2.findHomography(tpl.anchors.astype(np.float64), dst.astype(np.float64), 0)
    warped = cv2.warpPerspective(
        tpl.rgba, h, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    alpha = warped[:, :, 3].astype(np.float32) / 255.0
    alpha[eye_guard(landmarks, alpha.shape)] = 0.0  # a template's corner may not ride over an eye
    seg = alpha > 0.5
    colour = "template"
    if not seg.any():
        return face.copy(), seg, colour
    ys, xs = np.nonzero(seg)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1  # work on the mask's box
    rgb = warped[y0:y1, x0:x1, :3].astype(np.float32)
    box = seg[y0:y1, x0:x1]
    if base.startswith("cloth") and templates.textures and rng.random() < 0.6:
        tex_path = templates.textures[rng.integers(len(templates.textures))]
        lum = rgb.mean(axis=2, keepdims=True) / max(float(rgb[box].mean()), 1.0)
        tex = _tile(templates.texture(tex_path), y1 - y0, x1 - x0, rng).astype(np.float32)
        rgb = tex * np.clip(lum, 0.3, 1.5)  # the template's folds and shading over the print
        colour = f"texture {tex_path.stem}"
    else:  # brightness / contrast / tint jitter keeps one template from looking the same twice
        gain = rng.uniform(0.85, 1.1) * rng.uniform(0.94, 1.06, 3)
        rgb = rgb * gain + rng.uniform(-10, 10)
    a = np.where(box, alpha[y0:y1, x0:x1], 0.0)[:, :, None]
    out = face.copy()
    patch = out[y0:y1, x0:x1].astype(np.float32) * (1 - a) + np.clip(rgb, 0, 255) * a
    out[y0:y1, x0:x1] = np.clip(patch + 0.5, 0, 255).astype(np.uint8)
    return out, seg, colour


def _tile(texture: np.ndarray, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A (h, w, 3) tiling of a texture at a random scale and offset."""
    s = rng.uniform(0.5, 1.2)
    tex = cv2.resize(texture, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    th, tw = tex.shape[:2]
    reps = (h // th + 2, w // tw + 2, 1)
    big = np.tile(tex, reps)
    y, x = rng.integers(th), rng.integers(tw)
    return big[y : y + h, x : x + w]


# --- procedural masks -------------------------------------------------------------------------


class _FaceFrame:
    """A face-local frame: u along the eye line (image-left eye -> image-right eye), v down the
    face, both in units of the inter-ocular distance, origin at the nose bridge top (27)."""

    def __init__(self, landmarks: np.ndarray):
        self.lm = np.asarray(landmarks, dtype=np.float64)  # (68, 2)
        le, re = self.lm[36:42].mean(0), self.lm[42:48].mean(0)
        self.iod = max(float(np.linalg.norm(re - le)), 1e-3)
        self.u = (re - le) / self.iod
        self.v = np.array([-self.u[1], self.u[0]])
        self.origin = self.lm[27]
        self.loc = self.local(self.lm)  # (68, 2) local coordinates

    def local(self, p: np.ndarray) -> np.ndarray:
        d = np.asarray(p, dtype=np.float64) - self.origin
        return np.stack([d @ self.u, d @ self.v], axis=-1) / self.iod

    def world(self, q: np.ndarray) -> np.ndarray:
        q = np.asarray(q, dtype=np.float64) * self.iod
        return self.origin + q[..., :1] * self.u + q[..., 1:2] * self.v

    def jaw_at(self, v: float, side: str) -> np.ndarray:
        """Local point on the jaw line (0..8 left, 16..8 right) at height v (clamped)."""
        idx = range(0, 9) if side == "left" else range(16, 7, -1)
        pts = self.loc[list(idx)]  # from the top of the jaw down to the chin
        vs = np.maximum.accumulate(pts[:, 1])  # monotone for interpolation
        if v <= vs[0]:
            return pts[0].copy()
        if v >= vs[-1]:
            return pts[-1].copy()
        return np.array([np.interp(v, vs, pts[:, 0]), v])


@dataclass(frozen=True)
class _Shape:
    """Outline parameters, in inter-ocular units (drawn per seed within style ranges)."""

    bridge_t: float  # top centre between landmark 28 (0) and 29 (1); negative = above 28
    side_t: float  # side top height between 28 (0) and 30 (1)
    eye_gap: float  # clearance below the lower eyelids
    side_margin: float  # outward from the jaw line at the cheeks
    chin_margin: float  # outward (down) from the jaw at the chin


_SHAPE_RANGES = {
    "surgical": dict(
        bridge_t=(0.1, 0.6),
        side_t=(0.2, 0.6),
        eye_gap=(0.1, 0.18),
        side_margin=(0.03, 0.08),
        chin_margin=(0.12, 0.22),
    ),
    "kn95": dict(
        bridge_t=(-0.2, 0.2),
        side_t=(0.3, 0.7),
        eye_gap=(0.08, 0.14),
        side_margin=(0.02, 0.06),
        chin_margin=(0.15, 0.25),
    ),
    "n95": dict(
        bridge_t=(-0.1, 0.3),
        side_t=(0.3, 0.6),
        eye_gap=(0.08, 0.14),
        side_margin=(0.04, 0.08),
        chin_margin=(0.2, 0.3),
    ),
    "cloth": dict(
        bridge_t=(0.0, 0.5),
        side_t=(0.2, 0.6),
        eye_gap=(0.08, 0.16),
        side_margin=(0.03, 0.09),
        chin_margin=(0.15, 0.28),
    ),
}


def _outline(frame: _FaceFrame, shape: _Shape) -> np.ndarray:
    """Closed mask outline in local coordinates, (N, 2), clockwise in the image."""
    loc = frame.loc
    centre = loc[[30, 33, 51, 57]].mean(0)  # inside the mask: outward direction reference
    bridge = loc[28] + shape.bridge_t * (loc[29] - loc[28])
    v_side = loc[28, 1] + shape.side_t * (loc[30, 1] - loc[28, 1])

    def pushed(p: np.ndarray, margin: float) -> np.ndarray:
        d = p - centre
        return p + margin * d / max(np.linalg.norm(d), 1e-6)

    left_top = pushed(frame.jaw_at(v_side, "left"), shape.side_margin)
    right_top = pushed(frame.jaw_at(v_side, "right"), shape.side_margin)
    eye_l = np.array([loc[36:42, 0].mean(), loc[[40, 41], 1].max() + shape.eye_gap])
    eye_r = np.array([loc[42:48, 0].mean(), loc[[46, 47], 1].max() + shape.eye_gap])
    top = _catmull_rom(np.array([left_top, eye_l, bridge, eye_r, right_top]), 6)

    # Never cover an eye: keep every top-edge point below the eye landmarks near it.
    eyes = loc[36:48]
    for p in top:
        near = np.abs(eyes[:, 0] - p[0]) < 0.3
        if near.any():
            p[1] = max(p[1], eyes[near, 1].max() + 0.5 * shape.eye_gap)

    def margin(i: int) -> float:  # grows from the cheeks to under the chin (jaw 5..11)
        w = float(np.clip(1 - abs(i - 8) / 4, 0, 1))
        return shape.side_margin + (shape.chin_margin - shape.side_margin) * w

    right = [pushed(loc[i], margin(i)) for i in range(16, 7, -1) if loc[i, 1] > v_side + 0.05]
    left = [pushed(loc[i], margin(i)) for i in range(7, -1, -1) if loc[i, 1] > v_side + 0.05]
    lower = _chaikin(np.array([right_top, *right, *left, left_top]), 2)
    return np.vstack([top, lower[1:-1]])


def _catmull_rom(ctrl: np.ndarray, per_segment: int) -> np.ndarray:
    """A smooth curve through the control points (end points included)."""
    p = np.vstack([2 * ctrl[0] - ctrl[1], ctrl, 2 * ctrl[-1] - ctrl[-2]])
    t = np.linspace(0, 1, per_segment, endpoint=False)[:, None]
    out = []
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        out.append(
            0.5
            * (
                2 * p1
                + (-p0 + p2) * t
                + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3
            )
        )
    out.append(ctrl[-1:])
    return np.vstack(out)


def _chaikin(pts: np.ndarray, iterations: int) -> np.ndarray:
    """Corner-cutting smoothing of an open polyline, keeping its end points."""
    for _ in range(iterations):
        q = 0.75 * pts[:-1] + 0.25 * pts[1:]
        r = 0.25 * pts[:-1] + 0.75 * pts[1:]
        mid = np.empty((2 * len(q), 2))
        mid[0::2], mid[1::2] = q, r
        pts = np.vstack([pts[:1], mid, pts[-1:]])
    return pts


def _rasterise(outline_world: np.ndarray, h: int, w: int) -> np.ndarray:
    """The seg: the outline filled once (1/8-pixel vertex precision); the mask's pixels are
    painted exactly where this is True, so image and seg agree by construction."""
    canvas = np.zeros((h, w), np.uint8)
    pts = np.round(outline_world * 8).astype(np.int32)
    cv2.fillPoly(canvas, [pts], 1, lineType=cv2.LINE_8, shift=3)
    return canvas.astype(bool)


def _pick_colour(style: str, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    if style in PALETTES:
        names = list(PALETTES[style])
        name = names[rng.integers(len(names))]
        base = np.array(PALETTES[style][name], np.float32) * rng.uniform(0.93, 1.05, 3)
        return np.clip(base, 0, 255), name
    hsv = np.uint8([[[rng.integers(180), rng.integers(40, 230), rng.integers(50, 240)]]])
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)
    return rgb, "#{:02x}{:02x}{:02x}".format(*rgb.astype(int))


@dataclass
class _Canvas:
    """The mask's bounding box, with per-pixel coordinates the finishes draw with."""

    frame: _FaceFrame
    box: np.ndarray  # (h, w) bool, the seg inside the box
    U: np.ndarray  # (h, w) local across (inter-ocular units)
    V: np.ndarray  # (h, w) local down
    un: np.ndarray  # (h, w) across the mask, -1..1 at its sides, 0 on the nose axis
    vn: np.ndarray  # (h, w) down the mask, 0 at its top, 1 at its bottom
    half: float  # half the mask's width (inter-ocular units)
    height: float  # the mask's height (inter-ocular units)
    edge: np.ndarray  # (h, w) distance to the mask's border in pixels


# Each finish: (canvas, rng, shade (h, w), tex (h, w, 3), colour name, templates) ->
# (shade, tex, colour name). Shade multiplies the texture; 1 = flat, evenly lit.


def _surgical(mc: _Canvas, rng, shade, tex, name, templates):
    n = int(rng.integers(2, 5))
    centres = np.linspace(0.3, 0.75, n) + rng.normal(0, 0.02, n)
    vv = mc.vn + rng.uniform(-0.15, 0.15) * mc.un**2  # pleats bow a little with the face
    wdt = rng.uniform(0.015, 0.03)
    for c in centres:  # a fold: a dark crease with a highlight just above it
        shade = shade - 0.22 * np.exp(-(((vv - c) / wdt) ** 2))
        shade = shade + 0.1 * np.exp(-(((vv - c + 2.2 * wdt) / (1.5 * wdt)) ** 2))
    shade = shade - 0.08 * (mc.edge < rng.uniform(2.0, 4.0))  # the bound edge
    shade = shade - 0.1 * np.exp(-(((mc.vn - 0.04) / 0.03) ** 2))  # nose wire
    return shade, tex, name


def _kn95(mc: _Canvas, rng, shade, tex, name, templates):
    fr = mc.frame
    b, c = fr.local(0.5 * (fr.lm[28] + fr.lm[29])), fr.loc[8]
    t = (c - b) / max(np.linalg.norm(c - b), 1e-6)
    side = (mc.U - b[0]) * t[1] - (mc.V - b[1]) * t[0]  # signed distance to the seam (iod)
    shade = shade - 0.25 * np.exp(-((side * fr.iod / 1.2) ** 2))  # the centre seam
    shade = shade - 0.05 * np.sign(side) * rng.uniform(0.3, 1.0)  # two panels, lit differently
    shade = shade - 0.12 * (np.abs(mc.edge - rng.uniform(3, 5)) < 0.8)  # welded rim line
    return shade, tex, name


def _n95(mc: _Canvas, rng, shade, tex, name, templates):
    r2 = mc.un**2 + (2 * (mc.vn - 0.55)) ** 2
    shade = shade - 0.18 * r2 + 0.18 * np.exp(-r2 / 0.15)  # cup: bright dome, darker sides
    shade = shade - 0.12 * (mc.edge < rng.uniform(3, 6))  # foam rim
    if rng.random() < 0.4:  # exhalation valve on one cheek
        cu = rng.choice([-0.45, 0.45])
        rr = np.sqrt(((mc.un - cu) * mc.half) ** 2 + ((mc.vn - 0.62) * mc.height) ** 2)
        rad = rng.uniform(0.14, 0.2)
        valve = rr < rad
        grey = PALETTES["kn95"]["grey"]
        vcol = np.array(grey if rng.random() < 0.5 else (200, 90, 60), np.float32)
        tex = np.where(valve[..., None], vcol, tex)
        ring = 1.0 - 0.25 * (np.abs(rr - rad * 0.6) < 0.03) + 0.1 * (rr < rad * 0.3)
        shade = np.where(valve, ring, shade)
    return shade, tex, name


def _cloth(mc: _Canvas, rng, shade, tex, name, templates):
    n_patterns = len(CLOTH_PATTERNS) - (0 if templates and templates.textures else 1)
    pattern = CLOTH_PATTERNS[rng.integers(n_patterns)]  # "texture" needs a templates folder
    other = _pick_colour("cloth", rng)[0]
    px, py = mc.U * mc.frame.iod, mc.V * mc.frame.iod  # pixels, in the face's frame
    if pattern == "stripes":
        ang, period = rng.uniform(0, np.pi), rng.uniform(6, 16)
        on = (px * np.cos(ang) + py * np.sin(ang)) % period < period * rng.uniform(0.3, 0.6)
        tex = np.where(on[..., None], other, tex)
    elif pattern == "dots":
        period = rng.uniform(8, 16)
        qx = px % period - period / 2
        qy = (py + (px // period) % 2 * period / 2) % period - period / 2  # staggered rows
        on = qx**2 + qy**2 < (period * rng.uniform(0.15, 0.3)) ** 2
        tex = np.where(on[..., None], other, tex)
    elif pattern == "check":
        period = rng.uniform(8, 20)
        a, b = (px // period) % 2, (py // period) % 2
        tex = tex * (0.75 + 0.25 * a)[..., None] + other * (0.25 * b)[..., None]
    elif pattern == "texture":
        path = templates.textures[rng.integers(len(templates.textures))]
        tex = _tile(templates.texture(path), *mc.box.shape, rng).astype(np.float32)
    name = f"texture {path.stem}" if pattern == "texture" else f"{name} {pattern}"
    if rng.random() < 0.5:  # centre seam of a sewn mask
        shade = shade - 0.15 * np.exp(-((mc.un * mc.half * mc.frame.iod) ** 2))
    shade = shade - 0.1 * (mc.edge < rng.uniform(2, 4))  # hem
    return shade, tex, name


_FINISHES = {"surgical": _surgical, "kn95": _kn95, "n95": _n95, "cloth": _cloth}


def _procedural(
    face: np.ndarray,
    landmarks: np.ndarray,
    rng: np.random.Generator,
    style: str,
    templates: TemplateSet | None,
) -> tuple[np.ndarray, np.ndarray, str]:
    # 1. Outline from the landmarks, rasterised once: that raster is the seg.
    h, w = face.shape[:2]
    frame = _FaceFrame(landmarks)
    shape = _Shape(**{k: float(rng.uniform(*r)) for k, r in _SHAPE_RANGES[style].items()})
    outline = frame.world(_outline(frame, shape))
    seg = _rasterise(outline, h, w)
    if not seg.any():
        return face.copy(), seg, "none"
    ys, xs = np.nonzero(seg)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    box = seg[y0:y1, x0:x1]  # everything below works on the mask's bounding box only

    # 2. Coordinates of every box pixel in the face's frame and across / down the mask.
    gy, gx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    d = np.stack([gx - frame.origin[0], gy - frame.origin[1]], -1) / frame.iod
    U, V = d @ frame.u.astype(np.float32), d @ frame.v.astype(np.float32)
    ol = frame.local(outline)  # (N, 2)
    axis_u = frame.loc[[27, 30, 33, 51, 57, 8], 0].mean()
    half = max((ol[:, 0].max() - ol[:, 0].min()) / 2, 1e-3)
    vtop, height = ol[:, 1].min(), max(ol[:, 1].max() - ol[:, 1].min(), 1e-3)
    edge = cv2.distanceTransform(np.pad(box.astype(np.uint8), 1), cv2.DIST_L2, 3)[1:-1, 1:-1]
    mc = _Canvas(frame, box, U, V, (U - axis_u) / half, (V - vtop) / height, half, height, edge)

    # 3. Colour, overall shading (curvature and a light direction), then the style's finish.
    colour, name = _pick_colour(style, rng)
    light = rng.uniform(-0.12, 0.12, 2)
    shade = 1.0 - rng.uniform(0.12, 0.3) * mc.un**2 - 0.12 * (mc.vn - 0.45) ** 2
    shade = shade + light[0] * mc.un + light[1] * (mc.vn - 0.5)
    tex = np.broadcast_to(colour, (*box.shape, 3)).astype(np.float32)
    shade, tex, name = _FINISHES[style](mc, rng, shade, tex, name, templates)

    # 4. Fabric grain and slow blotches; paint exactly the seg's pixels.
    grain = rng.normal(0, rng.uniform(0.01, 0.035), box.shape).astype(np.float32)
    blotch = rng.normal(0, 0.03, (4, 4)).astype(np.float32)
    low = cv2.resize(blotch, box.shape[::-1], interpolation=cv2.INTER_CUBIC)
    tex = tex * np.clip(shade + grain + low, 0.2, 1.4)[..., None]
    out = face.copy()
    region = out[y0:y1, x0:x1]
    region[box] = np.clip(tex[box] + 0.5, 0, 255).astype(np.uint8)
    return out, seg, name


# --- entry point ------------------------------------------------------------------------------


def apply_mask(
    face: np.ndarray,
    landmarks: np.ndarray,
    *,
    seed: int,
    style: str | None = None,
    templates: TemplateSet | None = None,
) -> MaskedFace:
    """Put a mask on an aligned face. `style`: one of STYLES, "template:<name>" (with templates),
    or None to draw it from the seed. The same seed gives the same mask, pixel for pixel."""
    face = np.ascontiguousarray(face)
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"landmarks must be (68, 2), got {lm.shape}")
    rng = np.random.default_rng(seed)
    if style is None:
        choices = list(STYLES)
        if templates is not None and rng.random() < TEMPLATE_SHARE:
            choices = [TEMPLATE_PREFIX + n for n in templates.names]
        style = choices[rng.integers(len(choices))]
    if style.startswith(TEMPLATE_PREFIX):
        base = style[len(TEMPLATE_PREFIX) :]
        if templates is None or base not in templates.groups:
            known = ", ".join(templates.names) if templates else "none loaded"
            raise ValueError(f"unknown template {base!r} (templates: {known})")
        image, seg, colour = _apply_template(face, lm, rng, base, templates)
    elif style in STYLES:
        image, seg, colour = _procedural(face, lm, rng, style, templates)
    else:
        raise ValueError(f"unknown mask style {style!r}; use one of {STYLES} or 'template:<name>'")
    return MaskedFace(image=image, seg=seg, style=style, colour=colour, seed=int(seed))


@functools.cache
def cached_templates(directory: str) -> TemplateSet:
    """load_templates, once per process (workers and on-the-fly training reuse it)."""
    return load_templates(directory)
