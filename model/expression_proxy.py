"""`unmask eval --expressions`: a machine rater that pilots the study before people are paid.

An expression classifier (scikit-learn, on dlib's 68 landmarks) trained on the unmasked,
labelled expressions-tw faces with performers held out, then applied to every method's output on
masked versions of the held-out faces, to the masked input (the floor) and to the real faces.
It is a proxy for the study's Table 5, not people: it reads landmark geometry only.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import json
import math
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.config import EXPRESSIONS, MASKED, REAL, REPO_DIR, shared_data_dir

N_FOLDS = 5
DEFAULT_PER_EXPRESSION = 50  # held-out faces per expression that every method inpaints
CACHE = REPO_DIR / "runs" / "cache" / "expressions_aligned.npz"
Z95 = 1.959963984540054
# Landmark groups (dlib's 68-point scheme).
JAW, BROW_L, BROW_R, NOSE = range(0, 17), range(17, 22), range(22, 27), range(27, 36)
EYE_L, EYE_R, MOUTH = range(36, 42), range(42, 48), range(48, 68)
STABLE = [*NOSE[:4], *EYE_L, *EYE_R]  # points expressions barely move: the normalising frame


@dataclass
class Face:
    """One labelled face aligned by the project's pipeline, with the box every fit of it uses."""

    image_id: str
    performer: str
    expression: str
    image: np.ndarray  # (256, 256, 3) uint8
    landmarks: np.ndarray  # (68, 2) from the alignment (where the mask goes)
    box: tuple[int, int, int, int]  # dlib's HOG box on the aligned real face


# ---- faces -----------------------------------------------------------------------------------


def load_faces(
    faces_dir: Path, cache: Path | None = CACHE, log: Callable[[str], None] = print
) -> list[Face]:
    """Every expressions-tw face of the five expressions, aligned (cached: alignment is the slow
    part and never depends on the weights). Faces the pipeline cannot align are left out."""
    from study.stimuli import scan_faces  # the one place that reads the file-name convention

    files = scan_faces(faces_dir)
    key = hashlib.sha256("\n".join(f.path.name for f in files).encode()).hexdigest()[:16]
    if cache is not None and cache.is_file():
        z = np.load(cache, allow_pickle=False)
        if str(z["key"]) == key:
            log(f"aligned faces from {cache}")
            return [
                Face(str(i), str(p), str(e), im, lm, tuple(int(v) for v in b))
                for i, p, e, im, lm, b in zip(
                    z["ids"],
                    z["performers"],
                    z["expressions"],
                    z["images"],
                    z["landmarks"],
                    z["boxes"],
                    strict=True,
                )
            ]
    from model.faces import FaceError, find_and_align
    from model.imageio import ImageError, load_image
    from model.metrics import reference_box

    faces, skipped = [], 0
    t0 = time.perf_counter()
    for n, f in enumerate(files, 1):
        try:
            aligned = find_and_align(load_image(f.path))
        except (FaceError, ImageError):
            skipped += 1
            continue
        box = reference_box(aligned.image, aligned.landmarks)
        faces.append(
            Face(f.image_id, f.performer, f.expression, aligned.image, aligned.landmarks, box)
        )
        if n % 100 == 0:
            log(f"aligned {n}/{len(files)} ({time.perf_counter() - t0:.0f} s)")
    log(f"aligned {len(faces)} faces, {skipped} not alignable")
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            cache,
            key=key,
            ids=[f.image_id for f in faces],
            performers=[f.performer for f in faces],
            expressions=[f.expression for f in faces],
            images=np.stack([f.image for f in faces]),
            landmarks=np.stack([f.landmarks for f in faces]).astype(np.float32),
            boxes=np.array([f.box for f in faces]),
        )
    return faces


# ---- features and classifier ------------------------------------------------------------------


def landmark_features(points: np.ndarray) -> np.ndarray:
    """(68, 2) landmarks -> a feature vector that ignores where the face is, its size and roll.

    1. Frame: the stable points' centroid is the origin; the eye line is level; the inter-ocular
       distance is 1. 2. All 68 normalised points. 3. Expression geometry: mouth width, opening
       and corner lift; eye openings; brow heights above the eyes and their gap; jaw drop.
    """
    p = np.asarray(points, dtype=np.float64)
    eye_l, eye_r = p[list(EYE_L)].mean(0), p[list(EYE_R)].mean(0)
    d = eye_r - eye_l
    iod = float(np.hypot(*d)) or 1.0
    c, s = d / iod
    rot = np.array([[c, s], [-s, c]])  # turns the eye line level
    q = (p - p[STABLE].mean(0)) @ rot.T / iod

    def dist(a: int, b: int) -> float:
        return float(np.hypot(*(q[a] - q[b])))

    mouth_mid_y = (q[51, 1] + q[57, 1]) / 2
    eye_l_y, eye_r_y = q[list(EYE_L), 1].mean(), q[list(EYE_R), 1].mean()
    geometry = [
        dist(48, 54),  # mouth width
        dist(62, 66),  # inner lips apart
        dist(51, 57),  # outer lips apart
        mouth_mid_y - (q[48, 1] + q[54, 1]) / 2,  # corners above the mouth's middle: a smile
        (dist(37, 41) + dist(38, 40)) / 2,  # left eye open
        (dist(43, 47) + dist(44, 46)) / 2,  # right eye open
        eye_l_y - q[list(BROW_L), 1].mean(),  # left brow above its eye
        eye_r_y - q[list(BROW_R), 1].mean(),  # right brow above its eye
        dist(21, 22),  # brows' inner ends apart (a frown pulls them together)
        eye_l_y - q[21, 1],  # inner brow height (sad raises it, angry lowers it)
        eye_r_y - q[22, 1],
        q[8, 1] - q[33, 1],  # chin below the nose tip (surprise drops the jaw)
        q[57, 1] - q[33, 1],  # lower lip below the nose tip
    ]
    return np.concatenate([q.ravel(), geometry])


def make_classifier():
    """Standardised features, multinomial logistic regression; classes weighted by their
    counts (neutral has a third of the faces of happy)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        StandardScaler(), LogisticRegression(C=0.5, max_iter=5000, class_weight="balanced")
    )


def performer_folds(performers: Sequence[str], n_folds: int = N_FOLDS) -> list[np.ndarray]:
    """Test indices of each fold: every performer's faces in exactly one fold, no performer in
    both a fold's training and test faces (GroupKFold)."""
    from sklearn.model_selection import GroupKFold

    groups = np.asarray(performers)
    zeros = np.zeros(len(groups))
    return [test for _train, test in GroupKFold(n_splits=n_folds).split(zeros, zeros, groups)]


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion k / n (in [0, 1]); (nan, nan) for n = 0."""
    if n == 0:
        return math.nan, math.nan
    phat = k / n
    denom = 1 + z * z / n
    centre = (phat + z * z / (2 * n)) / denom
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


# ---- the evaluation ---------------------------------------------------------------------------


@dataclass
class ProxyResult:
    """Predictions per condition (`masked`, each method, `real`) of the held-out faces, and the
    cross-validated predictions on every real face (the ceiling)."""

    truth: list[str]  # the evaluated faces' expressions
    faces: list[dict]  # per evaluated face: image_id, performer, fold, mask_style, mask_seed
    predictions: dict[str, list[str]]  # condition -> prediction per evaluated face
    cv_truth: list[str]
    cv_pred: list[str]
    conditions: list[str]
    notes: list[str] = field(default_factory=list)
    context: dict = field(default_factory=dict)


def pick_evaluated(faces: Sequence[Face], per_expression: int, seed: int) -> list[int]:
    """Indices of `per_expression` faces of each expression, spread over the performers."""
    rng = np.random.default_rng(seed)
    chosen = []
    for e in EXPRESSIONS:
        by_performer: dict[str, list[int]] = {}
        for i in rng.permutation(len(faces)):
            if faces[i].expression == e:
                by_performer.setdefault(faces[i].performer, []).append(int(i))
        order = sorted(by_performer)
        taken: list[int] = []
        while len(taken) < per_expression and any(by_performer.values()):
            for p in order:  # round robin: one face of each performer in turn
                if by_performer[p] and len(taken) < per_expression:
                    taken.append(by_performer[p].pop())
        chosen += taken
    return sorted(chosen)


def run_proxy(
    faces: Sequence[Face],
    methods: dict[str, object],
    *,
    per_expression: int = DEFAULT_PER_EXPRESSION,
    seed: int = 0,
    n_folds: int = N_FOLDS,
    batch: int = 16,
    log: Callable[[str], None] = print,
) -> ProxyResult:
    """Train per fold on the training performers' real faces; classify the held-out faces' real
    version (the ceiling: every face), and, for `per_expression` faces of each expression, their
    masked input and every method's output (masks: seeded procedural styles, one per face)."""
    import torch

    from model.masks import STYLES, apply_mask
    from model.methods.base import to_image
    from model.metrics import fit_landmarks

    feats = np.stack([landmark_features(fit_landmarks(f.image, f.box)) for f in faces])
    labels = np.array([f.expression for f in faces])
    folds = performer_folds([f.performer for f in faces], n_folds)
    evaluated = set(pick_evaluated(faces, per_expression, seed))
    conditions = [MASKED, *methods, REAL]
    cv_pred = np.empty(len(faces), dtype=object)
    pred: dict[str, dict[int, str]] = {c: {} for c in conditions}
    about: dict[int, dict] = {}
    t0 = time.perf_counter()
    for k, test in enumerate(folds):
        train = np.setdiff1d(np.arange(len(faces)), test)
        assert not {faces[i].performer for i in train} & {faces[i].performer for i in test}
        clf = make_classifier().fit(feats[train], labels[train])
        cv_pred[test] = clf.predict(feats[test])
        held = [int(i) for i in test if int(i) in evaluated]
        for i in held:
            pred[REAL][i] = cv_pred[i]
        # Masked inputs of this fold's evaluated faces: a style per face in turn, seeded per face.
        masked = {
            i: apply_mask(
                faces[i].image,
                faces[i].landmarks,
                seed=seed * 1_000_003 + i,
                style=STYLES[i % len(STYLES)],
            )
            for i in held
        }
        for i in held:
            about[i] = {
                "image_id": faces[i].image_id,
                "performer": faces[i].performer,
                "fold": k + 1,
                "mask_style": masked[i].style,
                "mask_seed": masked[i].seed,
            }
        outputs: dict[str, dict[int, np.ndarray]] = {MASKED: {i: masked[i].image for i in held}}
        for key, method in methods.items():
            outputs[key] = {}
            for start in range(0, len(held), batch):
                ids = held[start : start + batch]
                x = torch.stack(
                    [
                        torch.from_numpy(masked[i].image).permute(2, 0, 1).float() / 127.5 - 1
                        for i in ids
                    ]
                )
                m = torch.stack(
                    [torch.from_numpy(masked[i].seg.astype(bool))[None].float() for i in ids]
                )
                with torch.no_grad():
                    out = method.inpaint_batch(x, m)
                for i, o in zip(ids, out, strict=True):
                    outputs[key][i] = to_image(o)
        for cond, images in outputs.items():
            if not images:
                continue
            ids = sorted(images)
            x = np.stack([landmark_features(fit_landmarks(images[i], faces[i].box)) for i in ids])
            for i, p in zip(ids, clf.predict(x), strict=True):
                pred[cond][i] = p
        log(
            f"fold {k + 1}/{len(folds)}: {len(test)} faces held out, {len(held)} evaluated "
            f"({time.perf_counter() - t0:.0f} s)"
        )
    order = sorted(evaluated)
    return ProxyResult(
        truth=[faces[i].expression for i in order],
        faces=[about[i] for i in order],
        predictions={c: [pred[c][i] for i in order] for c in conditions},
        cv_truth=list(labels),
        cv_pred=list(cv_pred),
        conditions=conditions,
    )


# ---- tables and figure ------------------------------------------------------------------------

CSV_COLUMNS = ("kind", "method", "expression", "n", "correct", "accuracy", "ci_low", "ci_high")


def _kind(condition: str) -> str:
    return {MASKED: "masked", REAL: "real"}.get(condition, "method")


def result_rows(r: ProxyResult) -> list[dict]:
    """Accuracy (%) with a Wilson 95% interval per expression x condition (and "all"), plus the
    classifier's cross-validated accuracy on every real face (kind "ceiling")."""
    rows = []

    def add(kind: str, method: str, truth: Sequence[str], pred: Sequence[str]) -> None:
        t, p = np.asarray(truth), np.asarray(pred)
        for e in [*EXPRESSIONS, "all"]:
            sel = np.ones(len(t), bool) if e == "all" else t == e
            n, k = int(sel.sum()), int((t[sel] == p[sel]).sum())
            lo, hi = wilson(k, n)
            rows.append(
                {
                    "kind": kind,
                    "method": method,
                    "expression": e,
                    "n": n,
                    "correct": k,
                    "accuracy": round(100 * k / n, 2) if n else math.nan,
                    "ci_low": round(100 * lo, 2),
                    "ci_high": round(100 * hi, 2),
                }
            )

    add("ceiling", "real_cv", r.cv_truth, r.cv_pred)
    for c in r.conditions:
        add(_kind(c), c, r.truth, r.predictions[c])
    return rows


def _top_mistake(truth: Sequence[str], pred: Sequence[str], expression: str) -> str:
    """ "sad 40%": the wrong answer given most often for `expression`, and its share."""
    wrong = [p for t, p in zip(truth, pred, strict=True) if t == expression and p != t]
    n = sum(t == expression for t in truth)
    if not wrong or not n:
        return "–"
    top = max(set(wrong), key=wrong.count)
    return f"{top} {100 * wrong.count(top) / n:.0f}%"


def _cell(row: dict) -> str:
    return f"{row['accuracy']:.0f} [{row['ci_low']:.0f}–{row['ci_high']:.0f}]"


def write_outputs(r: ProxyResult, out: Path, figures: Path) -> list[Path]:
    from model.methods.registry import METHODS

    out.mkdir(parents=True, exist_ok=True)
    figures.mkdir(parents=True, exist_ok=True)
    rows = result_rows(r)
    csv_path = out / "expression_proxy.csv"
    with csv_path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    per_face = out / "expression_proxy_per_face.csv"
    with per_face.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(
            [
                "image_id",
                "performer",
                "fold",
                "mask_style",
                "mask_seed",
                "expression",
                *(f"pred_{c}" for c in r.conditions),
            ]
        )
        for j, (about, truth) in enumerate(zip(r.faces, r.truth, strict=True)):
            w.writerow([*about.values(), truth, *(r.predictions[c][j] for c in r.conditions)])
    at = {(x["method"], x["expression"]): x for x in rows}
    label = {MASKED: "Masked input (floor)", REAL: "Real (unmasked)"}
    label.update({k: s.label for k, s in METHODS.items()})
    ctx = r.context
    lines = [
        "# Machine rater: expression accuracy per method (a proxy, not people)",
        "",
        "**This is a classifier, not people.** It reads only the geometry of dlib's 68 landmarks "
        "fitted on each picture; people also see texture, blur and artefacts. Use it to pilot "
        "a stimulus set (which method loses which expression), never in place of the study "
        "(`analysis/report.py` prints how far it agrees with the people once there is an export).",
        "",
        f"- Faces: {ctx.get('n_faces')} unmasked, labelled expressions-tw faces of the five "
        f"expressions ({ctx.get('n_performers')} performers), aligned by `model.faces."
        "find_and_align`; landmarks refitted by dlib on every picture inside the real face's box.",
        f"- Classifier: {ctx.get('classifier')}; features: 68 landmarks in an eye-levelled, "
        "inter-ocular-scaled frame plus 13 distances (mouth, eyes, brows, jaw).",
        f"- Performers held out: {N_FOLDS}-fold GroupKFold by performer (file name characters "
        "1-2); no person is in both a fold's training and test faces.",
        f"- Evaluated: {len(r.truth)} held-out faces ({ctx.get('per_expression')} per expression, "
        "spread over performers), each masked once (procedural styles surgical, kn95, n95, "
        f"cloth in turn; seed {ctx.get('seed')}), inpainted by every method, classified by the "
        "model of the fold that held its performer out.",
        "- Cells: % correct [Wilson 95% interval]; faces of one performer are not independent, "
        "so the intervals are, if anything, too narrow.",
        "",
        "## Ceiling: cross-validated accuracy on the real faces (all faces, performers held out)",
        "",
        "| expression | n | accuracy % [95% CI] |",
        "| --- | ---: | ---: |",
    ]
    for e in [*EXPRESSIONS, "all"]:
        x = at["real_cv", e]
        lines.append(f"| {e} | {x['n']} | {_cell(x)} |")
    lines += [
        "",
        "## Accuracy % per expression x condition (held-out faces)",
        "",
        "| condition | " + " | ".join(EXPRESSIONS) + " | all |",
        "| --- |" + " ---: |" * (len(EXPRESSIONS) + 1),
    ]
    for c in r.conditions:
        cells = [_cell(at[c, e]) for e in [*EXPRESSIONS, "all"]]
        lines.append(f"| {label.get(c, c)} (`{c}`) | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## What each expression is mistaken for (held-out faces, most common wrong answer)",
        "",
        "| condition | " + " | ".join(EXPRESSIONS) + " |",
        "| --- |" + " --- |" * len(EXPRESSIONS),
    ]
    for c in r.conditions:
        lines.append(
            f"| `{c}` | "
            + " | ".join(_top_mistake(r.truth, r.predictions[c], e) for e in EXPRESSIONS)
            + " |"
        )
    lines += [
        "",
        "Answer bias (the answer given most often over all held-out faces of a condition; each "
        f"expression is {100 / len(EXPRESSIONS):.0f}% of them): a high accuracy for the "
        "expression a condition over-predicts says little.",
        "",
        "| condition | most common answer | share of all answers |",
        "| --- | --- | ---: |",
    ]
    for c in r.conditions:
        answers = list(r.predictions[c])
        top = max(set(answers), key=answers.count)
        lines.append(f"| `{c}` | {top} | {100 * answers.count(top) / len(answers):.0f}% |")
    lines += ["", "## Run", ""]
    lines += [f"- {k}: {v}" for k, v in ctx.items() if k not in ("classifier",)]
    if r.notes:
        lines += ["", "Notes:", *(f"- {n}" for n in r.notes)]
    md_path = out / "expression_proxy.md"
    md_path.write_text("\n".join(lines) + "\n")
    fig_path = write_figure(r, rows, figures / "expression_proxy.png", label)
    return [csv_path, per_face, md_path, fig_path]


def write_figure(r: ProxyResult, rows: list[dict], path: Path, label: dict) -> Path:
    """Grouped bars: per condition, accuracy per expression with Wilson intervals; the
    classifier's ceiling per expression as ticks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    at = {(x["method"], x["expression"]): x for x in rows}
    conds = r.conditions
    width = 0.8 / len(EXPRESSIONS)
    colours = plt.get_cmap("tab10").colors
    fig, ax = plt.subplots(figsize=(max(8, 1.25 * len(conds) + 2), 4.8), dpi=120)
    for j, e in enumerate(EXPRESSIONS):
        xs = np.arange(len(conds)) + (j - (len(EXPRESSIONS) - 1) / 2) * width
        acc = np.array([at[c, e]["accuracy"] for c in conds])
        lo = acc - np.array([at[c, e]["ci_low"] for c in conds])
        hi = np.array([at[c, e]["ci_high"] for c in conds]) - acc
        ax.bar(
            xs,
            acc,
            width,
            color=colours[j],
            label=e,
            yerr=[lo, hi],
            capsize=1.5,
            error_kw={"elinewidth": 0.7},
        )
        ceiling = at["real_cv", e]["accuracy"]
        ax.hlines(ceiling, -0.5, len(conds) - 0.5, colors=colours[j], linestyles=":", lw=0.8)
    ax.set_xticks(np.arange(len(conds)))
    ax.set_xticklabels([label.get(c, c).replace(" (", "\n(") for c in conds], fontsize=7)
    ax.set_ylim(0, 100)
    ax.set_ylabel("% classified as the performed expression")
    ax.set_title(
        "Machine rater (landmark classifier, performers held out): a proxy, not people\n"
        "bars: held-out faces, Wilson 95% CI; dotted: CV ceiling on real faces",
        fontsize=9,
    )
    ax.legend(fontsize=7, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# ---- command ----------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options `unmask eval --expressions` reads (added to eval's parser)."""
    g = parser.add_argument_group("machine rater (--expressions)")
    g.add_argument(
        "--faces",
        type=Path,
        default=None,
        help="expression-labelled faces (default: <shared data>/expressions-tw/images)",
    )
    g.add_argument(
        "--per-expression",
        type=int,
        default=DEFAULT_PER_EXPRESSION,
        help="held-out faces per expression that every method inpaints (default: %(default)s)",
    )
    g.add_argument("--proxy-seed", type=int, default=0, help="masks and face choice seed")
    g.add_argument(
        "--proxy-cache",
        type=Path,
        default=CACHE,
        help="aligned-faces cache (default: runs/cache/expressions_aligned.npz)",
    )


def _weights_note(key: str, weights_dir: Path) -> str:
    path = weights_dir / f"{key}.safetensors"
    if not path.is_file():
        return ""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return f"{key}.safetensors sha256 {digest}…"


def _architecture(card: Path) -> str:
    try:
        return json.dumps(json.loads(card.read_text()).get("architecture"), sort_keys=True)
    except (OSError, ValueError):
        return "no card"


def run_expression_proxy(args: argparse.Namespace) -> int:
    import torch

    from model.config import WEIGHTS_DIR

    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    faces_dir = args.faces or shared_data_dir() / "expressions-tw" / "images"
    if not Path(faces_dir).is_dir():
        raise SystemExit(f"no expression-labelled faces at {faces_dir} (pass --faces DIR)")
    from model.evaluate import load_methods, parse_methods

    keys = parse_methods(args.methods)
    t0 = time.perf_counter()
    faces = load_faces(Path(faces_dir), args.proxy_cache, log)
    device = torch.device(args.device or "cpu")
    methods, failed = load_methods(
        keys, untrained=args.untrained, device=device, weights_dir=args.weights_dir
    )
    notes = [f"{k} skipped (cannot be loaded): {why}" for k, why in failed.items()]
    if args.untrained:
        notes.append(f"UNTRAINED networks ({args.untrained}): the numbers mean nothing")
    weights_dir = Path(args.weights_dir) if args.weights_dir else WEIGHTS_DIR
    r = run_proxy(faces, methods, per_expression=args.per_expression, seed=args.proxy_seed, log=log)
    r.notes += notes
    r.context = {
        "command": "unmask " + " ".join(sys.argv[1:]) if sys.argv else "",
        "date (UTC)": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M"),
        "n_faces": len(faces),
        "n_performers": len({f.performer for f in faces}),
        "per_expression": args.per_expression,
        "seed": args.proxy_seed,
        "classifier": "scikit-learn StandardScaler + LogisticRegression(C=0.5, balanced classes)",
        "weights": "; ".join(w for k in methods if (w := _weights_note(k, weights_dir))) or "none",
        "unmask architecture": _architecture(weights_dir / "unmask.json"),
        "wall time": f"{time.perf_counter() - t0:.0f} s on {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch threads",
    }
    files = write_outputs(r, Path(args.out), Path(args.figures))
    rows = {(x["method"], x["expression"]): x for x in result_rows(r)}
    print(
        "CV ceiling on real faces: "
        + ", ".join(f"{e} {rows['real_cv', e]['accuracy']:.0f}%" for e in [*EXPRESSIONS, "all"])
    )
    for c in r.conditions:
        print(
            f"{c:>14}: all {_cell(rows[c, 'all'])}  "
            + " ".join(f"{e[:3]} {rows[c, e]['accuracy']:.0f}" for e in EXPRESSIONS)
        )
    for f in files:
        print(f"wrote {f}")
    return 0
