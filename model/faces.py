"""Faces: dlib detection (HOG or CNN) and 68 landmarks, alignment to the 256x256 working space,
the inverse (warp a result back and feather it into the photo), and head yaw / roll.
"""

from __future__ import annotations

import functools
import importlib.util
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from model.config import IMAGE_SIZE

# Where the aligned face sits in the 256x256 working space, as fractions of the side: the eye
# centres and the mouth centre. Chosen so the whole jaw and chin (and the mask) lie inside with a
# margin, with the mask region in the same place for every face.
TEMPLATE_EYE_LEFT = (0.36, 0.36)  # image-left eye (landmarks 36-41)
TEMPLATE_EYE_RIGHT = (0.64, 0.36)  # image-right eye (landmarks 42-47)
TEMPLATE_MOUTH = (0.5, 0.65)  # mouth centre (landmarks 48-67)

HOG_THRESHOLD = 0.0  # main-face score floor (UTKFace: 96% found at 0.0, see SETUP-FACTS)
OTHER_FACE_SCORE = 0.5  # a second face counts only above this (astronaut false positive: 0.12)
DETECT_MAX_SIDE = 1024  # HOG runs on a copy at most this big; landmarks on the full image
PAD_FRACTION = 0.25  # tight crops: reflect-pad each side by this before the last try
SMALL_PHOTO_SIDE = 400  # photos this small also get a 4x-upsampled search for tiny faces
CENTERFACE_THRESHOLD = 0.5  # CenterFace score floor (53 of 60 real masked photos found at 0.5)
# Where CenterFace's 5 points sit on an aligned face, as fractions of the side: medians over 2,000
# aligned UTKFace faces of dlib's eye centres, nose tip (30) and mouth corners (48, 54).
FIVE_POINT_TEMPLATE = np.array(
    [[0.3564, 0.3618], [0.6434, 0.3621], [0.5, 0.4968], [0.3809, 0.6356], [0.6188, 0.6355]]
)
MIN_FACE_PX = 40  # jaw width (landmark 0 to 16) below which a face is too small to use
# The part of an aligned crop that lies outside the photo (tight crops such as UTKFace's): a flat
# neutral grey, marked in `AlignedFace.inside`, never smeared photo pixels. Edge replication drew a
# band of streaks where the square ran past the photo, in every tile, dataset face and study
# stimulus; a flat fill is plainly "no photo here", and it is the same in a method's input, its
# output and the ground truth, so it adds nothing to the metrics.
OUTSIDE_FILL = 128
QUARTER_TURNS = (0, 1, 3, 2)  # photo turns tried, in order: upright, 90 and 270 degrees, 180
# Upright-face geometry on the aligned face (256² template: eyes at y 92, mouth at y 166). Limits
# from the 8,994 aligned UTKFace faces (anchor residual <= 11.3 px, inter-ocular 51-85 px,
# jaw width 1.8-2.7 inter-ocular distances) with a wide margin: only wrong fits fail them.
MAX_ANCHOR_RESIDUAL = 0.08  # of the side: eyes and mouth must fit the template
IOD_RANGE = (0.16, 0.4)  # inter-ocular distance, of the side
JAW_RANGE = (1.4, 3.3)  # jaw width (0 to 16) in inter-ocular distances
MAX_DETECTED_ROLL_DEG = 50.0  # the detectors find upright faces: a fit turned further is wrong
TILT_DEG = 10.0  # an aligned face tilted more than this is fitted again, levelled (_refit_tilted)
# A face found only on a turned copy of the photo must look more like a face as aligned than
# turned by 180 degrees to CenterFace (`_reads_upside_down`): on the 1,075 aligned real masked
# photos the two faces found that way were wrong (an upright face aligned upside down: 0.54 as
# aligned vs 0.74 turned; an eye: 0.08 vs 0.20), while every face found upright scored within
# +0.06 of its turned copy or below it.

DLIB_SHARE = Path("/usr/share/dlib")  # Debian's libdlib-data ships the same .dat files


class FaceError(ValueError):
    """No usable face; `.reason` is a slug ("no_face", "too_small", ...) for manifests and UIs."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class FaceDetection:
    box: tuple[int, int, int, int]  # left, top, right, bottom in image pixels
    score: float  # HOG margin or CNN confidence
    landmarks: np.ndarray  # (68, 2) float32, x, y in image pixels


@dataclass
class AlignedFace:
    image: np.ndarray  # (256, 256, 3) uint8
    landmarks: np.ndarray  # (68, 2) float32 in aligned coordinates
    matrix: np.ndarray  # (2, 3) float64, photo -> aligned similarity
    source_shape: tuple[int, int]  # (H, W) of the photo it came from
    n_other_faces: int
    yaw_deg: float
    roll_deg: float
    face_size: float  # jaw width in photo pixels
    face_index: int = 1  # which face of the photo (1 = the largest; see `find_and_align`)
    n_faces: int = 1  # faces found (confident ones; the main face included)
    turned_deg: int = 0  # the photo was searched turned by this much (0, 90, 180, 270)
    preferred: bool = False  # chosen over larger faces by find_and_align's `prefer` (a mask)

    @property
    def inside(self) -> np.ndarray:
        """(256, 256) bool: the aligned pixels that lie in the photo (the rest is OUTSIDE_FILL)."""
        return inside_photo(self.matrix, self.source_shape, self.image.shape[0])

    def fill_outside(self, image: np.ndarray) -> np.ndarray:
        """A copy of an aligned picture of this face (a method's output) with the pixels outside
        the photo set back to OUTSIDE_FILL: a hole that runs past the photo's edge is painted
        there too, and what was never in the photo must look the same in every picture."""
        out = np.array(image, copy=True)
        out[~self.inside] = OUTSIDE_FILL
        return out


# --- dlib models ------------------------------------------------------------------------------


def model_file(name: str) -> Path:
    """Path of a face-recognition-models .dat file (found without importing that package, whose
    __init__ needs pkg_resources), falling back to Debian's /usr/share/dlib."""
    spec = importlib.util.find_spec("face_recognition_models")
    candidates = []
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / "models" / name for p in spec.submodule_search_locations]
    candidates.append(DLIB_SHARE / name)
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"dlib model {name} not found (looked in {', '.join(map(str, candidates))}); "
        "install face-recognition-models or Debian's libdlib-data"
    )


@functools.cache
def face_detector():
    """dlib's HOG frontal face detector (cached per process)."""
    import dlib

    return dlib.get_frontal_face_detector()


# dlib's HOG detector keeps its image pyramid inside itself and runs without the GIL: called by
# two of the demo's workers at once it segfaults (issue 14). One caller at a time.
_HOG_LOCK = threading.Lock()


@functools.cache
def cnn_face_detector():
    """dlib's MMOD CNN face detector (slower on CPU, finds more turned and small faces)."""
    import dlib

    return dlib.cnn_face_detection_model_v1(str(model_file("mmod_human_face_detector.dat")))


@functools.cache
def _centerface_available() -> bool:
    from model import centerface

    return centerface.available()


@functools.cache
def shape_predictor():
    """dlib's 68-point landmark predictor (cached per process)."""
    import dlib

    return dlib.shape_predictor(str(model_file("shape_predictor_68_face_landmarks.dat")))


def _predict_landmarks(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    import dlib

    shape = shape_predictor()(image, dlib.rectangle(*map(int, box)))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)  # (68, 2)


# --- detection --------------------------------------------------------------------------------


def detect_faces(
    image: np.ndarray,
    *,
    detector: str = "hog",
    upsample: int = 1,
    threshold: float = HOG_THRESHOLD,
) -> list[FaceDetection]:
    """All faces scoring at least `threshold`, with landmarks; the main face first (the most
    confident among those at least half the size of the largest), then by score."""
    image = np.ascontiguousarray(image)
    h, w = image.shape[:2]
    scale = min(1.0, DETECT_MAX_SIDE / max(h, w))
    small = (
        image
        if scale == 1.0
        else cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    )
    if detector == "centerface":
        return _detect_centerface(image, threshold)
    if detector == "hog":
        with _HOG_LOCK:
            rects, scores, _ = face_detector().run(small, upsample, threshold)
    elif detector == "cnn":
        found = cnn_face_detector()(small, upsample)
        rects = [d.rect for d in found if d.confidence >= threshold]
        scores = [d.confidence for d in found if d.confidence >= threshold]
    else:
        raise ValueError(f"unknown detector {detector!r}; use 'hog', 'cnn' or 'centerface'")
    faces = []
    for r, s in zip(rects, scores, strict=True):
        box = tuple(int(round(v / scale)) for v in (r.left(), r.top(), r.right(), r.bottom()))
        faces.append(
            FaceDetection(box=box, score=float(s), landmarks=_predict_landmarks(image, box))
        )
    return _main_first(faces)


def _area(box: tuple[int, int, int, int]) -> int:
    return max(0, box[2] - box[0]) * max(0, box[3] - box[1])


def _main_first(faces: list[FaceDetection]) -> list[FaceDetection]:
    """Confident faces (score >= OTHER_FACE_SCORE) first, each group largest first: the main face
    is the largest confident face (the largest face when none is confident), and `--face N`
    counts faces in this order."""
    return sorted(faces, key=lambda f: (f.score < OTHER_FACE_SCORE, -_area(f.box)))


def _detect_centerface(image: np.ndarray, threshold: float) -> list[FaceDetection]:
    """CenterFace boxes and 5 points; the 68 landmarks come from dlib's predictor run on the face
    pre-aligned by those 5 points (inside the box HOG would give there), mapped back."""
    from model import centerface

    boxes, scores, points = centerface.detect(image, threshold=max(threshold, CENTERFACE_THRESHOLD))
    faces = []
    for box, score, pts in zip(boxes, scores, points, strict=True):
        # Its points assume an upright face: on a face turned past ~45 degrees they come out in
        # the wrong roles, so leave such faces to the rotated retries of `find_and_align`.
        down = (pts[3] + pts[4]) / 2 - (pts[0] + pts[1]) / 2
        if down[1] <= abs(down[0]):
            continue
        m = _similarity(pts.astype(np.float64), FIVE_POINT_TEMPLATE * IMAGE_SIZE)
        # Only dlib's landmark fit sees this crop (never shown or stored: the face is aligned
        # again by `align_face`, with the flat fill); edge pixels keep the fit's jaw on the photo.
        face = cv2.warpAffine(image, m, (IMAGE_SIZE, IMAGE_SIZE), borderMode=cv2.BORDER_REPLICATE)
        aligned_box = tuple(int(round(v * IMAGE_SIZE)) for v in ALIGNED_BOX)
        lm = transform_points(_predict_landmarks(face, aligned_box), invert_matrix(m))
        faces.append(FaceDetection(tuple(int(round(v)) for v in box), float(score), lm))
    return _main_first(faces)


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over union of two (left, top, right, bottom) boxes."""
    inter = _area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    return inter / max(_area(a) + _area(b) - inter, 1)


def _detect_cascade(
    image: np.ndarray, detector: str, *, last_resort: bool = True, all_faces: bool = False
) -> list[FaceDetection]:
    """Cheapest first: HOG without upsampling (finds ~99% of UTKFace crops in ~6 ms); then
    ("auto") CenterFace, which still finds faces behind a mask (HOG found 1 of 60 real masked
    photos, CenterFace 53); then HOG with upsampling; then, unless `last_resort` is False, on a
    reflect-padded copy (tight crops whose face touches the border), and (small photos only)
    with more upsampling. `all_faces` ("auto"): when HOG finds faces, CenterFace's other faces
    are added (a group photo's masked faces, which HOG misses)."""
    if detector == "cnn":
        return detect_faces(image, detector="cnn", upsample=1, threshold=0.0)
    if detector == "centerface":
        return detect_faces(image, detector="centerface")
    if detector not in ("auto", "hog"):
        raise ValueError(f"unknown detector {detector!r}; use 'auto', 'hog', 'cnn' or 'centerface'")
    faces = detect_faces(image, upsample=0)
    if faces:
        if all_faces and detector == "auto" and _centerface_available():
            more = detect_faces(image, detector="centerface")
            faces = _main_first(
                faces + [f for f in more if all(_overlap(f.box, g.box) < 0.3 for g in faces)]
            )
        return faces
    if detector == "auto" and _centerface_available():
        faces = detect_faces(image, detector="centerface")
        if faces:
            return faces
    faces = detect_faces(image, upsample=1)
    if faces or not last_resort:
        return faces
    h, w = image.shape[:2]
    py, px = int(h * PAD_FRACTION), int(w * PAD_FRACTION)
    padded = cv2.copyMakeBorder(image, py, py, px, px, cv2.BORDER_REFLECT)
    faces = []
    for f in detect_faces(padded, upsample=1):
        cx, cy = (f.box[0] + f.box[2]) / 2 - px, (f.box[1] + f.box[3]) / 2 - py
        if 0 <= cx < w and 0 <= cy < h:  # not a mirror image living in the padding
            box = (f.box[0] - px, f.box[1] - py, f.box[2] - px, f.box[3] - py)
            faces.append(FaceDetection(box, f.score, f.landmarks - np.float32([px, py])))
    if not faces and max(h, w) <= SMALL_PHOTO_SIDE:
        # A small photo: look for faces under HOG's 40 px minimum, so that a tiny face is
        # reported as too small rather than as no face at all.
        faces = detect_faces(image, upsample=2)
    return faces


# --- alignment --------------------------------------------------------------------------------


def _anchor_points(landmarks: np.ndarray) -> np.ndarray:
    """(3, 2): image-left eye centre, image-right eye centre, mouth centre."""
    lm = np.asarray(landmarks, dtype=np.float64)
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[48:68].mean(0)])


def template_points(size: int = IMAGE_SIZE) -> np.ndarray:
    """(3, 2) where `_anchor_points` go in a size x size aligned face."""
    return np.array([TEMPLATE_EYE_LEFT, TEMPLATE_EYE_RIGHT, TEMPLATE_MOUTH]) * size


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares rotation + uniform scale + translation mapping src -> dst, as (2, 3).
    In complex form dst ~ c * src + t, with c = sum(conj(S) D) / sum(|S|^2) on centred points."""
    s = src[:, 0] + 1j * src[:, 1]
    d = dst[:, 0] + 1j * dst[:, 1]
    sc, dc = s - s.mean(), d - d.mean()
    c = np.sum(np.conj(sc) * dc) / np.sum(np.abs(sc) ** 2)
    t = d.mean() - c * s.mean()
    return np.array([[c.real, -c.imag, t.real], [c.imag, c.real, t.imag]])


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine to (N, 2) points."""
    p = np.asarray(points, dtype=np.float64)
    return (p @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


def invert_matrix(matrix: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))


def align_face(
    image: np.ndarray, landmarks: np.ndarray, size: int = IMAGE_SIZE, n_other_faces: int = 0
) -> AlignedFace:
    """Warp the face to size x size by the similarity putting eyes and mouth on the template."""
    matrix = _similarity(_anchor_points(landmarks), template_points(size))
    # Where the square reaches past the photo, the flat OUTSIDE_FILL (see there); replicating or
    # reflecting the edge would smear or mirror the face into its own frame.
    aligned = cv2.warpAffine(
        image,
        matrix,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(OUTSIDE_FILL,) * 3,
    )
    yaw, roll = head_pose(landmarks)
    lm = np.asarray(landmarks, dtype=np.float32)
    return AlignedFace(
        image=aligned,
        landmarks=transform_points(lm, matrix),
        matrix=matrix,
        source_shape=(int(image.shape[0]), int(image.shape[1])),
        n_other_faces=n_other_faces,
        yaw_deg=yaw,
        roll_deg=roll,
        face_size=float(np.linalg.norm(lm[16] - lm[0])),
    )


def inside_photo(
    matrix: np.ndarray, source_shape: tuple[int, int], size: int = IMAGE_SIZE
) -> np.ndarray:
    """(size, size) bool: which pixels of an aligned face (photo -> aligned `matrix`) lie in the
    photo of `source_shape` (H, W)."""
    h, w = source_shape
    ones = np.ones((int(h), int(w)), np.uint8)
    m = np.asarray(matrix, dtype=np.float64)
    return cv2.warpAffine(ones, m, (size, size), flags=cv2.INTER_NEAREST) > 0


def inside_from_fill(image: np.ndarray) -> np.ndarray:
    """(H, W) bool: the pixels of an aligned face that are not the flat OUTSIDE_FILL reaching the
    square's border, i.e. `AlignedFace.inside` for a face stored without its matrix (a dataset's
    `face/` PNGs). A photo's own pixels are almost never exactly (128, 128, 128) over a patch
    that touches the border; the fill always is."""
    flat = (np.asarray(image) == OUTSIDE_FILL).all(-1).astype(np.uint8)
    _, labels = cv2.connectedComponents(flat, connectivity=4)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    return ~np.isin(labels, border[border > 0])


def border_fill(photo: np.ndarray, tol: int = 2, min_share: float = 0.002) -> np.ndarray:
    """(H, W) bool: the flat fill a photo editor leaves at the photo's corners (a rotation's
    triangles, letterbox bars): from each corner, the 4-connected pixels within `tol` levels of the
    corner's colour in every channel, kept when they cover at least `min_share` of the photo and
    are flat (no channel's SD above 1 level). Photo pixels are almost never that flat over a patch
    that size; to the mask segmenter a black fill looks like a black mask.
    `photo`: uint8 (H, W, 3)."""
    img = np.array(photo[..., :3], dtype=np.uint8, order="C")  # a copy: floodFill writes to it
    h, w = img.shape[:2]
    out = np.zeros((h, w), bool)
    flags = 4 | cv2.FLOODFILL_FIXED_RANGE | cv2.FLOODFILL_MASK_ONLY | (1 << 8)
    for x, y in ((0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1)):
        if out[y, x]:
            continue
        mask = np.zeros((h + 2, w + 2), np.uint8)
        cv2.floodFill(img, mask, (x, y), 0, (tol,) * 3, (tol,) * 3, flags)
        region = mask[1:-1, 1:-1] > 0
        if region.mean() >= min_share and img[region].std(0).max() <= 1.0:
            out |= region
    return out


def geometry_problem(landmarks: np.ndarray, size: int = IMAGE_SIZE) -> str | None:
    """Why 68 landmarks of a face aligned to size² are not an upright face, or None when they are:
    eyes and mouth on the template, brows above the eyes, the nose tip between eyes and mouth,
    the chin below the mouth, eye distance and jaw width in range. A fit on a turned or
    upside-down face (the detectors only know upright ones) breaks these."""
    lm = np.asarray(landmarks, dtype=np.float64)
    anchors = _anchor_points(lm)
    residual = float(np.linalg.norm(anchors - template_points(size), axis=1).max())
    if residual > MAX_ANCHOR_RESIDUAL * size:
        return f"eyes and mouth do not fit a face ({residual:.0f} px off)"
    eye_y, mouth_y = anchors[:2, 1].mean(), anchors[2, 1]
    iod = float(np.linalg.norm(anchors[1] - anchors[0]))
    if not IOD_RANGE[0] * size <= iod <= IOD_RANGE[1] * size:
        return f"implausible eye distance ({iod:.0f} px of {size})"
    if lm[17:27, 1].mean() >= eye_y:
        return "brows below the eyes"
    if not eye_y < lm[30, 1] < mouth_y:
        return "nose not between the eyes and the mouth"
    if lm[8, 1] <= mouth_y:
        return "chin above the mouth"
    jaw = float(np.linalg.norm(lm[16] - lm[0])) / max(iod, 1e-6)
    if not JAW_RANGE[0] <= jaw <= JAW_RANGE[1]:
        return f"implausible jaw width ({jaw:.1f} eye distances)"
    return None


def _upright_problem(landmarks: np.ndarray) -> str | None:
    """geometry_problem of photo landmarks once aligned, plus their roll in the searched image."""
    roll = head_pose(landmarks)[1]
    if abs(roll) > MAX_DETECTED_ROLL_DEG:
        return f"the face fit is turned by {roll:.0f} degrees"
    matrix = _similarity(_anchor_points(landmarks), template_points())
    return geometry_problem(transform_points(landmarks, matrix))


def _unrotate_points(points: np.ndarray, k: int, shape: tuple[int, ...]) -> np.ndarray:
    """Points found in np.rot90(image, k) -> the same points in image (H, W = shape[:2])."""
    h, w = shape[:2]
    x, y = points[:, 0], points[:, 1]
    if k == 1:  # rot[i, j] = img[j, W-1-i]
        xy = (w - 1 - y, x)
    elif k == 3:  # rot[i, j] = img[H-1-j, i]
        xy = (y, h - 1 - x)
    else:  # k == 2: rot[i, j] = img[H-1-i, W-1-j]
        xy = (w - 1 - x, h - 1 - y)
    return np.stack(xy, axis=1).astype(np.float32)


def find_and_align(
    image: np.ndarray,
    *,
    min_face_px: float = MIN_FACE_PX,
    detector: str = "auto",
    try_rotations: bool = True,
    face: int | None = None,
    prefer: Callable[[AlignedFace], bool] | None = None,
) -> AlignedFace:
    """Detect, pick the main face, check it is upright, align it.

    FaceError reasons: "no_face", "not_upright" (faces found, but no fit passes the geometry
    check on the photo or its turned copies, or the upside-down check on the turned copies),
    "too_small", "no_such_face" (`face` out of range).
    The main face is the largest confident one (`_main_first`); `face` = N (1-based) picks the
    N-th instead, in the same order (largest first); with no `face`, `prefer` (e.g. "wears a
    mask") picks the largest face it accepts, when it accepts any, among HOG's and CenterFace's
    faces (`_detect_cascade`'s all_faces). Other faces (score >= OTHER_FACE_SCORE) are
    counted in `n_other_faces`. When nothing upright is found, the photo is also tried turned by
    90, 270 and 180 degrees (a photo stored sideways without an EXIF tag), with the confident
    detectors only: on 240 real masked photos the last-resort paths found a "face" on two turned
    copies and both were wrong (an upright face aligned upside down, an eye), so a face found on a
    turned copy must also not read upside down (`_reads_upside_down`)."""
    image = np.ascontiguousarray(image)
    found: list[FaceDetection] = []
    refused = ""
    turned = 0
    for k in QUARTER_TURNS if try_rotations else (0,):
        copy = image if k == 0 else np.ascontiguousarray(np.rot90(image, k))
        faces = _detect_cascade(copy, detector, last_resort=k == 0, all_faces=prefer is not None)
        upright = []
        for f in faces:
            problem = _upright_problem(f.landmarks)  # in the searched copy, where it is upright
            if problem:
                refused = refused or problem
                continue
            lm = f.landmarks if k == 0 else _unrotate_points(f.landmarks, k, image.shape)
            upright.append(FaceDetection(f.box, f.score, lm))
        if upright and k:  # a last resort: check that the face does not read upside down
            problem = _reads_upside_down(image, _main_first(upright)[0].landmarks)
            if problem:
                refused = refused or problem
                continue
        if upright:
            found, turned = _main_first(upright), 90 * k
            break
    if not found:
        if refused:
            raise FaceError("not_upright", f"no upright face: {refused}")
        raise FaceError("no_face", "no face found")
    counted = [found[0]] + [
        f for f in found[1:] if detector == "cnn" or f.score >= OTHER_FACE_SCORE
    ]
    index = 1 if face is None else int(face)
    if not 1 <= index <= len(counted):
        raise FaceError(
            "no_such_face",
            f"face {index} asked for, but {len(counted)} face{'s' if len(counted) > 1 else ''} found",
        )

    def aligned_face(i: int) -> AlignedFace:
        landmarks = _refit_tilted(image, counted[i - 1].landmarks)
        size = float(np.linalg.norm(landmarks[16] - landmarks[0]))
        if size < min_face_px:
            raise FaceError("too_small", f"face is {size:.0f} px wide, below {min_face_px:.0f} px")
        a = align_face(image, landmarks, n_other_faces=len(counted) - 1)
        a.face_index, a.n_faces, a.turned_deg = i, len(counted), turned
        return a

    main = aligned_face(index)
    if face is None and prefer is not None and len(counted) > 1 and not prefer(main):
        for i in range(2, len(counted) + 1):
            try:
                other = aligned_face(i)
            except FaceError:  # too small: the faces after it are smaller still
                break
            if prefer(other):
                other.preferred = True
                return other
    return main


def _reads_upside_down(image: np.ndarray, landmarks: np.ndarray) -> str | None:
    """Why a face fitted on a turned copy of `image` is refused, or None: CenterFace's face score
    of the face aligned by `landmarks` (photo coordinates) against the same face turned by 180
    degrees. dlib's predictor fits "upright" landmarks on an upside-down face (the eyes on the
    eyes, nose and mouth on the forehead) and the geometry check cannot tell; CenterFace, a CNN
    detector, scores the face the right way up higher. None without CenterFace."""
    if not _centerface_available():
        return None
    from model import centerface

    matrix = _similarity(_anchor_points(landmarks), template_points())
    face = cv2.warpAffine(image, matrix, (IMAGE_SIZE, IMAGE_SIZE), flags=cv2.INTER_LINEAR)
    scores = [
        max(centerface.detect(np.ascontiguousarray(f), threshold=0.05)[1], default=0.0)
        for f in (face, face[::-1, ::-1])
    ]
    if scores[1] > scores[0]:
        return (
            f"the face found on the turned photo reads upside down (face score {scores[0]:.2f} "
            f"as aligned, {scores[1]:.2f} turned by 180 degrees)"
        )
    return None


def _refit_tilted(image: np.ndarray, landmarks: np.ndarray, rounds: int = 2) -> np.ndarray:
    """Landmarks of a tilted face fitted again on the face turned level.

    dlib's predictor is trained on upright faces, and its fit on a face tilted 25-45 degrees (a
    photo turned by an odd angle) comes out with the eyes too level: the aligned face stays
    tilted, and the fit itself cannot tell. CenterFace's eye points can (astronaut turned 330,
    60, 150, 240 degrees: 19-26 degrees left on the aligned face; upright: under 2): when they
    say the aligned face is tilted by more than TILT_DEG, it is turned level and fitted again
    (box ALIGNED_BOX), and the fit mapped back. Without CenterFace the first fit is kept."""
    lm = np.asarray(landmarks, dtype=np.float32)
    if not _centerface_available():
        return lm
    from model import centerface

    box = tuple(int(round(v * IMAGE_SIZE)) for v in ALIGNED_BOX)
    for _ in range(rounds):
        matrix = _similarity(_anchor_points(lm), template_points())
        face = cv2.warpAffine(image, matrix, (IMAGE_SIZE, IMAGE_SIZE), flags=cv2.INTER_LINEAR)
        _, scores, points = centerface.detect(face, threshold=0.3)
        if not len(scores):
            break
        eyes = points[int(np.argmax(scores))][:2]
        tilt = float(np.degrees(np.arctan2(*(eyes[1] - eyes[0])[::-1])))
        if abs(tilt) <= TILT_DEG:
            break
        turn = np.vstack([cv2.getRotationMatrix2D(tuple(eyes.mean(0)), tilt, 1.0), [0, 0, 1]])
        m = (turn @ np.vstack([matrix, [0, 0, 1]]))[:2]
        level = cv2.warpAffine(image, m, (IMAGE_SIZE, IMAGE_SIZE), flags=cv2.INTER_LINEAR)
        refit = _predict_landmarks(level, box)
        if _upright_problem(refit) is not None:
            break
        lm = transform_points(refit, invert_matrix(m))
    return lm


FACE_CHOICE = "`--face N`"  # how a person chooses another face (the demo says its own way)


def main_face_note(aligned: AlignedFace) -> str | None:
    """The sentence that tells a person which face was used, when there was a choice."""
    n = int(getattr(aligned, "n_faces", 1) or 1)
    if n < 2:
        return None
    i = int(getattr(aligned, "face_index", 1) or 1)
    if getattr(aligned, "preferred", False):
        which = f"face {i} by size (1 = the largest), the largest one wearing a mask,"
    else:
        which = "the largest one" if i == 1 else f"face {i} by size (1 = the largest)"
    return (
        f"Found {n} faces: {which} is used; another can be chosen by its number, "
        f"1 to {n} from the largest ({FACE_CHOICE})."
    )


def paste_back(
    photo: np.ndarray,
    aligned: AlignedFace,
    result: np.ndarray,
    region: np.ndarray | None = None,
    feather_px: float = 8.0,
) -> np.ndarray:
    """Warp a (256, 256, 3) result back into the photo and blend it in with a feathered edge.
    `region` (bool, aligned space) limits the change to it (e.g. the mask); None = the whole
    aligned square. Only the photo's part under the square is touched."""
    h, w = photo.shape[:2]
    if (h, w) != tuple(aligned.source_shape):
        raise ValueError(
            f"photo is {w}x{h}, the face was aligned from {aligned.source_shape[::-1]}"
        )
    size = result.shape[0]
    f = max(float(feather_px), 0.5)
    if region is None:
        inset = int(np.ceil(2 * f))
        alpha = np.zeros((size, size), np.float32)
        alpha[inset : size - inset, inset : size - inset] = 1.0
        alpha = cv2.GaussianBlur(alpha, (0, 0), f / 2)
    else:
        reg = np.asarray(region, dtype=np.uint8)
        k = int(np.ceil(f)) * 2 + 1
        grown = cv2.dilate(reg, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
        alpha = np.maximum(cv2.GaussianBlur(grown.astype(np.float32), (0, 0), f / 2), reg)
    # The aligned square's bounding box in the photo: warp only there (fast on big photos).
    inv = invert_matrix(aligned.matrix)
    corners = transform_points(np.array([[0, 0], [size, 0], [0, size], [size, size]]), inv)
    x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int) + 1, [w, h])
    if x1 <= x0 or y1 <= y0:
        return photo.copy()
    m = aligned.matrix.copy()
    m[:, 2] += m[:, :2] @ np.array([x0, y0], dtype=np.float64)  # ROI pixel -> aligned
    roi = (int(x1 - x0), int(y1 - y0))
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    # Replicate only past the aligned square's own edge, where alpha is 0: no smear is pasted.
    back = cv2.warpAffine(result, m, roi, flags=flags, borderMode=cv2.BORDER_REPLICATE)
    a = cv2.warpAffine(alpha, m, roi, flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    out = photo.copy()
    patch = out[y0:y1, x0:x1].astype(np.float32)
    a = a[:, :, None]
    out[y0:y1, x0:x1] = np.clip(patch * (1 - a) + back.astype(np.float32) * a + 0.5, 0, 255).astype(
        np.uint8
    )
    return out


# --- pose and landmarks on aligned faces ------------------------------------------------------


def head_pose(landmarks: np.ndarray) -> tuple[float, float]:
    """(yaw_deg, roll_deg) from 2-D landmarks, a rough geometric estimate.
    roll: angle of the eye line (positive = clockwise in the image, image-right eye lower).
    yaw: from where the nose tip (30) sits between the jaw sides (0, 16) after undoing roll;
    positive = nose towards the image right. Model: tan(yaw) = (2r - 1) * W / D with the face's
    half-width W about 0.75 of the nose-tip depth D in front of the jaw sides."""
    lm = np.asarray(landmarks, dtype=np.float64)
    le, re = lm[36:42].mean(0), lm[42:48].mean(0)
    dx, dy = re - le
    roll = np.arctan2(dy, dx)
    c, s = np.cos(-roll), np.sin(-roll)
    x = lm[:, 0] * c - lm[:, 1] * s  # x after rotating the eye line level
    width = x[16] - x[0]
    r = (x[30] - x[0]) / width if abs(width) > 1e-6 else 0.5
    yaw = np.degrees(np.arctan(0.75 * (2 * r - 1)))
    return float(yaw), float(np.degrees(roll))


# dlib box of an aligned face (fractions of the side), measured from HOG on aligned UTKFace faces.
ALIGNED_BOX = (0.15, 0.15, 0.826, 0.826)


def landmarks_of(
    image256: np.ndarray, box: tuple[int, int, int, int] | None = None
) -> np.ndarray | None:
    """68 landmarks on an aligned face (e.g. an inpainted result, for metrics). Without a box, HOG
    finds the face; if it cannot, the template box is used, so an aligned face always gets
    landmarks. None only for an image that is not (H, W, 3)."""
    img = np.ascontiguousarray(image256)
    if img.ndim != 3 or img.shape[2] != 3:
        return None
    if box is None:
        faces = detect_faces(img, upsample=0, threshold=-0.3)
        if faces:
            return faces[0].landmarks
        s = img.shape[0]
        box = tuple(int(round(v * s)) for v in ALIGNED_BOX)
    return _predict_landmarks(img, box)
