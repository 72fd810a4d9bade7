"""Stimulus builder (`unmask study build`): pick faces, mask them, run every method, store images + rows.

Faces come from an expression-labelled folder named like expressions-tw (`PPTVXnn.jpg`: PP the
performer, X the performed expression). Images are saved under opaque names (`images/<id>.png`)
so that nothing served to a rater says which method made it; `manifest.csv` holds the key.
"""

from __future__ import annotations

import csv
import hashlib
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from itertools import zip_longest
from pathlib import Path

import numpy as np
from PIL import Image

from model.config import EXPRESSIONS, REAL
from model.methods.registry import parse
from study.service import StimulusRow, StudyService

# 5th character of an expressions-tw file name -> our vocabulary (e disgusted, f fearful and
# 0 unlabelled are dropped: not in the study's five).
EXPRESSION_CODES = {"a": "neutral", "b": "happy", "c": "sad", "d": "angry", "g": "surprise"}
# Catch faces: unmasked and unmistakable, with different answers (a rater who always clicks one
# button must fail them). "Unmistakable" is read from the norms' observer agreement
# (Image_info.xls, columns G-L: the proportion of observers who chose each category; the norms
# rate no neutral category). Without the sheet, happy faces only: the norms' label is the
# observers' choice for every one of them (226/226), less so for the others.
NORMS_INFO = "Image_info.xls"
NORMS_CATEGORIES = ("happy", "sad", "angry", "disgusted", "fearful", "surprise")  # columns G-L
CATCH_EXPRESSIONS = ("happy", "surprise", "sad", "angry")
CATCH_MIN_AGREEMENT = 0.9
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
MANIFEST = "manifest.csv"
MANIFEST_COLUMNS = (
    "stimulus_id",
    "image_id",
    "performer",
    "expression",
    "method",
    "role",
    "file",
    "sha256",
    "source",
    "mask_style",
    "mask_seed",
)


@dataclass(frozen=True)
class FaceFile:
    path: Path
    image_id: str  # the file's stem, the same across methods
    performer: str  # first two characters (the norms' performer id)
    expression: str


@dataclass(frozen=True)
class Selection:
    main: dict[str, list[FaceFile]]  # expression -> ranked candidates (take a prefix)
    practice: list[FaceFile]
    catch: list[FaceFile]


def expression_of(stem: str) -> str | None:
    """The performed expression in an expressions-tw file stem (5th character), if one of ours."""
    return EXPRESSION_CODES.get(stem[4].lower()) if len(stem) >= 5 else None


def parse_face_name(path: Path) -> FaceFile | None:
    """FaceFile for an expressions-tw style name, None for other expressions / other files."""
    expression = expression_of(path.stem)
    if path.suffix.lower() not in IMAGE_SUFFIXES or expression is None:
        return None
    return FaceFile(path, path.stem, path.stem[:2], expression)


def scan_faces(faces_dir: str | Path) -> list[FaceFile]:
    faces = [f for p in sorted(Path(faces_dir).iterdir()) if (f := parse_face_name(p))]
    if not faces:
        raise FileNotFoundError(f"no expression-labelled faces in {faces_dir}")
    return faces


def rank_faces(faces: Sequence[FaceFile], seed: int) -> dict[str, list[FaceFile]]:
    """Per expression, every candidate in an order whose every prefix is balanced over performers.

    Round robin over performers within an expression; at position i, the performer seen least
    in the first i + 1 places of the expressions already ranked goes first, so that the first
    n faces of every expression together spread over the performers as evenly as they can.
    """
    rng = random.Random(seed)
    previous: list[list[str]] = []  # performer sequence of each expression ranked so far
    ranked: dict[str, list[FaceFile]] = {}
    for expression in EXPRESSIONS:
        pool: dict[str, list[FaceFile]] = defaultdict(list)
        for f in faces:
            if f.expression == expression:
                pool[f.performer].append(f)
        for files in pool.values():
            rng.shuffle(files)
        tiebreak = {p: rng.random() for p in pool}
        order: list[FaceFile] = []
        taken: Counter[str] = Counter()
        while any(pool.values()):
            head = [seq[: len(order) + 1] for seq in previous]
            chosen = min(
                (p for p, files in pool.items() if files),
                key=lambda p, head=head, taken=taken, tiebreak=tiebreak: (
                    taken[p],
                    sum(seq.count(p) for seq in head),
                    tiebreak[p],
                ),
            )
            order.append(pool[chosen].pop())
            taken[chosen] += 1
        previous.append([f.performer for f in order])
        ranked[expression] = order
    return ranked


def read_agreement(faces_dir: str | Path, log=print) -> dict[str, float]:
    """image_id -> proportion of the norms' observers who chose its performed expression.

    Read from Image_info.xls in `faces_dir` or its parent; {} when there is none or it cannot be
    read (the builder then says so and falls back to happy catch faces).
    """
    faces_dir = Path(faces_dir)
    sheet = next(
        (d / NORMS_INFO for d in (faces_dir, faces_dir.parent) if (d / NORMS_INFO).is_file()), None
    )
    if sheet is None:
        return {}
    import pandas as pd

    try:
        table = pd.read_excel(sheet, engine="calamine", header=None)
    except Exception as exc:  # a damaged or unexpected sheet: catches fall back, the build goes on
        log(f"note: cannot read {sheet} ({exc}); catch faces will be happy ones")
        return {}
    agreement: dict[str, float] = {}
    for row in table.itertuples(index=False):
        stem = Path(str(row[0])).stem  # the sheet names the original .tif files
        expression = expression_of(stem)
        if expression not in NORMS_CATEGORIES:
            continue
        try:
            value = float(row[6 + NORMS_CATEGORIES.index(expression)])
        except (TypeError, ValueError, IndexError):
            continue
        if value == value:  # not NaN
            agreement[stem] = value
    return agreement


def catch_candidates(
    ranked: dict[str, list[FaceFile]],
    agreement: dict[str, float],
    exclude: Iterable[str] = (),
) -> list[FaceFile]:
    """Catch faces in the order to try them: the catch expressions in turn, each face agreed on
    by >= CATCH_MIN_AGREEMENT of the norms' observers, in its performer-balanced rank order;
    faces in `exclude` (image ids already used) left out."""
    exclude = set(exclude)
    if not agreement:
        return [f for f in ranked.get("happy", []) if f.image_id not in exclude]
    pools = [
        [
            f
            for f in ranked.get(e, [])
            if f.image_id not in exclude and agreement.get(f.image_id, 0.0) >= CATCH_MIN_AGREEMENT
        ]
        for e in CATCH_EXPRESSIONS
    ]
    return [f for group in zip_longest(*pools) for f in group if f is not None]


def stimulus_id(image_id: str, method: str, seed: int) -> str:
    """Opaque and stable: the same build gives the same ids; the id does not reveal the method."""
    return "s" + hashlib.sha256(f"{seed}|{image_id}|{method}".encode()).hexdigest()[:15]


def _save_png(image: np.ndarray, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(image)).save(path, format="PNG")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _load_methods(keys: Sequence[str], untrained: bool) -> dict:
    from model.methods.registry import load_method

    return {key: load_method(key, untrained) for key in keys}


# The study's method list is read like every command line's (the one parser, in the registry):
# "all" or a comma list of METHODS keys, in registry order; ValueError names unknown keys.
resolve_methods = parse


def default_per_expression(n_conditions: int) -> int:
    """Two faces per expression per condition: with 5 expressions, 10 images per condition per
    participant, as Yoshihashi et al. (10 images per method, real included)."""
    return 2 * n_conditions


def build_stimuli(
    faces_dir: str | Path,
    out_dir: str | Path,
    *,
    methods: Sequence[str],
    per_expression: int | None = None,
    n_practice: int = 3,
    n_catch: int = 4,
    seed: int = 0,
    untrained: bool = False,
    log=print,
) -> list[StimulusRow]:
    """Align, mask and inpaint the chosen faces; write images and manifest.csv; return the rows."""
    from model.faces import FaceError, find_and_align
    from model.imageio import ImageError, load_image
    from model.masks import apply_mask

    out_dir = Path(out_dir)
    conditions = [*methods, REAL]
    k = len(conditions)
    per_expression = per_expression or default_per_expression(k)
    if per_expression % k:
        log(f"note: {per_expression} faces per expression is not a multiple of {k} conditions")
    ranked = rank_faces(scan_faces(faces_dir), seed)
    for e in EXPRESSIONS:
        if len(ranked.get(e, [])) < per_expression:
            raise ValueError(f"only {len(ranked.get(e, []))} {e} faces, need {per_expression}")
    built = _load_methods(methods, untrained)
    rows: list[StimulusRow] = []
    extra: list[dict] = []
    used: set[str] = set()

    def aligned_masked(face: FaceFile, face_seed: int):
        try:
            aligned = find_and_align(load_image(face.path))
        except (FaceError, ImageError) as exc:
            log(f"skip {face.path.name}: {getattr(exc, 'reason', exc)}")
            return None
        return aligned, apply_mask(aligned.image, aligned.landmarks, seed=face_seed)

    def store(face: FaceFile, method: str, role: str, image: np.ndarray, masked) -> None:
        sid = stimulus_id(face.image_id, method, seed)
        file = f"images/{sid}.png"
        sha = _save_png(image, out_dir / file)
        rows.append(
            StimulusRow(
                sid, face.image_id, face.expression, method, file, sha, role, face.performer
            )
        )
        extra.append(
            {
                "source": face.path.name,
                "mask_style": masked.style if masked else "",
                "mask_seed": masked.seed if masked else "",
            }
        )

    def take(candidates: list[FaceFile], n: int, role: str, conditions_for) -> None:
        got = 0
        for face in candidates:
            if got == n:
                return
            if face.image_id in used:
                continue
            face_seed = seed * 1_000_003 + len(used)
            prepared = aligned_masked(face, face_seed)
            used.add(face.image_id)
            if prepared is None:
                continue
            aligned, masked = prepared
            for method in conditions_for(got):
                if method == REAL:
                    store(face, REAL, role, aligned.image, None)
                else:
                    out = built[method].inpaint(masked.image, masked.seg)
                    store(face, method, role, aligned.fill_outside(out), masked)
            got += 1
            log(f"{role} {face.image_id} ({face.expression}) done")
        if got < n:
            raise ValueError(f"could not align enough {role} faces ({got} of {n})")

    # 1. Main faces: every condition on each, per_expression of each expression.
    for e in EXPRESSIONS:
        take(ranked[e], per_expression, "main", lambda _i: conditions)
    # 2. Practice faces: one condition each, cycling so raters see the range of quality first.
    rng = random.Random(seed + 1)
    mixed = [f for e in EXPRESSIONS for f in ranked[e]]
    rng.shuffle(mixed)
    take(mixed, n_practice, "practice", lambda i: [conditions[(i * 3 + 1) % k]])
    # 3. Catch faces: unmasked, unmistakable expression, the answers varying.
    agreement = read_agreement(faces_dir, log)
    if not agreement:
        log(f"note: no {NORMS_INFO} beside {faces_dir}: catch faces will be happy ones")
    take(catch_candidates(ranked, agreement, used), n_catch, "catch", lambda _i: [REAL])

    write_manifest(out_dir, rows, extra)
    return rows


def write_manifest(out_dir: str | Path, rows: Sequence[StimulusRow], extra=None) -> Path:
    path = Path(out_dir) / MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = extra or [{} for _ in rows]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row, more in zip(rows, extra, strict=True):
            d = asdict(row)
            writer.writerow(
                {c: d.get(c, more.get(c, "")) or more.get(c, "") for c in MANIFEST_COLUMNS}
            )
    return path


def read_manifest(stimuli_dir: str | Path) -> list[StimulusRow]:
    with (Path(stimuli_dir) / MANIFEST).open(newline="", encoding="utf-8") as fh:
        return [
            StimulusRow(
                stimulus_id=r["stimulus_id"],
                image_id=r["image_id"],
                expression=r["expression"],
                method=r["method"],
                file=r["file"],
                sha256=r["sha256"],
                role=r["role"],
                performer=r.get("performer") or None,
            )
            for r in csv.DictReader(fh)
        ]


def build_synthetic_stimuli(
    out_dir: str | Path,
    *,
    methods: Sequence[str] = ("telea", "unmask"),
    per_expression: int = 3,
    n_practice: int = 2,
    n_catch: int = 2,
    size: int = 48,
    seed: int = 0,
    expressions: Sequence[str] = EXPRESSIONS,
) -> list[StimulusRow]:
    """Tiny generated images standing in for faces (tests, load benchmark; never a real study)."""
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    conditions = [*methods, REAL]
    rows: list[StimulusRow] = []

    def add(image_id: str, expression: str, method: str, role: str) -> None:
        # Smooth colour blobs plus a little grain: PNG sizes like a face's, not like noise's.
        coarse = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8))
        smooth = np.asarray(coarse.resize((size, size), Image.BICUBIC), dtype=np.int16)
        grain = rng.integers(-6, 7, (size, size, 3), dtype=np.int16)
        image = np.clip(smooth + grain, 0, 255).astype(np.uint8)
        sid = stimulus_id(image_id, method, seed)
        file = f"images/{sid}.png"
        rows.append(
            StimulusRow(
                sid, image_id, expression, method, file, _save_png(image, out_dir / file), role
            )
        )

    for e in expressions:
        for j in range(per_expression):
            for method in conditions:
                add(f"{e}{j:02d}", e, method, "main")
    for j in range(n_practice):
        add(
            f"practice{j:02d}",
            expressions[j % len(expressions)],
            conditions[j % len(conditions)],
            "practice",
        )
    for j in range(n_catch):
        add(f"catch{j:02d}", CATCH_EXPRESSIONS[j % len(CATCH_EXPRESSIONS)], REAL, "catch")
    write_manifest(out_dir, rows)
    return rows


def register(service: StudyService, stimuli_dir: str | Path) -> int:
    """Load manifest.csv into the study database."""
    return service.register_stimuli(read_manifest(stimuli_dir), stimuli_dir)
