"""`unmask eval`: every method on a dataset split -> the papers' Table 2 (method x metric), a
training run's checkpoints -> Table 1 (metric by step), and the qualitative figures.

Rows: the `masked` input first (the floor any method must beat), then the registry's order.
Intervals: mean +- a t-based 95% confidence interval (t_{0.975, n-1} * sd / sqrt(n), ddof 1).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import math
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from model import metrics as M
from model.cli import positive_int
from model.config import MASKED, new_run_dir, shared_data_dir
from model.data import load_split
from model.faces import OUTSIDE_FILL, inside_from_fill
from model.methods.registry import METHODS, ordered, parse
from model.run_folder import RunFolder

# The columns of Tables 1 and 2, in order, from the one metrics table.
METRICS = M.OUTPUT_METRICS
FIGURE_ROWS = 8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Writes table2.md/.csv and per_image.csv (or, with --run, table1.md/.csv and "
        "table1_per_image.csv) under --out, and qualitative_synthetic.png / qualitative_real.png "
        "under --figures. By default both go to a new run folder, runs/eval/<UTC time>/ (figures "
        "in its figures/), never over earlier results; to update the committed ones, say so: "
        "--out results/metrics --figures results/figures. Rows: the masked input first (the floor), then the registry's order; "
        "values are means with t-based 95% confidence intervals. Methods that cannot be loaded "
        "(no weights yet) are skipped and named in the table notes."
    )
    parser.add_argument(
        "--data", type=Path, help="paired dataset folder made by `unmask data build`"
    )
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument(
        "--methods",
        default="all",
        help="'all' or comma-separated method keys (the masked floor is always added)",
    )
    parser.add_argument(
        "--limit", type=positive_int, default=None, help="evaluate only the first N images"
    )
    parser.add_argument("--batch", type=int, default=16, help="images per inpaint_batch call")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for the tables (default: a new runs/eval/<UTC time>/)",
    )
    parser.add_argument(
        "--figures",
        type=Path,
        default=None,
        help="folder for the qualitative grids (default: <out>/figures)",
    )
    parser.add_argument("--no-figures", action="store_true", help="skip the qualitative grids")
    parser.add_argument(
        "--real-photos",
        type=Path,
        default=None,
        help="real masked photos for qualitative_real.png (default: <shared data>/real-masked/images)",
    )
    parser.add_argument(
        "--no-face-metrics",
        action="store_true",
        help="skip the dlib identity distance and landmark NME (the slow, CPU-only part)",
    )
    parser.add_argument(
        "--keep-rows",
        type=Path,
        default=None,
        metavar="DIR",
        help="re-score only --methods and take every other method's row from an earlier Table 2 "
        "in DIR (its table2.csv and per_image.csv, same split and images; e.g. results/metrics "
        "after retraining one method); the notes say which rows were kept and from when",
    )
    parser.add_argument(
        "--device", default=None, help="torch device (default: cuda when available, else cpu)"
    )
    parser.add_argument(
        "--run",
        type=Path,
        default=None,
        help="a training run folder (runs/<name>): evaluate each checkpoints/step_*.pt -> table1.md/csv",
    )
    parser.add_argument(
        "--weights-dir",
        type=Path,
        default=None,
        help="read the networks' weights from this folder instead of model/weights (e.g. a "
        "retrain's, to compare before replacing the shipped ones)",
    )
    parser.add_argument(
        "--segmenter",
        action="store_true",
        help="evaluate the mask segmenter instead: IoU on --split -> segmenter.md/json under --out, "
        "and its predictions on real masked photos -> segmenter_real.png under --figures",
    )
    parser.add_argument(
        "--expressions",
        action="store_true",
        help="the machine rater instead: an expression classifier (performers held out) on every "
        "method's output -> expression_proxy.md/.csv under --out, expression_proxy.png under "
        "--figures (model/expression_proxy.py; a proxy, not people)",
    )
    parser.add_argument(
        "--untrained",
        nargs="?",
        const="compact",
        default=None,
        metavar="PRESET",
        help="TEST ONLY: seeded randomly initialised networks (and segmenter) of a preset's widths "
        "(default compact; 'tiny' for fast tests) instead of shipped weights; the numbers are "
        "meaningless, this only exercises the pipeline before weights exist",
    )
    from model.expression_proxy import add_arguments as add_proxy_arguments

    add_proxy_arguments(parser)


# ---- statistics ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    ci95: float  # half-width of the t-based 95% interval; nan when n < 2


def summarise(values: Sequence[float]) -> Summary:
    """Mean and t-based 95% CI half-width over the finite values (PSNR is inf on exact copies)."""
    from scipy import stats

    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if x.size == 0:
        return Summary(0, math.nan, math.nan)
    if x.size == 1:
        return Summary(1, float(x[0]), math.nan)
    half = float(stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return Summary(int(x.size), float(x.mean()), half)


def machine() -> str:
    """Where the numbers were measured: OS, CPU model, GPU name, torch version."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.system()} {platform.machine()}, {cpu}, {gpu}, torch {torch.__version__}"


# ---- running one method over the split ------------------------------------------------------


@dataclass
class MethodResult:
    key: str
    label: str
    rows: list[dict] = field(default_factory=list)  # per image: id + one value per metric
    ms_per_image: float = math.nan
    note: str = ""  # why it was skipped, when it was
    budget: str = ""  # the compute its weights were made with (from the model card)
    budget_given: str = ""  # the card's budget.given ("8000img", "30m"; "" for none)
    wall_s: float | None = None  # the training run's wall time (card)
    hardware: str = ""  # where it trained (card): device, name, processes, CPU threads


def attach_card(r: MethodResult, card: dict) -> None:
    """Fill a row's training-compute fields from its model card ({} for none)."""
    r.budget = budget_of(card)
    b = card.get("budget") or {}
    given = b.get("given", "")
    r.budget_given = "" if given in ("", "0 steps") or card.get("untrained") else given
    r.wall_s = b.get("wall_time_s", card.get("wall_time_s"))
    hw = card.get("hardware") or {}
    parts = [hw.get("name") or hw.get("device", "")]
    if hw.get("processes", 1) > 1:
        parts.append(f"{hw['processes']} processes")
    if hw.get("device") == "cpu" and hw.get("cpu_threads"):
        parts.append(f"{hw['cpu_threads']} thread{'s' if hw['cpu_threads'] > 1 else ''}")
    r.hardware = ", ".join(p for p in [*parts, b.get("precision", "")] if p)


def budget_of(card: dict) -> str:
    """One line from a model card: images seen, wall time, hardware and precision of the run."""
    if not card or card.get("untrained"):
        return ""
    b = card.get("budget", {})
    hw = card.get("hardware", {})
    where = hw.get("device", "?")
    if hw.get("device") == "cpu" and hw.get("cpu_threads"):
        where += f" ({hw['cpu_threads']} thread{'s' if hw['cpu_threads'] > 1 else ''})"
    images = b.get("images_seen", card.get("images_seen"))
    wall = b.get("wall_time_s", card.get("wall_time_s"))
    if not images and card.get("iterations") == 0:  # a closed-form fit (eigenface)
        parts = [f"closed-form fit on {card.get('data', {}).get('train_faces', '?'):,} faces"]
    else:
        parts = [f"{images:,} images seen" if images is not None else "images seen unknown"]
    if wall is not None:
        parts.append(f"{wall / 60:.0f} min")
    parts.append(where)
    if b.get("precision"):
        parts.append(b["precision"])
    if b.get("given") and b["given"] != "0 steps":
        parts.append(f"budget {b['given']}")
    return ", ".join(parts)


def equal_budget_note(given: list[MethodResult], slack_s: float = 30.0) -> str:
    """The Table 2 note when the trained rows had an equal budget, else "". Equal means the same
    `unmask train --budget` on every card, or an equal wall clock: one time budget T on the cards that
    have one, and every row trained on the same hardware in at most T (+ `slack_s` for the step,
    validation and export running when the clock ran out), the rows with an images budget included."""
    from model.train_config import parse_budget

    if len(given) < 2:
        return ""
    keys = ", ".join(f"`{r.key}`" for r in given)
    if len({r.budget_given for r in given}) == 1:
        return (
            f"- **Equal budget**: the {len(given)} trained rows ({keys}) were each given the same "
            f"training budget, `{given[0].budget_given}` (`unmask train --budget`), as their model "
            "cards record."
        )
    timed = [r for r in given if parse_budget(r.budget_given)[0]]
    caps = {parse_budget(r.budget_given)[0] for r in timed}
    if len(caps) != 1 or len({r.hardware for r in given}) != 1:
        return ""
    cap = caps.pop()
    if any(r.wall_s is None or r.wall_s > cap + slack_s for r in given):
        return ""
    walls = ", ".join(f"`{r.key}` {r.wall_s / 60:.1f}" for r in given)
    rest = [r for r in given if r not in timed]
    return (
        f"- **Equal budget (wall clock)**: the {len(given)} trained rows ({keys}) each trained for "
        f"at most {cap / 60:g} minutes on the same machine ({given[0].hardware}): "
        f"{', '.join(f'`{r.key}`' for r in timed)} given `--budget {timed[0].budget_given}`"
        + "".join(f", `{r.key}` `--budget {r.budget_given}`, which ended sooner" for r in rest)
        + f". Minutes each: {walls} (model cards)."
    )


def face_refs(split, progress: bool = True) -> list[M.FaceRef]:
    from tqdm import tqdm

    return [
        M.FaceRef.of(real, lms)
        for real, lms in tqdm(
            zip(split.face, split.landmarks, strict=True),
            total=len(split.ids),
            desc="real faces (dlib)",
            disable=not progress,
            file=sys.stderr,
        )
    ]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def as_delivered(
    out: torch.Tensor, real: np.ndarray, mask: torch.Tensor
) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """What a user gets from a method, and the part of the hole that can be scored.

    `out` (B, 3, H, W) in [-1, 1]; `real` (B, H, W, 3) uint8, the aligned ground-truth faces;
    `mask` (B, 1, H, W) {0, 1}. Returns the output quantised to uint8 as a saved image (B, H, W, 3)
    with the pixels outside the photo set back to the flat fill (`AlignedFace.fill_outside`, as
    the pipeline does for every real photo), the same as a tensor in [-1, 1] on `out`'s device,
    and the mask without those pixels: they hold no ground truth (a synthetic mask drawn across
    the photo's edge covers them in the input, but the real face there is unknown), so they are
    not part of the hole that MSE (mask) averages over. The photo's extent is read back from the
    fill of `real` (`model.faces.inside_from_fill`).
    """
    inside = np.stack([inside_from_fill(f) for f in real])  # (B, H, W) bool
    out_u8 = M.to_uint8(out)  # (B, H, W, 3)
    out_u8[~inside] = OUTSIDE_FILL
    known = mask * torch.from_numpy(inside[:, None].astype(np.float32)).to(mask.device)
    return out_u8, M.to_tensor(out_u8).to(out.device), known


def evaluate_outputs(
    key: str,
    label: str,
    split,
    infer: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None,
    *,
    device: torch.device,
    batch: int,
    refs: list[M.FaceRef] | None,
    keep: Sequence[int] = (),
    progress: bool = True,
) -> tuple[MethodResult, dict[int, np.ndarray]]:
    """Run `infer` (None = the masked input itself) batch by batch and score every output.

    Returns the per-image rows and the uint8 outputs of the `keep` indices (for the figures).
    Inference time excludes one untimed warm-up batch (CUDA kernels, cuDNN autotune).
    """
    from tqdm import tqdm

    result = MethodResult(key, label)
    kept: dict[int, np.ndarray] = {}
    keep = set(keep)
    n = len(split.ids)
    seconds = 0.0
    for start in tqdm(
        range(0, n, batch), desc=f"{key:>14}", unit="batch", disable=not progress, file=sys.stderr
    ):
        stop = min(start + batch, n)
        real = M.to_tensor(split.face[start:stop]).to(device)  # (B, 3, H, W) [-1, 1]
        masked = M.to_tensor(split.masked[start:stop]).to(device)
        seg = split.seg[start:stop][:, None].astype(np.float32)  # (B, 1, H, W) {0, 1}
        mask = torch.from_numpy(seg).to(device)
        if infer is None:
            out = masked
        else:
            with torch.no_grad():
                if start == 0:
                    infer(masked, mask)
                _sync(device)
                t0 = time.perf_counter()
                out = infer(masked, mask)
                _sync(device)
                seconds += time.perf_counter() - t0
        out_u8, out, known = as_delivered(out, split.face[start:stop], mask)
        values = {m.name: m.batch(out, real, known).cpu().tolist() for m in METRICS if m.batch}
        for j, i in enumerate(range(start, stop)):
            row = {"id": split.ids[i], "method": key}
            for m in METRICS:  # in table order: the per-image CSV's columns
                if m.batch:
                    row[m.name] = values[m.name][j]
                else:  # a face metric (dlib, per image); NaN when they are switched off
                    row[m.name] = math.nan if refs is None else m.face(out_u8[j], refs[i])
            result.rows.append(row)
            if i in keep:
                kept[i] = out_u8[j]
    if infer is not None and n:
        result.ms_per_image = 1000.0 * seconds / n
    return result, kept


def figure_outputs(
    infer: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    split,
    indices: Sequence[int],
    device: torch.device,
) -> dict[int, np.ndarray]:
    """A method's outputs (H, W, 3) uint8, as delivered, on the split's faces `indices` only (the
    qualitative grid's faces of a row kept with --keep-rows)."""
    idx = list(indices)
    if not idx:
        return {}
    masked = M.to_tensor(split.masked[idx]).to(device)
    mask = torch.from_numpy(split.seg[idx][:, None].astype(np.float32)).to(device)
    with torch.no_grad():
        out = infer(masked, mask)
    out_u8, _, _ = as_delivered(out, split.face[idx], mask)
    return dict(zip(idx, out_u8, strict=True))


def load_methods(
    keys: Sequence[str],
    *,
    untrained: str | None,
    device: torch.device,
    weights_dir: Path | None = None,
):
    """Build each method; a method that cannot be built (weights not trained yet, a missing
    module) is reported as a note instead of stopping the evaluation."""
    loaded, notes = {}, {}
    for key in keys:
        spec = METHODS[key]
        # Only the networks take a device (and, for tests, untrained=True); telea takes neither.
        kwargs: dict = {}
        if spec.trainable:
            kwargs = {"device": device}
            if weights_dir is not None:
                kwargs["weights_dir"] = weights_dir
            if untrained:
                kwargs |= {"untrained": True, "preset": untrained}
        try:
            loaded[key] = spec.load(**kwargs)
        except Exception as e:  # noqa: BLE001 - any load failure becomes a table note
            notes[key] = f"{type(e).__name__}: {e}"
    return loaded, notes


def parse_methods(text: str) -> list[str]:
    """--methods ("all" or comma-separated keys) in registry order; exits naming unknown keys."""
    try:
        return parse(text)
    except ValueError as err:
        raise SystemExit(f"unmask: {err}") from err


# ---- tables ------------------------------------------------------------------------------------


def _fmt(s: Summary, decimals: int) -> str:
    if s.n == 0:
        return "–"
    if math.isnan(s.ci95):
        return f"{s.mean:.{decimals}f}"
    return f"{s.mean:.{decimals}f} ± {s.ci95:.{decimals}f}"


def _summary_columns(rows: list[dict]) -> dict[str, object]:
    """mean, ci95 half-width and n for each metric, as flat CSV columns."""
    out: dict[str, object] = {}
    for m in METRICS:
        s = summarise([r[m.name] for r in rows])
        out[f"{m.name}_mean"], out[f"{m.name}_ci95"], out[f"{m.name}_n"] = s.mean, s.ci95, s.n
    return out


def _write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def write_table2(out_dir: Path, results: list[MethodResult], context: dict[str, str]) -> list[dict]:
    rows = []
    for r in results:
        rows.append(
            {
                "method": r.key,
                "label": r.label,
                "n": len(r.rows),
                **_summary_columns(r.rows),
                "ms_per_image": r.ms_per_image,
                "status": "skipped" if r.note else "ok",
                "note": r.note,
                "machine": context["machine"],
            }
        )
    _write_csv(out_dir / "table2.csv", rows)
    _write_csv(out_dir / "per_image.csv", [row for r in results for row in r.rows])

    header = ["Method", "n", *(m.header for m in METRICS), "ms / image"]
    lines = [
        f"# Table 2: methods on the {context['split']} split",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for r in results:
        if r.note:
            continue
        cells = [r.label if r.key != MASKED else "Masked input (floor)", str(len(r.rows))]
        cells += [_fmt(summarise([row[m.name] for row in r.rows]), m.decimals) for m in METRICS]
        cells.append("–" if math.isnan(r.ms_per_image) else f"{r.ms_per_image:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *_notes(context, results)]
    (out_dir / "table2.md").write_text("\n".join(lines) + "\n")
    return rows


def _notes(context: dict[str, str], results: list[MethodResult]) -> list[str]:
    notes = [
        "Notes:",
        f"- Data: `{context['data']}`, split `{context['split']}`; evaluated {context['when']} on "
        f"{context['machine']} (device `{context['device']}`).",
        "- Values: mean ± half-width of the t-based 95% confidence interval over images "
        "(t(0.975, n-1) · sd / √n); n = images with a finite value (PSNR is infinite on an exact copy).",
        # The definitions from the metrics table: the tensor metrics, then the dlib face metrics.
        "- " + " ".join(m.definition for m in METRICS if m.batch),
        "- " + " ".join(m.definition for m in METRICS if m.face),
        "- Scored as delivered: the output as uint8 with the pixels outside the photo (where the "
        "aligned square runs past it) set back to the flat grey fill, as the pipeline returns "
        "every real photo; those pixels hold no ground truth and are not part of the mask that "
        "MSE (mask) averages over.",
    ]
    if context.get("run") is None:
        notes.append(
            "- Rows: the masked input first (the floor), then the method registry's order."
        )
    notes.append(
        "- ms / image: inference only (batched, one untimed warm-up batch), excluding the metrics."
    )
    if context.get("kept"):
        notes.append(f"- Rows: {context['kept']}.")
    if context.get("untrained"):
        notes.append("- **TEST RUN with untrained networks: the numbers are meaningless.**")
    if context.get("face_metrics") == "off":
        notes.append("- Identity and landmark metrics were not computed (`--no-face-metrics`).")
    budgets = [r for r in results if r.budget]
    if note := equal_budget_note([r for r in results if r.budget_given]):
        notes.append(note)
    if budgets:
        notes.append(
            "- Training compute behind each learned row (from its model card; the rows are NOT an "
            "equal-budget comparison unless these agree):"
        )
        notes += [f"  - `{r.key}`: {r.budget}" for r in budgets]
    for r in results:
        if r.note:
            notes.append(f"- Skipped `{r.key}` ({r.label}): {r.note}")
    return notes


def write_table1(
    out_dir: Path, results: list[tuple[int, MethodResult]], context: dict[str, str]
) -> None:
    rows = [
        {"step": step, "n": len(r.rows), **_summary_columns(r.rows), "ms_per_image": r.ms_per_image}
        for step, r in results
    ]
    _write_csv(out_dir / "table1.csv", rows)
    _write_csv(
        out_dir / "table1_per_image.csv",
        [{"step": step, **row} for step, r in results for row in r.rows],
    )
    # As the paper's Table 1: one row per metric, one column per checkpoint.
    steps = [step for step, _ in results]
    lines = [
        f"# Table 1: metrics by training step, run `{context['run']}` (method `{context['method']}`)",
        "",
        "| Metric | " + " | ".join(f"step {s}" for s in steps) + " |",
        "|---|" + "---:|" * len(steps),
    ]
    for m in METRICS:
        cells = [_fmt(summarise([row[m.name] for row in r.rows]), m.decimals) for _, r in results]
        lines.append(f"| {m.header} | " + " | ".join(cells) + " |")
    lines += ["", *_notes(context, [])]
    (out_dir / "table1.md").write_text("\n".join(lines) + "\n")


# ---- figures -----------------------------------------------------------------------------------


def grid_figure(
    path: Path, columns: list[str], rows: list[list[np.ndarray]], cell: int = 192
) -> None:
    """A labelled grid: one column per entry of `columns`, one row per face (uint8 RGB images)."""
    from PIL import Image, ImageDraw, ImageFont

    head, pad = 30, 4
    width = len(columns) * (cell + pad) + pad
    height = head + len(rows) * (cell + pad) + pad
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=14)
    for c, name in enumerate(columns):
        x = pad + c * (cell + pad)
        text = name
        while draw.textlength(text, font=font) > cell and len(text) > 4:
            text = text[:-2] + "…" if not text.endswith("…") else text[:-3] + "…"
        w = draw.textlength(text, font=font)
        draw.text((x + (cell - w) / 2, 8), text, fill="black", font=font)
        for r, images in enumerate(rows):
            tile = Image.fromarray(images[c]).resize((cell, cell), Image.Resampling.LANCZOS)
            canvas.paste(tile, (x, head + r * (cell + pad)))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, optimize=True)


def figure_indices(n: int) -> list[int]:
    """FIGURE_ROWS test faces spread evenly over the split (deterministic)."""
    return sorted(set(np.linspace(0, n - 1, min(n, FIGURE_ROWS)).round().astype(int).tolist()))


def synthetic_figure(
    path: Path, split, results: list[MethodResult], kept: dict[str, dict[int, np.ndarray]]
) -> None:
    idx = figure_indices(len(split.ids))
    shown = [r for r in results if not r.note and r.key != MASKED]
    columns = ["Input (masked)", *(r.label for r in shown), "Real"]
    rows = [[split.masked[i], *(kept[r.key][i] for r in shown), split.face[i]] for i in idx]
    grid_figure(path, columns, rows)


def _overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = image.astype(np.float32)
    out[mask] = 0.5 * out[mask] + 0.5 * np.array([255, 0, 255], np.float32)
    return out.astype(np.uint8)


def real_figure(path: Path, photos: Path, methods: dict, *, untrained: str | None) -> str:
    """Real masked photos: align, find the mask region as the pipeline does (segmenter + the final-
    region rule; photos answered "no mask" are skipped), run each method (no ground truth).

    Returns a message saying what was drawn or why not.
    """
    from model.faces import FaceError, find_and_align
    from model.imageio import ImageError, load_image
    from model.segmenter import find_mask_region, load_segmenter

    files = sorted(p for p in photos.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        return f"no photos in {photos}"
    try:
        segmenter = (
            load_segmenter(untrained=True, preset=untrained) if untrained else load_segmenter()
        )
    except Exception as e:  # noqa: BLE001 - no segmenter weights yet: skip the figure, say why
        return f"real-photo figure skipped: segmenter unavailable ({type(e).__name__}: {e})"
    rows = []
    # Every k-th photo, in file-name order, so the 8 are spread over the folder yet reproducible.
    # (then the rest in order, each photo once, until FIGURE_ROWS faces are found).
    order = list(dict.fromkeys(files[:: max(1, len(files) // (4 * FIGURE_ROWS))] + files))
    for p in order:
        if len(rows) == FIGURE_ROWS:
            break
        try:
            aligned = find_and_align(load_image(p))
        except (FaceError, ImageError):
            continue
        if aligned.n_other_faces:  # groups: the grid is about one face a photo
            continue
        face = aligned.image
        region = find_mask_region(segmenter, face, aligned.landmarks, aligned.inside)
        if not region.found:  # the pipeline leaves such a photo unchanged: nothing to compare
            continue
        mask = region.hole  # what the pipeline inpaints (the region and its rim)
        # As the demo shows them: the region and the results only inside the photo (the hole runs
        # past its edge for the feathered paste-back; what a method paints there is not shown).
        outputs = (aligned.fill_outside(m.inpaint(face, mask)) for m in methods.values())
        rows.append([face, _overlay(face, mask & aligned.inside), *outputs])
    if not rows:
        return f"real-photo figure skipped: no face found in {photos}"
    columns = ["Photo (aligned)", "Predicted mask", *(METHODS[k].label for k in methods)]
    grid_figure(path, columns, rows)
    return f"{path} ({len(rows)} photos)"


# ---- entry points ------------------------------------------------------------------------------


def kept_results(folder: Path, ids: Sequence[str], skip: Sequence[str]) -> tuple[list, str]:
    """The rows of an earlier Table 2 (folder/table2.csv + per_image.csv) for the methods not in
    `skip`, as MethodResults with their per-image values; and when/where that table was made
    (its table2.md's Data note). Raises SystemExit with the reason when the folder has no table
    or its images are not `ids` (another split, --limit or dataset build)."""
    table_csv, per_image_csv = folder / "table2.csv", folder / "per_image.csv"
    if not (table_csv.is_file() and per_image_csv.is_file()):
        raise SystemExit(f"--keep-rows {folder}: no table2.csv and per_image.csv there")
    with open(table_csv, newline="") as f:
        table = [r for r in csv.DictReader(f) if r["status"] == "ok" and r["method"] not in skip]
    with open(per_image_csv, newline="") as f:
        per_image = list(csv.DictReader(f))
    metric_names = [m.name for m in METRICS]
    out = []
    for row in table:
        rows = [
            {"id": r["id"], "method": r["method"], **{k: float(r[k]) for k in metric_names}}
            for r in per_image
            if r["method"] == row["method"]
        ]
        if sorted(r["id"] for r in rows) != sorted(ids):
            raise SystemExit(
                f"--keep-rows {folder}: its `{row['method']}` rows are not the {len(ids)} images "
                "evaluated now (another split, --limit or dataset build); re-score all methods"
            )
        key = row["method"]
        label = METHODS[key].label if key in METHODS else row["label"]
        result = MethodResult(key, label, rows, float(row["ms_per_image"]))
        if key in METHODS and METHODS[key].trainable:
            attach_card(result, _shipped_card(key))
        out.append(result)
    return out, _kept_when(folder / "table2.md", [r.key for r in out])


def _kept_when(md: Path, keys: Sequence[str]) -> str:
    """When the rows `keys` of the earlier table `md` were scored: its Data note's time, or, for
    rows that table itself kept from still earlier ones, the time its Rows note gives each of them.
    The answer is the first key's time, then "; `key`, `key` time" for every other time."""
    when, earlier = "at an earlier time", {}
    if md.is_file():
        for line in md.read_text().splitlines():
            if line.startswith("- Data:") and "evaluated " in line:
                when = line.split("evaluated ", 1)[1].split(" (device")[0]
            elif line.startswith("- Rows: rows of ") and " kept from " in line:
                earlier = _rows_note_times(line)
    times: dict[str, list[str]] = {}
    for key in keys:
        times.setdefault(earlier.get(key, when), []).append(key)
    parts = [
        t if i == 0 else f"{', '.join(f'`{k}`' for k in ks)} {t}"
        for i, (t, ks) in enumerate(times.items())
    ]
    return "; ".join(parts)


def _rows_note_times(line: str) -> dict[str, str]:
    """{method key: time scored} from a table2.md Rows note written by `unmask eval --keep-rows`:
    "rows of `a`, `b`, `c` kept from ... (evaluated T1; `c` T2; `unmask eval --keep-rows`)"."""
    kept = line.split(" kept from ", 1)[0].split("`")[1::2]
    segments = line.split("(evaluated ", 1)[1].split("; `unmask eval", 1)[0].split("; ")
    out = dict.fromkeys(kept, segments[0])
    for seg in segments[1:]:
        names, _, time = seg.rpartition("` ")
        for key in (names + "`").split("`")[1::2]:
            out[key] = time
    return out


def _shipped_card(key: str) -> dict:
    import json

    from model.checkpoint import weights_paths

    try:
        return json.loads(weights_paths(key)[1].read_text())
    except (OSError, ValueError):
        return {}


def _device(name: str | None) -> torch.device:
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def _context(args, device: torch.device, **extra) -> dict[str, str]:
    return {
        "data": str(args.data),
        "split": args.split,
        "machine": machine(),
        "device": str(device),
        "when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "untrained": "yes" if args.untrained else "",
        "face_metrics": "off" if args.no_face_metrics else "on",
        **extra,
    }


def run_table2(args) -> int:
    device = _device(args.device)
    keys = parse_methods(args.methods)
    split = load_split(args.data, args.split, args.limit)
    if not split.ids:
        raise SystemExit(f"no usable images in split {args.split!r} of {args.data}")
    print(f"evaluating {len(split.ids)} {args.split} images on {device}", file=sys.stderr)
    methods, notes = load_methods(
        keys, untrained=args.untrained, device=device, weights_dir=args.weights_dir
    )
    for key, note in notes.items():
        print(f"skipping {key}: {note}", file=sys.stderr)
    refs = None if args.no_face_metrics else face_refs(split)
    keep = [] if args.no_figures else figure_indices(len(split.ids))

    kept_rows, kept_when = [], ""
    if args.keep_rows is not None:
        kept_rows, kept_when = kept_results(args.keep_rows, split.ids, [MASKED, *keys])

    results, kept = [], {}
    floor, kept[MASKED] = evaluate_outputs(
        MASKED, "Masked input", split, None, device=device, batch=args.batch, refs=refs, keep=keep
    )
    results.append(floor)
    for key in keys:
        if key in notes:
            results.append(MethodResult(key, METHODS[key].label, note=notes[key]))
            continue
        r, kept[key] = evaluate_outputs(
            key,
            METHODS[key].label,
            split,
            methods[key].inpaint_batch,
            device=device,
            batch=args.batch,
            refs=refs,
            keep=keep,
        )
        attach_card(r, getattr(methods[key], "card", {}) or {})
        results.append(r)
    context = _context(args, device)
    if kept_rows:
        by_key = {r.key: r for r in results[1:] + kept_rows}
        results = [results[0], *(by_key[k] for k in ordered(by_key))]
        context["kept"] = (
            f"rows of {', '.join(f'`{r.key}`' for r in kept_rows)} kept from the table in "
            f"`{args.keep_rows}` (evaluated {kept_when}; `unmask eval --keep-rows`); the others "
            "re-scored now"
        )

    write_table2(args.out, results, context)
    print(f"wrote {args.out / 'table2.md'}, table2.csv, per_image.csv", file=sys.stderr)
    if not args.no_figures and kept_rows:
        # The grids show every row: the kept methods run on the figure's faces only.
        more, _ = load_methods(
            [r.key for r in kept_rows if r.key in METHODS],
            untrained=args.untrained,
            device=device,
            weights_dir=args.weights_dir,
        )
        for key, method in more.items():
            kept[key] = figure_outputs(method.inpaint_batch, split, keep, device)
        methods = {k: {**methods, **more}[k] for k in ordered({**methods, **more})}
        results = [r for r in results if r.key == MASKED or r.key in kept]
    if not args.no_figures:
        synthetic_figure(args.figures / "qualitative_synthetic.png", split, results, kept)
        print(f"wrote {args.figures / 'qualitative_synthetic.png'}", file=sys.stderr)
        photos = args.real_photos or shared_data_dir() / "real-masked" / "images"
        if photos.is_dir():
            msg = real_figure(
                args.figures / "qualitative_real.png", photos, methods, untrained=args.untrained
            )
            print(msg, file=sys.stderr)
        else:
            print(f"real-photo figure skipped: {photos} not found", file=sys.stderr)
    print((args.out / "table2.md").read_text())
    return 0


def run_table1(args) -> int:
    from model.methods.gan import from_checkpoint

    device = _device(args.device)
    run = RunFolder(args.run)
    steps = run.checkpoints()
    if not steps:
        raise SystemExit(f"no checkpoints/step_*.pt in {args.run}")
    args.data = args.data or run.data_dir()
    if args.data is None:
        raise SystemExit(f"--data is needed: {run.config_path} names no dataset")
    split = load_split(args.data, args.split, args.limit)
    refs = None if args.no_face_metrics else face_refs(split)
    results, key = [], "?"
    for step, path in steps:
        method = from_checkpoint(path, device=device)
        key = method.spec.key
        r, _ = evaluate_outputs(
            f"step {step}",
            f"step {step}",
            split,
            method.inpaint_batch,
            device=device,
            batch=args.batch,
            refs=refs,
        )
        results.append((step, r))
    write_table1(args.out, results, _context(args, device, run=str(args.run), method=key))
    print((args.out / "table1.md").read_text())
    curve = learning_curve_figure(args.run, args.figures / "learning_curve.png")
    if curve is not None:
        print(f"learning curve: {curve}", file=sys.stderr)
    return 0


def learning_curve_figure(run_dir: Path, path: Path) -> Path | None:
    """The run's validation metrics (log.jsonl "val" rows) against training wall-clock minutes: how
    fast a method learns on the hardware it ran on. None when the run logged no validation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = RunFolder(run_dir).log("val")
    if not rows:
        return None
    panels = [(m.key, m.header) for m in M.BATCH_METRICS if m.key in rows[0]]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 2.8), squeeze=False)
    minutes = [r["wall_s"] / 60 for r in rows]
    for ax, (k, title) in zip(axes[0], panels, strict=True):
        ax.plot(minutes, [r[k] for r in rows], marker="o", ms=3)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("training minutes")
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"{Path(run_dir).name}: validation ({rows[-1].get('val_source', 'val')} faces)", fontsize=10
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run(args) -> int:
    if args.expressions:  # needs no --data: it reads the expression-labelled faces
        from model.expression_proxy import run_expression_proxy

        args.out = args.out or new_run_dir("eval")
        args.figures = args.figures or args.out / "figures"
        print(f"unmask eval --expressions: writing to {args.out}", file=sys.stderr)
        with torch.no_grad():
            return run_expression_proxy(args)
    if args.run is None and args.data is None:
        raise SystemExit("unmask eval: --data DIR (or --run RUN_DIR) is required")
    if args.run is None and not args.segmenter:
        parse_methods(args.methods)  # an unknown key: refused before any folder is made
    if args.out is None:  # never over earlier results: a new run folder unless told otherwise
        args.out = new_run_dir("eval")
    if args.figures is None:
        args.figures = args.out / "figures"
    print(f"unmask eval: writing to {args.out}", file=sys.stderr)
    # A context, not set_grad_enabled(False): callers in the same process (tests) keep autograd.
    with torch.no_grad():
        if args.segmenter:
            from model.segmenter_eval import run_segmenter_report

            return run_segmenter_report(args)
        return run_table1(args) if args.run is not None else run_table2(args)
