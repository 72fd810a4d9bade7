"""`unmask promote`: ship a training run's exported weights into model/weights, but only when they
beat the shipped ones on the same validation faces (or when forced).

A run exports into `<run>/weights/<key>.safetensors` + card (`unmask train`,
`python -m model.segmenter_train`); nothing else writes model/weights. Methods of the registry are
compared by running both weight files on the first `--faces` validation faces of `--data` (MSE in
the mask, PSNR, SSIM, LPIPS); the segmenter by running both on the same validation faces masked
(IoU), bare (share left alone) and as drawn examples (`model.segmenter_train.evaluate_net`); the
landmark regressor by its cards' validation figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from model.cli import positive_int
from model.config import WEIGHTS_DIR

PRESET_RANK = {"tiny": 0, "compact": 1, "paper": 2}  # a smaller preset never replaces a larger one


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Prints the run's and the shipped weights' validation side by side. Refuses a run that is "
        "worse on most metrics, or made with a smaller preset than the shipped weights, unless "
        "--force. The files are copied atomically (weights, then card)."
    )
    parser.add_argument(
        "--run", type=Path, required=True, help="run folder of `unmask train` (holds weights/)"
    )
    parser.add_argument(
        "--data",
        type=Path,
        help="dataset folder (`unmask data build`): its val split is where both are compared "
        "(required for registry methods)",
    )
    parser.add_argument(
        "--faces",
        type=positive_int,
        default=200,
        help="validation faces to compare on (default 200)",
    )
    parser.add_argument(
        "--weights-dir",
        type=Path,
        default=WEIGHTS_DIR,
        help="the shipped weights folder (default model/weights)",
    )
    parser.add_argument("--force", action="store_true", help="promote even when not better")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--templates",
        default=None,
        help="segmenter only: MaskTheFace templates for its drawn validation examples (default "
        "<shared data>/masktheface when present, else procedural masks only)",
    )


def _exported(run: Path) -> tuple[str, Path]:
    from model.run_folder import RunFolder

    found = sorted(RunFolder(run).weights_dir.glob("*.safetensors"))
    if not found:  # runs of model.segmenter_train before it exported into weights/
        found = sorted(run.glob("*.safetensors"))
    if len(found) != 1:
        raise SystemExit(
            f"unmask promote: expected one exported weights file in {run / 'weights'}, found "
            f"{len(found)} (train to the end, or `unmask train --method KEY --run-dir {run} --export`)"
        )
    return found[0].stem, found[0].parent


def compare_methods(key: str, run_dir: Path, shipped_dir: Path, data: Path, faces: int, device):
    """{metric: (run value, shipped value or None)} on the first `faces` val faces."""
    import torch

    from model.data import load_split
    from model.evaluate import METRICS, evaluate_outputs
    from model.methods import METHODS

    split = load_split(data, "val", faces)
    dev = torch.device(device)
    out: dict[str, list] = {}
    for name, where in (("run", run_dir), ("shipped", shipped_dir)):
        try:
            method = METHODS[key].load(weights_dir=where, device=dev)
        except Exception as err:  # noqa: BLE001 - no shipped weights yet: nothing to beat
            if name == "run":
                raise
            print(f"shipped {key}: none loadable ({err})")
            continue
        result, _ = evaluate_outputs(
            key, key, split, method.inpaint_batch, device=dev, batch=16, refs=None
        )
        for m in METRICS:  # the columns of Table 2, from the metrics table
            vals = [r[m.name] for r in result.rows if r[m.name] == r[m.name]]  # drop NaN (face)
            if vals:
                mean = sum(vals) / len(vals)
                out.setdefault(m.name, [None, None])[0 if name == "run" else 1] = mean
    return {k: tuple(v) for k, v in out.items()}, len(split.ids)


def compare_segmenter(run_dir: Path, shipped_dir: Path, data: Path, faces: int, templates):
    """{metric: (run, shipped or None)} of `model.segmenter_train.evaluate_net` on the first
    `faces` val faces (built masks: iou; the same faces bare: bare_under_1pct, bare_area_mean;
    drawn examples: examples_iou), plus the `score` that decides."""
    from model.checkpoint import WeightsError
    from model.segmenter import load_segmenter
    from model.segmenter_train import evaluate_net, score, validation_set

    val = validation_set(data, faces, templates)
    run = evaluate_net(load_segmenter(weights_dir=run_dir).net.float(), val)
    try:
        shipped = evaluate_net(load_segmenter(weights_dir=shipped_dir).net.float(), val)
    except WeightsError as err:  # no shipped weights yet: nothing to beat
        print(f"shipped segmenter: none loadable ({err})")
        shipped = {}
    figures = {k: (v, shipped.get(k)) for k, v in run.items()}
    figures["score"] = (score(run), score(shipped) if shipped else None)
    return figures, len(val["bare"])


def _templates(arg: str | None) -> str:
    if arg is not None:
        return arg
    from model.config import shared_data_dir

    default = shared_data_dir() / "masktheface"
    return str(default) if default.is_dir() else ""


def verdict(figures: dict[str, tuple]) -> tuple[int, int]:
    """(metrics where the run is better, metrics compared)."""
    from model import metrics as M

    wins = compared = 0
    for metric, (new, old) in figures.items():
        if new is None or old is None:
            continue
        compared += 1
        wins += M.metric(metric).better(new, old)  # direction from the metrics table
    return wins, compared


def run(args: argparse.Namespace) -> int:
    from model.checkpoint import WeightsError, load_weights, weights_paths
    from model.methods import METHODS

    if not args.weights_dir.is_dir():
        raise SystemExit(f"unmask promote: --weights-dir {args.weights_dir} is not a folder")
    key, run_weights = _exported(args.run)
    _, new_card = load_weights(key, run_weights)  # checks the sha256 of what would ship
    broken = None  # shipped files that are there but do not load: not "nothing to beat"
    try:
        _, old_card = load_weights(key, args.weights_dir)
    except WeightsError as err:
        old_card = None
        if any(p.exists() for p in weights_paths(key, args.weights_dir)):
            broken = str(err)
    if key in METHODS or key == "segmenter":
        if args.data is None:
            raise SystemExit(f"unmask promote: --data DIR is required to compare {key}")
    if key in METHODS:
        figures, n = compare_methods(
            key, run_weights, args.weights_dir, args.data, args.faces, args.device
        )
        where = f"the first {n} val faces of {args.data}"
    elif key == "segmenter":
        templates = _templates(getattr(args, "templates", None))
        figures, n = compare_segmenter(
            run_weights, args.weights_dir, args.data, args.faces, templates
        )
        where = (
            f"the first {n} val faces of {args.data}, masked (iou), bare (bare_*) and as drawn "
            f"examples (examples_iou, templates {templates or 'none'}); decided by the score"
        )
    else:
        old_val = (old_card or {}).get("validation", {})
        figures = {k: (v, old_val.get(k)) for k, v in new_card.get("validation", {}).items()}
        where = "the cards' validation figures (each on its own run's val faces)"
    print(f"{key}: run {args.run} vs shipped {args.weights_dir}, on {where}")
    print(f"{'metric':>14} {'run':>12} {'shipped':>12}")
    for metric, (new, old) in figures.items():
        fmt = lambda v: "–" if v is None else f"{v:.4g}"  # noqa: E731
        print(f"{metric:>14} {fmt(new):>12} {fmt(old):>12}")
    for label, card in (("run", new_card), ("shipped", old_card)):
        if card:
            budget = card.get("budget", {}).get("given") or "none recorded"
            print(
                f"{label:>8}: preset {card.get('preset') or 'not recorded'}, images seen "
                f"{card.get('images_seen')}, wall {card.get('wall_time_s')} s, budget {budget}"
            )
    wins, compared = verdict({k: v for k, v in figures.items() if k != "score"})
    problems = []
    if broken is not None:
        problems.append(f"the shipped weights do not load ({broken}), so nothing was compared")
    if old_card is not None:
        new_score, old_score = figures.get("score", (None, None))
        if new_score is not None and old_score is not None:  # the segmenter: one number decides
            if new_score <= old_score:
                problems.append(f"it scores {new_score:.4f}, the shipped weights {old_score:.4f}")
        elif not compared:
            problems.append("no metric could be compared with the shipped weights")
        elif wins * 2 <= compared:
            problems.append(f"it is better on only {wins} of {compared} metrics")
        new_rank = PRESET_RANK.get(str(new_card.get("preset")), 1)
        old_rank = PRESET_RANK.get(str(old_card.get("preset")), 1)
        if new_rank < old_rank:
            problems.append(
                f"its preset {new_card.get('preset')!r} is smaller than the shipped "
                f"{old_card.get('preset')!r}"
            )
    if problems and not args.force:
        print(f"not promoted: {'; '.join(problems)} (--force to promote anyway)")
        return 1
    src, src_card = weights_paths(key, run_weights)
    dst, dst_card = weights_paths(key, args.weights_dir)
    card = json.loads(src_card.read_text())
    card["promotion"] = {  # the card says what it replaced, compared on which faces
        "compared_on": where,
        "replaced": {
            "sha256": (old_card or {}).get("sha256"),
            **{k: _round(old) for k, (_new, old) in figures.items() if old is not None},
        },
        "this": {k: _round(new) for k, (new, _old) in figures.items() if new is not None},
        **({"forced": "; ".join(problems)} if problems else {}),
    }
    tmp = dst.with_name(f".{dst.name}.promote")  # weights first: a card never lies
    shutil.copyfile(src, tmp)
    tmp.replace(dst)
    tmp = dst_card.with_name(f".{dst_card.name}.promote")
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    tmp.replace(dst_card)
    promoted = json.loads(dst_card.read_text())
    note = f" (forced: {'; '.join(problems)})" if problems else ""
    print(f"promoted {key}: {dst} ({promoted['bytes'] / 2**20:.1f} MiB){note}")
    return 0


def _round(v: float) -> float:
    return float(f"{v:.4g}")
