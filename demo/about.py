"""What the demo tells a visitor about the methods and their weights, read from the registry
(`METHODS`) and the model cards (`model/weights/<key>.json`); plain Python, no gradio.

Cards grow new fields over time and differ between methods (a GAN, a PCA basis, none at all), so
every field is optional here: what a card lacks is left out, never guessed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from model.config import REPO_DIR, RESULTS_DIR, WEIGHTS_DIR
from model.methods import METHODS

# The papers' training budget (Ye 2022: 50k iterations x batch 10). Shipped weights that saw less
# than a tenth of it are called stand-ins on the page, as the README does.
PAPER_IMAGES_SEEN = 500_000
STAND_IN_SHARE = 0.1

# Weights that are not inpainting methods but that the demo (or a method's training) uses.
HELPERS = {
    "segmenter": "A small U-Net that predicts the mask region of an aligned face; you can "
    "correct it with the brush.",
    "landmark_regressor": "Predicts the 68 face landmarks of an aligned face; the Landmark "
    "method's training loss compares the jaw points of its output and of the real face.",
}

CardLink = Callable[[Path], str]  # card file -> URL the page can open


def _metric_text(name: str, value: float) -> str:
    """A card's validation figure as the page shows it: the metrics table's title, brief format
    and unit ("PSNR 22.84 dB"); a metric the table does not know is shown as it is."""
    from model.metrics import metric

    try:
        m = metric(name)
    except KeyError:
        return f"{name} {value:.4g}"
    return f"{m.title} {m.brief.format(value)}" + (f" {m.unit}" if m.unit else "")


def read_card(key: str, weights_dir: Path = WEIGHTS_DIR) -> dict[str, Any] | None:
    """The model card of `key`, or None when it has none (or it is unreadable)."""
    path = Path(weights_dir) / f"{key}.json"
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return card if isinstance(card, dict) else None


def _get(card: dict, name: str) -> Any:
    """A card field at the top level or in its `budget` section (newer cards group it there)."""
    if name in card:
        return card[name]
    budget = card.get("budget")
    return budget.get(name) if isinstance(budget, dict) else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


# --- the weights note (Compare tab and About) ---------------------------------------------------


def weights_note(weights_dir: Path = WEIGHTS_DIR, *, point_to_about: bool = True) -> str:
    """One paragraph on what the shipped weights of the methods are, from their cards ("" when
    no method has a card). Says "stand-ins" when they saw far less than the papers' budget."""
    cards = [c for k, s in METHODS.items() if s.trainable and (c := read_card(k, weights_dir))]
    # Networks trained by steps; a closed-form fit (eigenface: 0 images "seen") is no network.
    cards = [c for c in cards if (_number(_get(c, "images_seen")) or 0) > 0]
    if not cards:
        return ""
    seen = [n for c in cards if (n := _number(_get(c, "images_seen"))) is not None]
    minutes = [m / 60 for c in cards if (m := _number(_get(c, "wall_time_s"))) is not None]
    where = sorted({h for c in cards if (h := _hardware(c, threads=False))})
    stand_in = bool(seen) and max(seen) < STAND_IN_SHARE * PAPER_IMAGES_SEEN
    budget = "each network here"
    if seen:
        budget += f" saw {_span(seen, '{:,.0f}')} training images"
        budget += f" (the papers: {PAPER_IMAGES_SEEN:,})" if stand_in else ""
    if minutes:
        budget += f" in {_span(minutes, '{:.0f}')} min"
    if where:
        budget += " on " + " / ".join(where)
    if budget == "each network here":
        budget = "each network's training budget is in its card"
    more = " The About tab has each model's card." if point_to_about else ""
    if stand_in:
        return (
            f"**The shipped weights are short stand-in runs, not the papers' training:** "
            f"{budget}. The results show the pipeline working, not each method's real quality."
            + more
        )
    return f"**About the weights:** {budget}.{more}"


def _span(values: list[float], fmt: str) -> str:
    lo, hi = min(values), max(values)
    return (
        fmt.format(lo) if fmt.format(lo) == fmt.format(hi) else f"{fmt.format(lo)}–{fmt.format(hi)}"
    )


def _hardware(card: dict, *, threads: bool = True) -> str:
    hw = _get(card, "hardware")
    if not isinstance(hw, dict):
        return str(hw) if hw else ""
    device = str(hw.get("device") or "")
    name = str(hw.get("name") or "")
    if device.lower() == "cpu":
        n = hw.get("cpu_threads")
        cores = f", {n} thread{'s' * (n != 1)}" if threads and isinstance(n, int) else ""
        return f"CPU ({name}{cores})" if name else "CPU"
    return name or device.upper()


# --- the About tab ------------------------------------------------------------------------------


def about_markdown(card_link: CardLink | None = None, weights_dir: Path = WEIGHTS_DIR) -> str:
    """The About tab: the weights note, a short table per method and per helper model (what,
    data, budget, validation, card), then the metrics table when it has been measured."""
    parts = []
    note = weights_note(weights_dir, point_to_about=False)
    if note:
        parts.append(note)
    parts.append("## Methods")
    for key, spec in METHODS.items():
        what = f"{spec.summary} *Reference:* {spec.reference}."
        card = read_card(key, weights_dir)
        if card is None and spec.trainable:
            table = _table({"What": what, "Weights": "none shipped yet (`unmask train`)"})
        elif card is None:
            table = _table({"What": what, "Training": "none: nothing is learned"})
        else:
            table = _card_table(key, card, what, card_link, weights_dir)
        parts.append(f"### {spec.label}\n\n{table}")
    helpers = [k for k in HELPERS if read_card(k, weights_dir)]
    helpers += sorted(
        p.stem
        for p in Path(weights_dir).glob("*.json")
        if p.stem not in METHODS and p.stem not in HELPERS
    )
    if helpers:
        parts.append("## Helper models")
        for key in helpers:
            card = read_card(key, weights_dir)
            if card is None:
                continue
            what = HELPERS.get(key) or f"`{_network(card) or key}` network"
            parts.append(f"### {key}\n\n{_card_table(key, card, what, card_link, weights_dir)}")
    table2 = RESULTS_DIR / "metrics" / "table2.md"
    parts.append("## Metrics on the synthetic test split")
    if table2.is_file():
        parts.append(_demote_headings(table2.read_text(encoding="utf-8")))
    else:
        parts.append("Not measured yet: `unmask eval` writes `results/metrics/table2.md`.")
    return "\n\n".join(parts)


def _card_table(
    key: str, card: dict, what: str, card_link: CardLink | None, weights_dir: Path
) -> str:
    params = _number(card.get("parameters"))
    if params:
        what += f" {params / 1e6:.2f} M parameters."
    rows = {
        "What": what,
        "Data": _data(card),
        "Budget": _budget(card),
        "Validation": _validation(card),
        "Model card": _card_cell(key, card, card_link, weights_dir),
    }
    return _table({k: v for k, v in rows.items() if v})


def _table(rows: dict[str, str]) -> str:
    lines = ["| | |", "| --- | --- |"]
    lines += [f"| **{name}** | {_cell(value)} |" for name, value in rows.items()]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return str(text).replace("|", "/").replace("\n", " ")


def _network(card: dict) -> str:
    arch = card.get("architecture")
    return str(arch.get("network") or "") if isinstance(arch, dict) else ""


def _data(card: dict) -> str:
    data = card.get("data")
    if not isinstance(data, dict):
        return str(data) if isinstance(data, str) else ""
    parts = []
    train = _number(data.get("train_faces"))
    if train:
        parts.append(f"{train:,.0f} training faces")
    folder = data.get("dir")
    if folder:
        parts.append(f"from `{_shown_path(folder)}` (split {data.get('split', 'train')})")
    if data.get("fresh_masks"):
        parts.append("new synthetic masks every epoch")
    return ", ".join(parts)


def _budget(card: dict) -> str:
    parts = []
    steps, batch = _number(_get(card, "iterations")), _number(_get(card, "batch"))
    if steps and batch:
        parts.append(f"{steps:,.0f} steps × batch {batch:.0f}")
    elif steps == 0:
        parts.append("fitted in closed form (no training steps)")
    seen = _number(_get(card, "images_seen"))
    if seen:
        parts.append(f"{seen:,.0f} images seen")
    wall = _number(_get(card, "wall_time_s"))
    if wall:
        parts.append(f"{wall / 60:.0f} min" if wall >= 90 else f"{wall:.0f} s")
    hardware = _hardware(card)
    if hardware:
        parts.append(hardware)
    precision = _get(card, "precision")
    if precision:
        parts.append(f"{precision} precision")
    return " · ".join(parts)


def _validation(card: dict) -> str:
    metrics = card.get("validation")
    if not isinstance(metrics, dict):
        return ""
    shown = []
    for name, value in metrics.items():
        number = _number(value)
        if number is None:
            continue
        shown.append(_metric_text(name, number))
    data = card.get("data") if isinstance(card.get("data"), dict) else {}
    faces = _number(data.get("val_faces"))
    on = f" (on {faces:.0f} validation faces)" if faces else ""
    return " · ".join(shown) + on if shown else ""


def _card_cell(key: str, card: dict, card_link: CardLink | None, weights_dir: Path) -> str:
    path = Path(weights_dir) / f"{key}.json"
    shown = _shown_path(path)
    cell = f"[{shown}]({card_link(path)})" if card_link else f"`{shown}`"
    size = _number(card.get("bytes"))
    if size:
        cell += f" · weights {size / 2**20:.1f} MiB"
    if card.get("created_at"):
        cell += f" · made {str(card['created_at'])[:10]}"
    return cell


def _shown_path(path: str | Path) -> str:
    """A path as a visitor may see it: relative to the repository, else just its last parts."""
    p = Path(path)
    try:
        return p.resolve().relative_to(REPO_DIR.resolve()).as_posix()
    except (ValueError, OSError):
        return "/".join(p.parts[-2:]) if p.is_absolute() else p.as_posix()


def _demote_headings(markdown: str) -> str:
    """table2.md starts with its own "# Table 2" heading: one level below the tab's own."""
    return "\n".join(
        "##" + line if line.startswith("# ") else line for line in markdown.splitlines()
    )
