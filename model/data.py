"""The paired masked-face dataset: `unmask data build` (photos -> aligned face, masked face, seg,
landmarks, with a manifest row for every input file), `unmask data sheet` (a contact sheet), and
`load_split`, the reading side used by training and evaluation.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.cli import positive_int
from model.config import new_run_dir

MANIFEST_COLUMNS = (
    "id",
    "source",
    "split",
    "status",
    "reason",
    "mask_style",
    "mask_colour",
    "yaw_deg",
    "seed",
)
SPLITS = ("train", "val", "test")
OTHER_FACE_STATUS = "several_faces"
JOURNAL = "progress.jsonl"  # rows of an interrupted run, folded into manifest.csv at the end


@dataclass
class PairedSplit:
    ids: list[str]
    face: np.ndarray  # (N, 256, 256, 3) uint8 aligned ground truth
    masked: np.ndarray  # (N, 256, 256, 3) uint8 masked input
    seg: np.ndarray  # (N, 256, 256) bool, True = covered by the mask
    landmarks: np.ndarray  # (N, 68, 2) float32 on the aligned face

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class BuildConfig:
    faces: Path
    out: Path
    templates: Path | None = None
    seed: int = 0
    workers: int = 0  # 0 = every core
    limit: int | None = None


# --- deterministic per-file choices -----------------------------------------------------------


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def split_of(source: str) -> str:
    """80/10/10 by a hash of the source file name (its path relative to --faces)."""
    h = _digest("split:" + source) % 100
    return "train" if h < 80 else "val" if h < 90 else "test"


def seed_of(seed: int, source: str) -> int:
    return _digest(f"seed:{seed}:{source}") % (2**31)


def id_of(source: str) -> str:
    """Readable and unique: the sanitised file stem plus a short hash of the full relative path."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(source).name.split(".")[0])[:48] or "file"
    return f"{stem}_{hashlib.sha1(source.encode()).hexdigest()[:8]}"


# --- one file ---------------------------------------------------------------------------------


def _write_png(path: Path, image: np.ndarray) -> None:
    """Write via a temporary name so a killed run never leaves a half file that looks done."""
    import cv2

    tmp = path.with_name(path.stem + ".tmp.png")
    if image.ndim == 3:  # "up" filter + RLE: half the CPU of OpenCV's default, about as small
        arr = image[:, :, ::-1]
        params = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]
        params += [cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
    else:  # a 0/255 seg, kept 8-bit (readers expect 0/255, not PIL's mode "1")
        arr, params = image, [cv2.IMWRITE_PNG_COMPRESSION, 1]
        params += [cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
    if not cv2.imwrite(str(tmp), arr, params):
        raise OSError(f"cannot write {tmp}")
    os.replace(tmp, path)


def process_file(job: tuple[str, str, str, str | None, int]) -> tuple[dict, list | None]:
    """(path, source, out, templates, base seed) -> (manifest row, landmarks or None).
    Never raises: every failure becomes a status and a reason. Only upright faces are stored:
    `find_and_align` checks the geometry after alignment and retries turned copies, so a photo
    turned without an EXIF tag is stored upright or gets status "not_upright" with the reason."""
    from model.faces import FaceError, find_and_align
    from model.imageio import ImageError, load_image
    from model.masks import apply_mask, cached_templates

    path, source, out, templates_dir, base_seed = job
    fid = id_of(source)
    seed = seed_of(base_seed, source)
    row = dict(
        id=fid,
        source=source,
        split=split_of(source),
        status="ok",
        reason="",
        mask_style="",
        mask_colour="",
        yaw_deg="",
        seed=seed,
    )
    try:
        photo = load_image(path)
        aligned = find_and_align(photo)
        row["yaw_deg"] = f"{aligned.yaw_deg:.1f}"
        if aligned.n_other_faces:
            row.update(
                status=OTHER_FACE_STATUS,
                reason=f"{aligned.n_other_faces + 1} faces found: the subject is ambiguous",
            )
            return row, None
        templates = cached_templates(templates_dir) if templates_dir else None
        masked = apply_mask(aligned.image, aligned.landmarks, seed=seed, templates=templates)
        row.update(mask_style=masked.style, mask_colour=masked.colour)
        outp = Path(out)
        _write_png(outp / "face" / f"{fid}.png", aligned.image)
        _write_png(outp / "masked" / f"{fid}.png", masked.image)
        _write_png(outp / "seg" / f"{fid}.png", masked.seg.astype(np.uint8) * 255)
        return row, aligned.landmarks.tolist()
    except (ImageError, FaceError) as e:
        row.update(status=e.reason, reason=e.message)
    except Exception as e:  # a row even for what we did not foresee, with what went wrong
        row.update(status="error", reason=f"{type(e).__name__}: {e}")
    return row, None


# --- the builder ------------------------------------------------------------------------------


def _init_worker(templates_dir: str | None) -> None:
    """Per worker: one OpenCV thread (one process per core already) and the models loaded once."""
    import cv2

    from model.faces import face_detector, shape_predictor
    from model.masks import cached_templates

    cv2.setNumThreads(1)
    face_detector(), shape_predictor()
    if templates_dir:
        cached_templates(templates_dir)


def list_sources(faces: Path, exclude: Path | None = None) -> list[tuple[Path, str]]:
    """Every regular file under `faces` (recursively, sorted; hidden ones too): images or not,
    each gets a row. Files under `exclude` (the output folder, if it lies inside) are not inputs."""
    skip = exclude.resolve() if exclude is not None else None
    files = sorted(
        p
        for p in faces.rglob("*")
        if p.is_file() and (skip is None or skip not in p.resolve().parents)
    )
    return [(p, p.relative_to(faces).as_posix()) for p in files]


def _read_manifest(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _done(row: dict, out: Path) -> bool:
    if row.get("status") != "ok":
        return True
    return all((out / d / f"{row['id']}.png").is_file() for d in ("face", "masked", "seg"))


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def build_dataset(cfg: BuildConfig, progress: bool = True) -> dict:
    """Build (or resume) the dataset; returns the report (counts per status, processed, skipped)."""
    from multiprocessing import get_context

    from tqdm import tqdm

    # fork is fastest (workers inherit the loaded dlib models) but can deadlock the children once
    # OpenCV's or torch's thread pools have run in this process (a test session, a notebook).
    method = "forkserver" if any(m in sys.modules for m in ("cv2", "torch")) else "fork"
    faces, out = Path(cfg.faces), Path(cfg.out)
    if not faces.is_dir():
        raise FileNotFoundError(f"--faces {faces} is not a folder")
    for d in ("face", "masked", "seg"):
        (out / d).mkdir(parents=True, exist_ok=True)
    settings = {"seed": cfg.seed, "templates": str(cfg.templates) if cfg.templates else None}
    report_path = out / "report.json"
    if report_path.is_file():
        old = json.loads(report_path.read_text()).get("settings")
        if old and old != settings:
            raise ValueError(f"{out} was built with {old}, not {settings}: use another --out")

    sources = list_sources(faces, exclude=out)
    if cfg.limit is not None:
        sources = sources[: cfg.limit]
    # What earlier runs finished: the manifest, plus the journal of an interrupted run.
    rows: dict[str, dict] = {r["source"]: r for r in _read_manifest(out / "manifest.csv")}
    landmarks: dict[str, np.ndarray] = {}
    if (out / "landmarks.npz").is_file():
        with np.load(out / "landmarks.npz") as z:
            landmarks = {k: z[k] for k in z.files}
    journal = out / JOURNAL
    if journal.is_file():
        for line in journal.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
            rows[rec["row"]["source"]] = rec["row"]
            if rec["landmarks"] is not None:
                landmarks[rec["row"]["id"]] = np.asarray(rec["landmarks"], np.float32)
    todo = [
        (str(p), s)
        for p, s in sources
        if not (
            s in rows
            and _done(rows[s], out)
            and (rows[s]["status"] != "ok" or rows[s]["id"] in landmarks)
        )
    ]
    skipped = len(sources) - len(todo)
    if not todo and (out / "manifest.csv").is_file() and not journal.is_file():
        print(f"nothing to do: all {len(sources)} files in {out} are done")
        report = json.loads(report_path.read_text())
        report.update(processed=0, skipped=skipped)
        return report

    workers = cfg.workers or os.cpu_count() or 1
    tpl = str(cfg.templates) if cfg.templates else None
    jobs = [(p, s, str(out), tpl, cfg.seed) for p, s in todo]
    t0 = time.perf_counter()
    with open(journal, "a") as jf:
        if workers == 1 or len(jobs) <= 1:
            results = map(process_file, jobs)
            pool = None
        else:
            if method == "fork":
                from model.faces import face_detector, shape_predictor

                face_detector(), shape_predictor()  # dlib only: loaded once, inherited
            pool = get_context(method).Pool(workers, initializer=_init_worker, initargs=(tpl,))
            results = pool.imap_unordered(
                process_file, jobs, chunksize=max(1, min(16, len(jobs) // (workers * 8)))
            )
        try:
            for row, lm in tqdm(
                results, total=len(jobs), disable=not progress, desc="faces", unit="file"
            ):
                rows[row["source"]] = row
                if lm is not None:
                    landmarks[row["id"]] = np.asarray(lm, np.float32)
                jf.write(json.dumps({"row": row, "landmarks": lm}) + "\n")
                jf.flush()
        finally:
            if pool is not None:
                pool.close()
                pool.join()
    seconds = time.perf_counter() - t0

    ordered = sorted(rows.values(), key=lambda r: r["source"])
    ok_ids = {r["id"] for r in ordered if r["status"] == "ok"}

    def write_manifest(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
            w.writeheader()
            w.writerows({k: r.get(k, "") for k in MANIFEST_COLUMNS} for r in ordered)

    def write_landmarks(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **{k: v for k, v in sorted(landmarks.items()) if k in ok_ids})

    _write_atomic(out / "landmarks.npz", write_landmarks)
    _write_atomic(out / "manifest.csv", write_manifest)
    counts: dict[str, int] = {}
    for r in ordered:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    splits = {s: sum(1 for r in ordered if r["status"] == "ok" and r["split"] == s) for s in SPLITS}
    report = {
        "total": len(ordered),
        "counts": dict(sorted(counts.items())),
        "ok_per_split": splits,
        "processed": len(jobs),
        "skipped": skipped,
        "seconds": round(seconds, 2),
        "files_per_second": round(len(jobs) / seconds, 2) if seconds > 0 else None,
        "workers": workers,
        "settings": settings,
    }
    _write_atomic(report_path, lambda tmp: tmp.write_text(json.dumps(report, indent=2) + "\n"))
    journal.unlink(missing_ok=True)
    return report


# --- reading ----------------------------------------------------------------------------------


def load_split(data_dir: str | Path, split: str, limit: int | None = None) -> PairedSplit:
    """The `ok` rows of one split, in manifest order, as numpy arrays."""
    import cv2

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    root = Path(data_dir)
    if not (root / "manifest.csv").is_file():
        raise FileNotFoundError(f"{root / 'manifest.csv'} not found: run `unmask data build` first")
    rows = [
        r
        for r in _read_manifest(root / "manifest.csv")
        if r["status"] == "ok" and r["split"] == split
    ]
    rows = rows[:limit] if limit is not None else rows
    n = len(rows)
    face = np.empty((n, 256, 256, 3), np.uint8)
    masked = np.empty((n, 256, 256, 3), np.uint8)
    seg = np.empty((n, 256, 256), bool)
    lms = np.empty((n, 68, 2), np.float32)

    def read(path: Path, flags: int) -> np.ndarray:
        img = cv2.imread(str(path), flags)
        if img is None:
            raise FileNotFoundError(f"{path} is missing or unreadable (rebuild the dataset)")
        return img

    with np.load(root / "landmarks.npz") as z:
        for i, r in enumerate(rows):
            face[i] = read(root / "face" / f"{r['id']}.png", cv2.IMREAD_COLOR)[:, :, ::-1]
            masked[i] = read(root / "masked" / f"{r['id']}.png", cv2.IMREAD_COLOR)[:, :, ::-1]
            seg[i] = read(root / "seg" / f"{r['id']}.png", cv2.IMREAD_GRAYSCALE) > 127
            lms[i] = z[r["id"]]
    return PairedSplit(
        ids=[r["id"] for r in rows], face=face, masked=masked, seg=seg, landmarks=lms
    )


# --- contact sheet ----------------------------------------------------------------------------


MAX_SHEET = 256  # triples on one contact sheet (a 4-column PNG of ~64 rows)


def contact_sheet(
    data_dir: str | Path, out: str | Path, n: int = 16, seed: int = 0, tile: int = 128
) -> Path:
    """A PNG grid of random ok samples: face | masked | seg (white = covered), labelled."""
    import cv2

    root = Path(data_dir)
    rows = [r for r in _read_manifest(root / "manifest.csv") if r["status"] == "ok"]
    if not rows:
        raise ValueError(f"{root} has no ok rows to show")
    rng = np.random.default_rng(seed)
    pick = [rows[i] for i in sorted(rng.choice(len(rows), size=min(n, len(rows)), replace=False))]
    cols = 2 if len(pick) > 4 else 1
    cols = 4 if len(pick) > 12 else cols
    triples = []
    for r in pick:
        face = cv2.imread(str(root / "face" / f"{r['id']}.png"))
        masked = cv2.imread(str(root / "masked" / f"{r['id']}.png"))
        seg = cv2.imread(str(root / "seg" / f"{r['id']}.png"), cv2.IMREAD_GRAYSCALE) > 127
        seg_rgb = np.repeat(seg[:, :, None].astype(np.uint8) * 255, 3, axis=2)
        trip = np.hstack(
            [
                cv2.resize(x, (tile, tile), interpolation=cv2.INTER_AREA)
                for x in (face, masked, seg_rgb)
            ]
        )
        style, colour = r["mask_style"], r["mask_colour"]
        if style.startswith("template:"):  # "template:N95" "template" -> "N95 template"
            style, colour = (
                f"{style.removeprefix('template:')} template",
                colour.replace("template", "").strip(),
            )
        label = f"{style} {colour}".strip()[:40]
        cv2.putText(
            trip,
            label,
            (3, tile - 5),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.35,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
        triples.append(np.pad(trip, ((2, 2), (2, 2), (0, 0)), constant_values=255))
    while len(triples) % cols:
        triples.append(np.full_like(triples[0], 255))
    sheet = np.vstack([np.hstack(triples[i : i + cols]) for i in range(0, len(triples), cols)])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), sheet)
    return out


# --- CLI --------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="{build,sheet}", required=True)
    b = sub.add_parser(
        "build", help="photos -> aligned faces, masked faces, segs, landmarks, manifest"
    )
    b.add_argument(
        "--faces", type=Path, required=True, help="folder of photos (searched recursively)"
    )
    b.add_argument("--out", type=Path, required=True, help="dataset folder to write (resumable)")
    b.add_argument(
        "--templates", type=Path, default=None, help="MaskTheFace masks folder (masks.cfg)"
    )
    b.add_argument(
        "--seed", type=int, default=0, help="base seed for masks (per-file seeds derive from it)"
    )
    b.add_argument("--workers", type=int, default=0, help="processes (default: every core)")
    b.add_argument(
        "--limit", type=positive_int, default=None, help="only the first N files (sorted)"
    )
    s = sub.add_parser("sheet", help="contact sheet of random face / masked / seg triples")
    s.add_argument("--data", type=Path, required=True, help="dataset folder made by `data build`")
    s.add_argument(
        "--out",
        type=Path,
        default=None,
        help="PNG file to write (default: dataset_sheet.png in a new runs/sheet/<UTC time>/)",
    )
    s.add_argument(
        "--n", type=positive_int, default=16, help=f"triples to show (at most {MAX_SHEET})"
    )
    s.add_argument("--seed", type=int, default=0, help="which random triples")


def run(args: argparse.Namespace) -> int:
    if args.data_command == "build":
        cfg = BuildConfig(args.faces, args.out, args.templates, args.seed, args.workers, args.limit)
        report = build_dataset(cfg)
        print(
            json.dumps(
                {k: report[k] for k in ("total", "counts", "processed", "skipped")}, indent=None
            )
        )
        return 0
    if args.n > MAX_SHEET:
        raise SystemExit(f"unmask data sheet: --n {args.n}: at most {MAX_SHEET} triples a sheet")
    if args.out is not None and (args.out.is_dir() or args.out.suffix.lower() != ".png"):
        raise SystemExit(f"unmask data sheet: --out {args.out} must be a .png file name")
    try:
        out = args.out or new_run_dir("sheet") / "dataset_sheet.png"
        path = contact_sheet(args.data, out, n=args.n, seed=args.seed)
    except ValueError as err:  # no ok rows
        raise SystemExit(f"unmask data sheet: {err}") from None
    print(f"wrote {path}")
    return 0
