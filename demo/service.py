"""What the demo does, in plain Python (no gradio): examples, upload, mask corrections, runs, zip.

Each public function takes the visitor's `Visit` (kept by the app in `gr.State`) and returns a
`View`: what the page should show next. Bad input becomes a message, never an exception.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import shutil
import tempfile
import time
import uuid
import zipfile
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from model import pipeline
from model.config import IMAGE_SIZE, REPO_DIR
from model.methods import METHODS

log = logging.getLogger(__name__)

# Brush colours in the mask editor: red strokes add to the mask, blue strokes erase from it.
ADD_COLOUR = "#ff2a2a"
ERASE_COLOUR = "#2a9dff"
# The editor shows the aligned face at this size (256² is too small to paint on comfortably).
EDITOR_SIZE = 512
# Side of the close-up examples (px).
EXAMPLE_SIZE = 384
# Zips older than this are deleted from the demo's temporary folder.
KEEP_OUTPUTS_S = 3600

_OUT_DIR = Path(tempfile.gettempdir()) / "unmask-demo"


@dataclass(frozen=True)
class Visit:
    """One visitor's work so far (lives in gr.State): the prepared photo and the last results."""

    prepared: pipeline.Prepared | None = None
    results: dict[str, tuple[np.ndarray, float]] = field(default_factory=dict)
    refused: str = ""  # why the last upload could not be used (said again by the next step)


@dataclass(frozen=True)
class Unreadable:
    """An upload the photo box could not decode; the app hands it on instead of raising, so that
    the refusal is a message in the page like every other (a raised error leaves "Error" badges)."""

    reason: str  # the decoder's exception class, e.g. UnidentifiedImageError


UNREADABLE_PHOTO = (
    "This file is not an image we can read ({reason}). Try a JPEG, PNG or WebP photo, or the "
    "'any image file' box below for TIFF, BMP and other formats."
)
# The photo box's decoding errors (the decoder's exception class) in the visitor's words.
UNREADABLE_REASONS = {
    "DecompressionBombError": "it has too many pixels to open safely",
    "UnidentifiedImageError": "its contents are not an image format we know",
}
# Photos longer than this are shrunk for the demo (results, zip); `unmask inpaint` keeps the size.
DEMO_MAX_SIDE = 2048
# How the page lets a visitor choose another face of a group photo.
FACE_CHOICE = "the 'Face' box under the photo"


@dataclass(frozen=True)
class View:
    """What the page shows after a step; `None` fields leave that part of the page empty."""

    visit: Visit
    status: str = ""  # markdown: messages for the visitor
    editor: dict | None = None  # ImageEditor value: face with the mask overlay, empty brush layers
    gallery: list[tuple[np.ndarray, str]] = field(default_factory=list)
    timings: str = ""  # markdown table of seconds per method
    photo: np.ndarray | None = None  # the chosen result pasted back into the full photo
    chosen: str | None = None  # the method key whose result is pasted back


# --- choices and texts --------------------------------------------------------------------------


def method_choices() -> list[tuple[str, str]]:
    """(label, key) for every registered method, in registry order."""
    return [(spec.label, key) for key, spec in METHODS.items()]


def style_choices() -> list[str]:
    from model.masks import STYLES

    return list(STYLES)


def untrained_note() -> str:
    """A banner when the demo runs untrained networks (tests only)."""
    if pipeline.untrained_mode():
        return (
            "**Test mode (UNMASK_UNTRAINED=1):** the networks are randomly initialised, "
            "so their results are noise."
        )
    return ""


def warm_up() -> dict[str, str]:
    """Load every model and make the examples now; returns name -> why it is unavailable."""
    problems = pipeline.warm_up()
    examples()
    return problems


# --- examples -----------------------------------------------------------------------------------


@cache
def examples() -> list[tuple[str, str]]:
    """(caption, PNG path) examples made now from skimage's astronaut: a close-up of her face with
    each mask style (as people upload masked selfies), and the whole photo without a mask.

    Made at run time from an image an installed package ships; never from the research data.
    """
    from skimage import data

    from model.masks import STYLES

    folder = _OUT_DIR / "examples"
    folder.mkdir(parents=True, exist_ok=True)
    photo = np.ascontiguousarray(data.astronaut())
    plain = folder / "astronaut.png"
    _save_atomic(photo, plain)
    try:
        prepared = pipeline.Prepared(photo, pipeline.find_face(photo)[0], _empty_mask())
    except pipeline.InputError as err:  # no face detector: offer the plain photo only
        log.warning("examples: %s", err)
        return [("astronaut", str(plain))]
    top, bottom, left, right = _closeup_box(prepared)
    out = []
    for seed, style in enumerate(STYLES):
        masked = pipeline.with_synthetic_mask(prepared, style, seed=seed)
        closeup = masked.photo[top:bottom, left:right]
        closeup = cv2.resize(closeup, (EXAMPLE_SIZE, EXAMPLE_SIZE), interpolation=cv2.INTER_CUBIC)
        path = folder / f"astronaut_{style}.png"
        _save_atomic(closeup, path)
        out.append((f"astronaut, {style} mask", str(path)))
    out.append(("astronaut, no mask", str(plain)))
    return out


def _save_atomic(image: np.ndarray, path: Path) -> None:
    """Write a PNG so that another process (a second server, a test) never reads half of it."""
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex}.png")
    Image.fromarray(image).save(tmp)
    os.replace(tmp, path)


def _closeup_box(prepared: pipeline.Prepared) -> tuple[int, int, int, int]:
    """(top, bottom, left, right): a square around the aligned face's frame, in photo pixels."""
    from model.faces import invert_matrix, transform_points

    corners = np.array([[0, 0], [IMAGE_SIZE, 0], [0, IMAGE_SIZE], [IMAGE_SIZE, IMAGE_SIZE]], float)
    pts = transform_points(corners, invert_matrix(prepared.aligned.matrix))
    (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 0.5 * max(x1 - x0, y1 - y0)
    h, w = prepared.photo.shape[:2]
    half = min(half, cx, cy, w - cx, h - cy)  # stay inside the photo
    return int(cy - half), int(cy + half), int(cx - half), int(cx + half)


# --- steps --------------------------------------------------------------------------------------


def prepare_upload(src: Any, face: int | None = None) -> View:
    """A new photo (path, bytes, array, or an `Unreadable` upload): find the face (`face`: its
    number, 1 = the largest; 0 or None: the largest one wearing a mask, else the largest), predict
    the mask."""
    if src is None:
        return View(Visit(), status="")
    if isinstance(src, Unreadable):
        reason = UNREADABLE_REASONS.get(src.reason, "it could not be decoded")
        return _refused(UNREADABLE_PHOTO.format(reason=reason))
    if face is not None and not (float(face).is_integer() and 0 <= face < 1000):
        return View(Visit(), status=_error(f"Face is a whole number from 0 (got {face})."))
    try:
        src, shrunk = _demo_size(src)
        prepared = pipeline.prepare(src, face=int(face) if face else None)
        if shrunk:
            prepared.messages.insert(0, shrunk)
    except pipeline.InputError as err:
        return _refused(str(err))
    except Exception as err:  # unexpected: log it for us, a plain message for the visitor
        log.exception("prepare failed")
        return View(
            Visit(), status=_error(f"Something went wrong on our side ({type(err).__name__}).")
        )
    visit = Visit(prepared)
    notes = [_mask_summary(prepared), *_page_words(prepared.messages)]
    return View(visit, status=_notes(notes), editor=editor_value(prepared))


def _refused(message: str) -> View:
    return View(Visit(refused=message), status=_error(message))


def _demo_size(src: Any) -> tuple[Any, str]:
    """The upload as an array at most DEMO_MAX_SIDE long, and a note when it was shrunk (else
    the upload as it came, and ""). Raises pipeline.InputError for what cannot be read."""
    photo, notes = pipeline.load_photo(src)
    h, w = photo.shape[:2]
    if max(h, w) <= DEMO_MAX_SIDE:
        return photo, " ".join(notes)
    s = DEMO_MAX_SIDE / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    small = cv2.resize(photo, size, interpolation=cv2.INTER_AREA)
    return small, (
        f"The photo ({w}×{h} px) was shrunk to {size[0]}×{size[1]} px for the demo; "
        "`unmask inpaint` keeps a photo's own size."
    )


def _page_words(messages: list[str]) -> list[str]:
    """The pipeline's notes as the page says them: not the "no mask found" note (the upload's
    summary says it, and once a region is painted it no longer holds), and the page's own way to
    choose a face."""
    from model.faces import FACE_CHOICE as CLI_FACE_CHOICE
    from model.segmenter import NO_MASK_MESSAGE

    return [m.replace(CLI_FACE_CHOICE, FACE_CHOICE) for m in messages if m != NO_MASK_MESSAGE]


def add_synthetic_mask(visit: Visit, style: str, seed: int = 0) -> View:
    """Put a synthetic mask on the face so that its ground truth can be shown beside the methods."""
    prepared = visit.prepared
    if prepared is None:
        return View(visit, status=_no_photo(visit))
    if not 0 <= float(seed or 0) < 2**63:
        return View(visit, status=_error(f"The seed must be a whole number from 0 (got {seed})."))
    base = prepared
    if prepared.truth is not None:  # re-mask the original face, not a face already masked
        base = replace(
            prepared,
            aligned=replace(prepared.aligned, image=prepared.truth),
            photo=pipeline.paste_result(prepared, prepared.truth),
        )
    try:
        masked = pipeline.with_synthetic_mask(base, style, seed=int(seed or 0))
    except Exception as err:
        log.exception("synthetic mask failed")
        return View(visit, status=_error(f"Could not add a {style} mask ({err})."))
    notes = _page_words(masked.messages) + [
        f"Added a synthetic {style} mask: the face as it was is the ground truth in the results."
    ]
    return View(Visit(masked), status=_notes(notes), editor=editor_value(masked))


def correct_mask(visit: Visit, editor: dict | None) -> View:
    """Apply the visitor's brush strokes (red adds, blue erases) to the mask; redraw the overlay."""
    prepared = visit.prepared
    if prepared is None:
        return View(visit, status=_no_photo(visit))
    prepared = pipeline.with_mask(prepared, apply_strokes(prepared.mask, editor))
    return View(
        Visit(prepared),
        status=_notes([f"Mask updated: {prepared.mask.mean():.0%} of the face."]),
        editor=editor_value(prepared),
    )


def run(
    visit: Visit, editor: dict | None, keys: list[str] | None, chosen: str | None = None
) -> View:
    """Apply pending brush strokes, run the chosen methods (all if none), lay out the results."""
    prepared = visit.prepared
    if prepared is None:
        return View(visit, status=_no_photo(visit))
    prepared = pipeline.with_mask(prepared, apply_strokes(prepared.mask, editor))
    if not prepared.mask.any():
        found_none = prepared.mask_source == "none" and pipeline.get_segmenter() is not None
        return View(
            Visit(prepared),
            status=(
                "No face mask was found on this face, so there is nothing to remove: the photo "
                "stays as it is. Paint a region with the red brush, or add a synthetic mask."
                if found_none
                else _error(
                    "The mask region is empty: paint it with the red brush, or add a synthetic mask."
                )
            ),
            editor=editor_value(prepared),
        )
    if keys is not None and not keys:
        return View(
            Visit(prepared),
            status=_error("Choose at least one method (the boxes above the button)."),
            editor=editor_value(prepared),
        )
    keys = [k for k in (keys or list(METHODS)) if k in METHODS]
    try:
        results = pipeline.run_methods(
            prepared.aligned.image, prepared.mask, keys, inside=prepared.aligned.inside
        )
    except Exception as err:
        log.exception("run failed")
        return View(
            Visit(prepared),
            status=_error(f"Something went wrong on our side ({type(err).__name__})."),
        )
    visit = Visit(prepared, dict(results))
    chosen = chosen if chosen in results else _default_choice(results)
    # Visitors need not see the server's folders: weights paths relative to the repository.
    errors = [e.replace(f"{REPO_DIR}{os.sep}", "") for e in results.errors.values()]
    messages = _page_words(prepared.messages) + errors
    if not results:
        messages.append("No method could run.")
    return View(
        visit,
        status=_notes(messages),
        editor=editor_value(prepared),
        gallery=gallery(prepared, results),
        timings=timings_markdown(results),
        photo=pipeline.paste_result(prepared, results[chosen][0]) if chosen else None,
        chosen=chosen,
    )


def download(visit: Visit) -> str | None:
    """Path of a zip of the last run's results (None before a run); made after the gallery shows."""
    if visit.prepared is None or not visit.results:
        return None
    return str(write_zip(visit.prepared, visit.results))


def key_at(visit: Visit, index: int) -> str | None:
    """The method key shown at gallery position `index` (None for the input or the truth)."""
    first = 1 + (visit.prepared is not None and visit.prepared.truth is not None)
    keys = list(visit.results)
    i = int(index) - first
    return keys[i] if 0 <= i < len(keys) else None


def paste(visit: Visit, key: str | None) -> np.ndarray | None:
    """The result of method `key` blended back into the full photo (None before a run)."""
    if visit.prepared is None or key not in visit.results:
        return None
    return pipeline.paste_result(visit.prepared, visit.results[key][0])


# --- pictures -----------------------------------------------------------------------------------


def overlay(face: np.ndarray, mask: np.ndarray, size: int = EDITOR_SIZE) -> np.ndarray:
    """The face with the mask region tinted red and outlined, upscaled to `size`² for painting."""
    face = cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC)
    mask = cv2.resize(mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST) > 0
    out = face.astype(np.float32)
    red = np.array([255, 40, 40], np.float32)
    out[mask] = 0.55 * out[mask] + 0.45 * red
    out = out.astype(np.uint8)
    contours, _ = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    cv2.drawContours(out, contours, -1, (255, 40, 40), 2)
    return out


def editor_value(prepared: pipeline.Prepared) -> dict:
    """An ImageEditor value: the overlay as background, no brush layers yet."""
    return {
        "background": overlay(prepared.aligned.image, prepared.mask),
        "layers": [],
        "composite": None,
    }


def blank_editor() -> dict:
    """An ImageEditor value with nothing to paint on (after a refused upload): a plain canvas,
    since a `None` value after an earlier face leaves the editor spinning forever."""
    return {
        "background": np.full((EDITOR_SIZE, EDITOR_SIZE, 3), 245, np.uint8),
        "layers": [],
        "composite": None,
    }


def apply_strokes(mask: np.ndarray, editor: dict | None) -> np.ndarray:
    """The mask corrected by the editor's brush layers: red-ish strokes add, blue-ish strokes erase.

    Layers are RGBA arrays of any size (the editor's canvas); they are resized to 256².
    """
    mask = np.asarray(mask, dtype=bool).copy()
    for layer in (editor or {}).get("layers") or []:
        layer = _as_rgba(layer)
        if layer is None:
            continue
        layer = cv2.resize(layer, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)
        painted = layer[..., 3] > 64  # brush edges are antialiased; keep the solid part
        red, blue = layer[..., 0].astype(int), layer[..., 2].astype(int)
        mask[painted & (red > blue)] = True
        mask[painted & (blue >= red)] = False
    return mask


def _as_rgba(layer: Any) -> np.ndarray | None:
    if layer is None:
        return None
    if isinstance(layer, str | Path):
        layer = Image.open(layer)
    if isinstance(layer, Image.Image):
        layer = np.asarray(layer.convert("RGBA"))
    layer = np.asarray(layer)
    if layer.ndim != 3:
        return None
    if layer.shape[2] == 3:  # no alpha: anything not black counts as painted
        alpha = (layer.max(axis=2) > 0).astype(np.uint8) * 255
        layer = np.dstack([layer, alpha])
    return np.ascontiguousarray(layer[..., :4].astype(np.uint8))


def gallery(prepared: pipeline.Prepared, results: dict) -> list[tuple[np.ndarray, str]]:
    """Input, ground truth (when the mask is synthetic), then one captioned result per method."""
    items = [(prepared.aligned.image, "Input")]
    if prepared.truth is not None:
        items.append((prepared.truth, "Ground truth"))
    for key, (image, seconds) in results.items():
        items.append((image, f"{METHODS[key].label} · {seconds * 1000:.0f} ms"))
    return items


def as_files(items: list[tuple[np.ndarray, str]]) -> list[tuple[str, str]]:
    """Gallery items with their images written as PNGs into a fresh folder of this process's
    outputs (removed after KEEP_OUTPUTS_S), for Gradio to serve.

    Gradio caches a returned array under a hash of its bytes and rewrites that file in place each
    time: two visitors shown the same picture (the same upload's input or ground truth) at once
    then race, and one download reads a truncated file. A file path is copied into the cache once,
    atomically."""
    _clean_old_outputs()
    folder = _OUT_DIR / "runs" / uuid.uuid4().hex
    folder.mkdir(parents=True)
    out = []
    for i, (image, caption) in enumerate(items):
        path = folder / f"{i:02d}.png"
        path.write_bytes(_png(image))  # a new folder: no one else reads this path
        out.append((str(path), caption))
    return out


def as_file(image: np.ndarray | None) -> str | None:
    """One picture as a PNG path (see `as_files`), None stays None."""
    return None if image is None else as_files([(image, "")])[0][0]


def timings_markdown(results: dict) -> str:
    if not results:
        return ""
    rows = [f"| {METHODS[k].label} | {s * 1000:.0f} |" for k, (_, s) in results.items()]
    total = sum(s for _, s in results.values())
    return (
        "| method | ms |\n| --- | ---: |\n"
        + "\n".join(rows)
        + f"\n| **all** | **{total * 1000:.0f}** |"
    )


def write_zip(prepared: pipeline.Prepared, results: dict) -> Path:
    """All results in one zip: aligned input, mask, truth, each result aligned and pasted, timings."""
    _clean_old_outputs()
    folder = _OUT_DIR / "runs" / uuid.uuid4().hex
    folder.mkdir(parents=True)
    path = folder / "unmask-results.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:  # PNGs are already compressed
        zf.writestr("input_face.png", _png(prepared.aligned.image))
        zf.writestr("input_photo.png", _png(prepared.photo))
        zf.writestr("mask.png", _png(prepared.mask.astype(np.uint8) * 255))
        if prepared.truth is not None:
            zf.writestr("ground_truth_face.png", _png(prepared.truth))
        table = io.StringIO()
        writer = csv.writer(table)
        writer.writerow(["method", "label", "seconds"])
        for key, (image, seconds) in results.items():
            zf.writestr(f"{key}_face.png", _png(image))
            zf.writestr(f"{key}_photo.png", _png(pipeline.paste_result(prepared, image)))
            writer.writerow([key, METHODS[key].label, f"{seconds:.4f}"])
        zf.writestr("timings.csv", table.getvalue())
    return path


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)  # fast: big photos, 2 cores
    return buf.getvalue()


def _clean_old_outputs() -> None:
    runs = _OUT_DIR / "runs"
    if not runs.is_dir():
        return
    cutoff = time.time() - KEEP_OUTPUTS_S
    for folder in runs.iterdir():
        try:
            if folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            pass  # another worker removed it first


def _mask_summary(prepared: pipeline.Prepared) -> str:
    share = f"{prepared.mask.mean():.0%} of the face"
    if prepared.mask_source == "segmenter":
        return (
            f"Ready: face aligned; the predicted mask covers {share} (correct it with the brush)."
        )
    if prepared.mask_source == "given":
        return f"Ready: face aligned; the given mask covers {share}."
    if prepared.mask_source == "none" and pipeline.get_segmenter() is not None:
        return (
            "Ready: face aligned. No face mask was found on this face: the photo is left "
            "unchanged. Paint a region with the brush, or add a synthetic mask to compare the "
            "methods against the real face."
        )
    return "Ready: face aligned."


def _default_choice(results: dict) -> str | None:
    if "unmask" in results:
        return "unmask"
    return next(iter(results), None)


def _empty_mask() -> np.ndarray:
    return np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=bool)


def _notes(messages: list[str]) -> str:
    return "\n".join(f"- {m}" for m in messages)


def _no_photo(visit: Visit) -> str:
    """A step that needs a photo, before one could be used."""
    if visit.refused:
        return _error(f"The last upload could not be used: {visit.refused} Upload another photo.")
    return _error("Upload a photo (or pick an example) first.")


def _error(message: str) -> str:
    return f"**⚠ {message}**"
