"""Photo -> unmasked photo, the one service behind `unmask inpaint` and the demo.

Steps: load the photo, find and align the main face, predict the mask region (segmenter, a given
mask, or a synthetic mask), run the chosen methods (timed), paste a result back into the photo at
the photo's own size. A greyscale photo gets greyscale results from every method.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from model.config import IMAGE_SIZE
from model.methods import METHODS

# Faces are found on a copy of the photo at most this long; results are pasted into the photo
# itself, at its own size (only a JPEG over imageio.MAX_PIXELS is decoded smaller, and the person told).
WORK_SIDE = 2048
# Faces narrower than this (jaw width, px in the photo) are upscaled >2x to 256²: warn, go on.
SMALL_FACE_PX = 64
# A face turned further than this is far from the frontal training faces: warn.
TURNED_YAW_DEG = 35.0
# A given mask covering more than this share of the photo is not a face mask (an inverted drawing,
# or transparency read as white): refused rather than inpainting the whole picture.
MAX_MASK_COVER = 0.95
# Pixels of margin around the mask region when a result is pasted back (hides the mask's rim).
PASTE_MARGIN_PX = 6

# Close-up guess when no face is detected: the face box is this share of the shorter side,
# centred at this height (faces in selfies and crops sit a little below the middle).
CLOSEUP_BOX = 0.62
CLOSEUP_CENTRE_Y = 0.56
# CenterFace's best score on a guessed close-up (aligned), below which it is no face. Measured
# (2026-12-01) on the photos that reach the guess: 16 images without a face (skimage.data's
# coffee, rocket, hubble_deep_field, retina, brick, ..., uniform noise) all scored <= 0.072, and
# every one but chelsea, cat and moon had passed the texture and mask checks below; of the 34 of
# the first 400 real masked photos whose guess passed them, the 7 under 0.1 (0.014-0.066) were
# misaligned (zoomed on sunglasses, profiles; looked at), the others scored 0.115-0.81.
CLOSEUP_MIN_FACE_SCORE = 0.1

UNTRAINED_ENV = "UNMASK_UNTRAINED"


def untrained_mode() -> bool:
    """True when UNMASK_UNTRAINED=1: randomly initialised networks instead of shipped weights.

    For tests only (and for timing before weights exist): the results are noise.
    """
    return os.environ.get(UNTRAINED_ENV, "").strip() in ("1", "true", "yes")


class InputError(ValueError):
    """A photo (or mask) the pipeline cannot use; `str(err)` is a message for a person."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason  # slug: "not_image", "no_face", "too_small", "bad_mask", ...


@dataclass(frozen=True)
class Prepared:
    """A photo made ready for the methods: its main face aligned and the mask region known."""

    photo: np.ndarray  # uint8 (H, W, 3), the photo at its own size; results are pasted into it
    aligned: Any  # model.faces.AlignedFace; .image is the (256, 256, 3) face the methods see;
    # .matrix maps `photo` pixels to the aligned face, .source_shape == photo.shape[:2]
    mask: np.ndarray  # bool (256, 256), True = hole; all False when unknown (no segmenter)
    messages: list[str] = field(default_factory=list)  # notes for the person (several faces, ...)
    mask_source: str = "segmenter"  # "segmenter" | "given" | "synthetic:<style>" | "none"
    truth: np.ndarray | None = None  # uint8 (256, 256, 3) unmasked face when the mask is synthetic


class MethodResults(dict):
    """key -> (uint8 (256, 256, 3) result, seconds); `.errors` key -> message for methods that failed."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: dict[str, str] = {}


# --- models, loaded once per process and shared (read-only) -----------------------------------


def _method(key: str, untrained: bool):
    from model.methods import load_method

    return load_method(key, untrained)


def get_method(key: str):
    """The built method for `key` (shipped weights, or untrained nets under UNMASK_UNTRAINED=1);
    KeyError for an unknown key (from `load_method`, the one method cache)."""
    return _method(key, untrained_mode())


@cache
def _segmenter(untrained: bool):
    from model.segmenter import load_segmenter

    return load_segmenter(untrained=untrained)


def get_segmenter():
    """The mask segmenter, or None when its weights are missing (the person paints the mask)."""
    try:
        return _segmenter(untrained_mode())
    except Exception as err:  # WeightsError (missing / corrupt file) or a broken install
        if _is_weights_error(err):
            return None
        raise


def segmenter_problem() -> str | None:
    """Why the segmenter is unavailable, or None when it loads."""
    try:
        _segmenter(untrained_mode())
    except Exception as err:
        if _is_weights_error(err):
            return str(err)
        raise
    return None


def _is_weights_error(err: Exception) -> bool:
    from model.checkpoint import WeightsError  # imports torch: deferred, like the loads above

    return isinstance(err, WeightsError | FileNotFoundError)


def warm_up(keys: list[str] | None = None) -> dict[str, str]:
    """Load the segmenter and methods now (not on the first visitor); returns key -> problem."""
    problems: dict[str, str] = {}
    problem = segmenter_problem()
    if problem:
        problems["segmenter"] = problem
    for key in keys or list(METHODS):
        try:
            get_method(key)
        except Exception as err:
            if not _is_weights_error(err):
                raise
            problems[key] = str(err)
    return problems


# --- steps --------------------------------------------------------------------------------------


def load_photo(src: Any) -> tuple[np.ndarray, list[str]]:
    """Photo (path, bytes, PIL image, array) as uint8 RGB (H, W, 3) at its own size, and notes for
    the person; raises InputError ("no_input", "not_image", "unreadable", "too_large", "too_small").
    """
    photo, _size, messages = _load(src)
    return photo, messages


def _load(src: Any) -> tuple[np.ndarray, tuple[int, int], list[str]]:
    """(photo, (width, height) as stored, notes): see load_photo."""
    from model.imageio import ImageError, read_image

    if src is None:
        raise InputError(
            "no_input", "No photo given: upload a photo, take one, or pick an example."
        )
    try:
        photo, size = read_image(src)
    except ImageError as err:
        message = _image_message(err)
        if isinstance(src, str | Path):  # never show server paths (the demo's upload folder)
            message = message.replace(str(src), Path(src).name)
        raise InputError(getattr(err, "reason", "unreadable"), message) from err
    except (OSError, ValueError) as err:  # anything the loader did not classify
        raise InputError("unreadable", f"This file could not be read as an image ({err}).") from err
    messages = []
    h, w = photo.shape[:2]
    if max(size) > max(h, w):
        messages.append(
            f"The photo is very large ({size[0]}×{size[1]} px, {size[0] * size[1] / 1e6:.0f} "
            f"megapixels): it was read at {w}×{h} px, and the results are that size."
        )
    return photo, size, messages


def find_face(photo: np.ndarray, face: int | None = None) -> tuple[Any, list[str]]:
    """The main face (or face number `face`, 1 = the largest), aligned to 256², and notes (several
    faces, small, turned); raises InputError."""
    from model.faces import FaceError, find_and_align, main_face_note

    messages = []
    fill = None  # the photo's corner fill, found once when a group photo needs it

    def wears_mask(a) -> bool:  # in a group photo, the face to unmask is the masked one
        nonlocal fill
        if fill is None:
            from model.faces import border_fill

            fill = border_fill(photo)
        inside = a.inside & ~_fill_on_face(photo, a.matrix, fill)
        return predict_mask(a.image, a.landmarks, inside)[2] == "segmenter"

    try:
        aligned = find_and_align(photo, face=face, prefer=wears_mask)
    except FaceError as err:
        aligned = _align_as_closeup(photo) if err.reason == "no_face" else None
        if aligned is None or not _plausible_closeup(aligned.image):
            raise InputError(getattr(err, "reason", "no_face"), _face_message(err)) from err
        messages.append(
            "The face detector found no face (masks hide much of what it looks for), so the photo "
            "was taken as a close-up of one face: check that the mask region found (the demo's red "
            "overlay) sits on the mask."
        )
    note = main_face_note(aligned)  # says which face was used, by the rule that chose it
    if note:
        messages.append(note)
    size = float(getattr(aligned, "face_size", 0.0) or 0.0)
    if 0 < size < SMALL_FACE_PX:
        messages.append(f"The face is small ({size:.0f} px wide): expect a blurry result.")
    yaw = float(getattr(aligned, "yaw_deg", 0.0) or 0.0)
    if abs(yaw) > TURNED_YAW_DEG:
        messages.append(
            f"The face is turned ({yaw:+.0f}°): the methods were trained on near-frontal faces."
        )
    return aligned, messages


def _align_as_closeup(photo: np.ndarray):
    """Align a photo that is (nearly) a close-up of one face without detecting it, or None.

    dlib's detectors miss most masked faces; its landmark predictor, started from a box in the
    photo's centre, still finds eyes, brows and jaw on face-centred crops, and that is enough to
    align. Photos far from square are not close-ups: no guess then.
    """
    import dlib

    from model.faces import align_face, shape_predictor

    h, w = photo.shape[:2]
    if not 0.5 <= w / h <= 2.0:
        return None
    side = CLOSEUP_BOX * min(h, w)
    cx, cy = w / 2, CLOSEUP_CENTRE_Y * h
    box = dlib.rectangle(
        *(int(round(v)) for v in (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2))
    )
    shape = shape_predictor()(np.ascontiguousarray(photo), box)
    landmarks = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)  # (68, 2)
    if np.linalg.norm(landmarks[16] - landmarks[0]) < SMALL_FACE_PX:
        return None
    return align_face(photo, landmarks)


def _plausible_closeup(face: np.ndarray) -> bool:
    """Whether a guessed close-up looks like a masked face: textured eyes, a face to CenterFace
    (CLOSEUP_MIN_FACE_SCORE, where it is installed), a mask below the eyes."""
    from model import centerface

    gray = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)
    if gray[80:120].std() < 10:  # a flat band where the eyes should be: no face at all
        return False
    if centerface.available():
        scores = centerface.detect(np.ascontiguousarray(face), threshold=0.01)[1]
        if max(scores, default=0.0) < CLOSEUP_MIN_FACE_SCORE:
            return False
    segmenter = get_segmenter()
    if segmenter is None or untrained_mode():  # nothing (meaningful) to check the mask with
        return True
    mask = np.asarray(segmenter.predict(face), dtype=bool)
    cover = mask.mean()
    below_eyes = mask[110:].sum() / max(mask.sum(), 1)
    return 0.05 <= cover <= 0.7 and below_eyes >= 0.75


def predict_mask(
    face: np.ndarray, landmarks: np.ndarray | None = None, inside: np.ndarray | None = None
) -> tuple[np.ndarray, list[str], str]:
    """The hole to inpaint on an aligned face, by the segmenter and the region rule
    (model.segmenter.find_mask_region: the region and its rim; `inside`: which aligned pixels lie
    in the photo): (bool (256, 256), notes, source). Source "none" with an empty region: no face
    mask was found (or no segmenter), and the photo is to be left unchanged."""
    segmenter = get_segmenter()
    if segmenter is None:
        empty = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
        return (
            empty,
            [
                "The mask segmenter's weights are missing, so the mask region was not predicted: "
                "paint it with the brush (or give a mask file)."
            ],
            "none",
        )
    from model.segmenter import find_mask_region

    if landmarks is None:
        from model.faces import landmarks_of

        landmarks = landmarks_of(face)
    region = find_mask_region(segmenter, face, landmarks, inside)
    if not region.found:
        return region.hole, [region.message], "none"
    return region.hole, [], "segmenter"


def prepare(photo: Any, *, mask: Any = None, face: int | None = None) -> Prepared:
    """Load `photo` (path, bytes, PIL, array), align its main face, and predict (or take) the mask.

    `mask`: optional mask of the photo, always in the photo's own (upright) coordinates: a bool
    or uint8 array (H, W), or a mask image (file, bytes, PIL) read by `imageio.load_mask`
    (white, or painted on a transparent layer, = the hole). A mask of another size with the
    photo's proportions is scaled to it (and the person told). Raises InputError with a
    message; "bad_mask" for a mask that cannot be used.
    """
    image, size, messages = _load(photo)
    work, to_work = _working_copy(image)
    aligned, notes = find_face(work, face)
    messages += notes
    if mask is not None:
        region, notes = _given_mask(mask, size, work, aligned.matrix)
        source = "given"
    else:
        inside = aligned.inside & ~_fill_on_face(work, aligned.matrix)
        region, notes, source = predict_mask(aligned.image, aligned.landmarks, inside)
    messages += notes
    return Prepared(image, _on_photo(aligned, to_work, image.shape[:2]), region, messages, source)


def _fill_on_face(
    photo: np.ndarray, matrix: np.ndarray, fill: np.ndarray | None = None
) -> np.ndarray:
    """bool (256, 256): the aligned pixels that are an editor's flat fill of the photo's corners
    (`model.faces.border_fill`: a rotation's triangles, letterbox bars). The region rule counts
    them as outside the photo, as it does the grey beyond its edge: a black corner under a tilted
    bare face's chin had read as a black mask (27 of 30 UTKFace faces turned by 35 degrees).
    `fill`: the photo's `border_fill`, when already found."""
    from model.faces import border_fill

    fill = border_fill(photo) if fill is None else fill
    if not fill.any():
        return np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
    m = np.asarray(matrix, dtype=np.float64)
    warped = cv2.warpAffine(
        fill.astype(np.uint8), m, (IMAGE_SIZE, IMAGE_SIZE), flags=cv2.INTER_NEAREST
    )
    return warped > 0


def _working_copy(photo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the photo at most WORK_SIDE long, the (3, 3) map from photo to working-copy pixels)."""
    h, w = photo.shape[:2]
    if max(h, w) <= WORK_SIDE:
        return photo, np.eye(3)
    s = WORK_SIDE / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    work = cv2.resize(photo, size, interpolation=cv2.INTER_AREA)
    sx, sy = size[0] / w, size[1] / h
    # cv2.resize maps pixel centres: u + 0.5 = (x + 0.5) * sx.
    return work, np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]])


def _on_photo(aligned: Any, to_work: np.ndarray, photo_hw: tuple[int, int]) -> Any:
    """A face aligned from the working copy, re-expressed on the full photo (same aligned image)."""
    if np.array_equal(to_work, np.eye(3)):
        return aligned
    matrix = np.asarray(aligned.matrix, dtype=np.float64) @ to_work  # photo -> aligned, (2, 3)
    return replace(
        aligned,
        matrix=matrix,
        source_shape=(int(photo_hw[0]), int(photo_hw[1])),
        face_size=float(aligned.face_size) / float(to_work[0, 0]),
    )


def with_synthetic_mask(prepared: Prepared, style: str, seed: int = 0) -> Prepared:
    """Put a synthetic mask of `style` on the face, keeping the face as it was as ground truth."""
    from model.faces import paste_back
    from model.imageio import is_greyscale, to_greyscale
    from model.masks import apply_mask

    face = prepared.aligned.image
    masked = apply_mask(face, prepared.aligned.landmarks, seed=int(seed), style=style)
    seg = np.asarray(masked.seg, dtype=bool)
    image = masked.image
    if is_greyscale(face):  # a greyscale photo gets a greyscale mask
        image = to_greyscale(image)
    photo = paste_back(prepared.photo, prepared.aligned, image, region=_grow(seg))
    aligned = replace(prepared.aligned, image=image)
    messages = [m for m in prepared.messages if "No face mask was found" not in m]
    return Prepared(photo, aligned, seg, messages, f"synthetic:{masked.style}", truth=face)


def with_mask(prepared: Prepared, mask: np.ndarray) -> Prepared:
    """The same prepared photo with a corrected mask region."""
    return replace(prepared, mask=np.asarray(mask, dtype=bool))


def run_methods(
    aligned_image: np.ndarray,
    mask: np.ndarray,
    keys: list[str] | None = None,
    *,
    inside: np.ndarray | None = None,
) -> MethodResults:
    """Run each method on one aligned face: key -> (uint8 (256, 256, 3), seconds).

    `aligned_image`: uint8 (256, 256, 3); `mask`: bool (256, 256), True = the hole; `inside`:
    bool (256, 256), the aligned pixels that lie in the photo (`AlignedFace.inside`), or None
    (all of them). A hole that runs past the photo's edge is painted there too; every result is
    given back with those pixels set to the flat OUTSIDE_FILL again, as the aligned input shows
    them. When the face outside the hole is greyscale (a black-and-white photo), every result is
    made greyscale too: networks trained on colour faces would paint a skin-coloured patch into
    it. A method that cannot load (missing weights) or fails is left out and explained in
    `.errors`; the others still run.
    """
    from model.faces import OUTSIDE_FILL
    from model.imageio import is_greyscale, to_greyscale

    results = MethodResults()
    mask = np.asarray(mask, dtype=bool)
    grey = is_greyscale(aligned_image, ~mask if not mask.all() else None)
    for key in keys or list(METHODS):
        label = METHODS[key].label if key in METHODS else key
        try:
            method = get_method(key)
        except Exception as err:
            if not (_is_weights_error(err) or isinstance(err, KeyError)):
                raise
            results.errors[key] = f"{label}: not available ({err})"
            continue
        start = time.perf_counter()
        try:
            out = method.inpaint(aligned_image, mask)
        except Exception as err:  # one broken method must not hide the others' results
            results.errors[key] = f"{label}: failed ({type(err).__name__}: {err})"
            continue
        out = np.array(out, dtype=np.uint8)
        if inside is not None:
            out[~np.asarray(inside, dtype=bool)] = OUTSIDE_FILL
        results[key] = (to_greyscale(out) if grey else out, time.perf_counter() - start)
    return results


def paste_result(prepared: Prepared, result: np.ndarray) -> np.ndarray:
    """An aligned result blended back into the full photo (mask region plus a small margin)."""
    from model.faces import paste_back

    region = _grow(prepared.mask) if prepared.mask.any() else None
    return paste_back(prepared.photo, prepared.aligned, result, region=region)


# --- helpers ------------------------------------------------------------------------------------


def _grow(mask: np.ndarray, px: int = PASTE_MARGIN_PX) -> np.ndarray:
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel) > 0


def _given_mask(
    mask: Any, size: tuple[int, int], work: np.ndarray, matrix: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    """A mask in the photo's coordinates -> (bool (256, 256) on the aligned face, notes).

    `size`: the photo's (width, height) as stored (before any reduced-scale decode); `work`: the
    working copy `matrix` maps onto the aligned face.
    """
    from model.imageio import ImageError, load_mask

    try:
        region = load_mask(mask)
    except ImageError as err:
        message = str(err)
        if isinstance(mask, str | Path):
            message = message.replace(str(mask), Path(mask).name)
        raise InputError("bad_mask", f"The mask could not be read: {message}.") from err
    h, w = region.shape
    notes = []
    if (w, h) != tuple(size):
        if abs(w / h - size[0] / size[1]) > 0.01:
            raise InputError(
                "bad_mask",
                f"The mask is {w}×{h} px but the photo {size[0]}×{size[1]}: a mask is drawn on "
                "the photo itself, so give it at the photo's size (or the same proportions).",
            )
        notes.append(
            f"The mask is {w}×{h} px and the photo {size[0]}×{size[1]} px: it was scaled to "
            "the photo."
        )
    cover = float(region.mean())
    if cover == 0:
        raise InputError(
            "bad_mask",
            "The mask marks nothing: paint the face mask white on black, or in any colour on a "
            "transparent layer.",
        )
    if cover > MAX_MASK_COVER:
        raise InputError(
            "bad_mask",
            f"The mask marks {cover:.1%} of the photo as the hole: only the face mask should be "
            "white (or painted, on a transparent layer), the rest black (or transparent).",
        )
    # To the working copy's size first (area-averaged: no aliasing from a 100 Mpx mask), then
    # warped like the photo was. uint8, not float: a full-size mask can be 100+ Mpx.
    small = cv2.resize(
        region.astype(np.uint8) * 255, (work.shape[1], work.shape[0]), interpolation=cv2.INTER_AREA
    )
    warped = cv2.warpAffine(
        small,
        np.asarray(matrix, dtype=np.float64),
        (IMAGE_SIZE, IMAGE_SIZE),
        flags=cv2.INTER_LINEAR,
    )
    aligned = warped > 127
    if not aligned.any():
        raise InputError(
            "bad_mask",
            "The mask does not touch the face found in the photo: check that it was drawn on "
            "this photo.",
        )
    return aligned, notes


def _image_message(err: Exception) -> str:
    reason = getattr(err, "reason", "")
    if reason == "not_image":
        return f"This file is not an image ({err}). Use a JPEG, PNG or WebP photo."
    if reason == "too_large":
        # Our own refusals say the size; PIL's (a "decompression bomb") are not for people.
        said = "" if "decompression bomb" in str(err).lower() else f" ({err})"
        return (
            f"This image has too many pixels to open safely{said}. Use a smaller copy of the photo."
        )
    return f"This photo could not be used: {err}"


def _face_message(err: Exception) -> str:
    reason = getattr(err, "reason", "")
    if reason == "no_face":
        return (
            "No face was found in this photo. Use a photo where one face is clearly "
            "visible, roughly frontal and not cut off."
        )
    if reason == "too_small":
        return f"The face is too small to work on ({err}). Use a closer or larger photo."
    if reason == "not_upright":
        return (
            "No upright face was found: the face looks turned too far (tilted, sideways or upside "
            "down). Straighten the photo so that the face is upright, or use another photo."
        )
    return f"The face could not be used: {err}"
