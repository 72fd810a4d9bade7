"""Faces: dlib detection (HOG or CNN) and 68 landmarks, alignment to the 256x256 working space,
the inverse (warp a result back and feather it into the photo), and head yaw / roll.
"""

from __future__ import annotations

import functools
import importlib.util
import threading
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
    if len(faces) < 2:
        return faces
    biggest = max(_area(f.box) for f in faces)
    main = max((f for f in faces if _area(f.box) >= 0.5 * biggest), key=lambda f: f.score)
    rest = sorted((f for f in faces if f is not main), key=lambda f: -f.score)
    return [main, *rest]


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
        face = cv2.warpAffine(image, m, (IMAGE_SIZE, IMAGE_SIZE), borderMode=cv2.BORDER_REPLICATE)
        aligned_box = tuple(int(round(v * IMAGE_SIZE)) for v in ALIGNED_BOX)
        lm = transform_points(_predict_landmarks(face, aligned_box), invert_matrix(m))
        faces.append(FaceDetection(tuple(int(round(v)) for v in box), float(score), lm))
    return _main_first(faces)


def _detect_cascade(
    image: np.ndarray, detector: str, *, last_resort: bool = True
) -> list[FaceDetection]:
    """Cheapest first: HOG without upsampling (finds ~99% of UTKFace crops in ~6 ms); then
    ("auto") CenterFace, which still finds faces behind a mask (HOG found 1 of 60 real masked
    photos, CenterFace 53); then HOG with upsampling; then, unless `last_resort` is False, on a
    reflect-padded copy (tight crops whose face touches the border), and (small photos only)
    with more upsampling."""
    if detector == "cnn":
        return detect_faces(image, detector="cnn", upsample=1, threshold=0.0)
    if detector == "centerface":
        return detect_faces(image, detector="centerface")
    if detector not in ("auto", "hog"):
        raise ValueError(f"unknown detector {detector!r}; use 'auto', 'hog', 'cnn' or 'centerface'")
    faces = detect_faces(image, upsample=0)
    if faces:
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
    aligned = cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    # Where the square reaches past the photo (tight crops such as UTKFace's), fill with a blur of
    # the replicated edge: reflecting would put mirrored eyes and chins into the face's frame.
    inside = cv2.warpAffine(
        np.ones(image.shape[:2], np.float32), matrix, (size, size), flags=cv2.INTER_LINEAR
    )
    if inside.min() < 1.0:
        # A wide blur, done at quarter size (10x cheaper; it is only a backdrop).
        q = cv2.resize(aligned, (size // 4, size // 4), interpolation=cv2.INTER_AREA)
        q = cv2.GaussianBlur(q, (0, 0), size / 64)
        blurred = cv2.resize(q, (size, size), interpolation=cv2.INTER_LINEAR)
        a = cv2.GaussianBlur(inside, (0, 0), 1.5)[:, :, None]
        aligned = (aligned * a + blurred * (1 - a) + 0.5).astype(np.uint8)
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
) -> AlignedFace:
    """Detect, pick the main face, align it; FaceError("no_face" | "too_small") otherwise.
    Other faces (score >= OTHER_FACE_SCORE) are counted in `n_other_faces`. When nothing is
    found upright, the photo is also tried turned by 90, 270 and 180 degrees, with the
    confident detectors only: on 240 real masked photos the last-resort paths found a "face" on
    two turned copies and both were wrong (an upright face aligned upside down, an eye)."""
    image = np.ascontiguousarray(image)
    faces = _detect_cascade(image, detector)
    for k in (1, 3, 2) if not faces and try_rotations else ():
        # A photo stored sideways without an EXIF tag: find the face on a turned copy, then map
        # its landmarks back; alignment from the original photo then turns the face upright.
        faces = [
            FaceDetection(f.box, f.score, _unrotate_points(f.landmarks, k, image.shape))
            for f in _detect_cascade(
                np.ascontiguousarray(np.rot90(image, k)), detector, last_resort=False
            )
        ]
        if faces:
            break
    if not faces:
        raise FaceError("no_face", "no face found")
    main, others = faces[0], faces[1:]
    n_other = sum(1 for f in others if detector == "cnn" or f.score >= OTHER_FACE_SCORE)
    size = float(np.linalg.norm(main.landmarks[16] - main.landmarks[0]))
    if size < min_face_px:
        raise FaceError("too_small", f"face is {size:.0f} px wide, below {min_face_px:.0f} px")
    return align_face(image, main.landmarks, n_other_faces=n_other)


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
