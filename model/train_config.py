"""Training configuration: one frozen dataclass resolved from a named TOML preset plus command-line
overrides, written back to the run folder as `config.toml`.
"""

from __future__ import annotations

import argparse
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from model.config import PRESETS_DIR, WEIGHTS_DIR

# Trainable keys besides the registry's GAN methods.
AUXILIARY = ("segmenter", "landmark_regressor")


def _opt(default: Any, help: str, **cli: Any) -> Any:
    """A TrainConfig field with its help text; `unmask train` makes an option of it
    (`add_config_arguments`). `cli` may name another flag (`flag="--no-export"`) or say
    `cli=False` (set in presets only)."""
    return field(default=default, metadata={"help": help, **cli})


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run is: a preset's [train] values, then command-line overrides."""

    method: str = field(metadata={"cli": False})  # a trainable METHODS key or an AUXILIARY one
    # ---- what and where
    data: str = _opt("", "dataset folder made by `unmask data build` (required to train)")
    run_dir: str = _opt("", "run folder (default: runs/<method>-<preset>)")
    preset: str = _opt("compact", "width/schedule preset: a name in model/presets or a .toml file")
    # ---- schedule
    steps: int = _opt(50_000, "total training steps (global batches)")
    batch: int = _opt(10, "effective batch: split evenly over the data-parallel processes")
    lr: float = _opt(2e-4, "Adam learning rate of every network")
    beta1: float = _opt(0.5, "Adam beta1 (pix2pix's 0.5)")
    beta2: float = _opt(0.999, "Adam beta2")
    lr_decay: float = _opt(
        0.0,
        "fraction of the run, at its end, over which every learning rate falls linearly to zero "
        "(pix2pix's n_epochs_decay schedule; the run: --budget's images / batch, else --steps); "
        "0: constant",
    )
    ema: float = _opt(
        0.0,
        "GAN methods: the generator that validates and exports is an exponential moving average "
        "of the trained one's weights, updated every step with this decay (e.g. 0.99: a memory of "
        "~100 steps); 0: off, the trained generator itself",
    )
    seed: int = _opt(0, "seed of the initialisation, the data order and the masks")
    budget: str = _opt(
        "",
        "stop cleanly (validate, checkpoint, export) at a wall-clock and/or images-seen budget: "
        "30m, 1h30m, 90s, 200000img or 45m+200000img (default: none, run --steps)",
    )
    # ---- data
    size: int = _opt(256, "training image side; smaller sizes are area-downscaled on load")
    train_limit: int = _opt(0, "use only the first N training faces (0: all)")
    fresh_masks: bool = _opt(True, "a new synthetic mask per face per epoch (model.masks)")
    mask_workers: int = _opt(2, "processes drawing fresh masks (0: a background thread)")
    mask_templates: str = _opt(
        "", "MaskTheFace templates folder for fresh masks (default: none, procedural masks)"
    )
    flip: bool = _opt(True, "random horizontal flips (landmarks mirrored)")
    jitter: float = _opt(0.05, "colour jitter strength (brightness, contrast, saturation)")
    # ---- validation, checkpoints, logs
    val_limit: int = _opt(64, "validation faces of the periodic metrics (0: all)")
    val_every: int = _opt(1000, "validate (metrics + sample grid) every N steps")
    ckpt_every: int = _opt(2500, "checkpoint every N steps")
    log_every: int = _opt(50, "write the losses to log.jsonl every N steps")
    keep_checkpoints: int = _opt(
        0, "keep only the newest N checkpoints (0: all; `unmask eval --run` reads them all)"
    )
    # ---- method-specific (read only by the recipes that use them)
    warmup_steps: int = _opt(0, "recipes with a warm-up (unmask): generator-only steps first")
    regressor: str = _opt(
        "",
        "landmark method: the frozen landmark_regressor's weights (.safetensors) or a run "
        "checkpoint (.pt) (default: the one in --weights-dir)",
    )
    weights_dir: str = _opt(
        str(WEIGHTS_DIR), "shipped weights folder, where the landmark method's regressor is read"
    )
    # ---- precision and export
    precision: str = _opt(
        "auto",
        "auto: bf16 autocast + channels_last on CUDA and on CPUs with native bf16 "
        "(avx512_bf16/amx), else fp32",
        choices=("auto", "bf16", "fp32"),
    )
    export: bool = _opt(
        True,
        "export <run>/weights/<key>.safetensors + card at the end (`unmask promote` ships it)",
        flag="--no-export",
    )
    export_dir: str = _opt("", "where to export (default: <run>/weights; never model/weights)")
    note: str = _opt("", "a sentence for the model card (what, why, at what cost)")
    # ---- preset tables, not options
    networks: dict[str, dict[str, Any]] = field(
        default_factory=dict, metadata={"cli": False}
    )  # network name -> options ([networks.<name>])
    losses: dict[str, float] = field(
        default_factory=dict, metadata={"cli": False}
    )  # loss term -> weight override for this method ([losses.<method>])

    @property
    def key(self) -> str:
        return self.method


_TYPES = {"int": int, "float": float, "str": str}


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per TrainConfig field (`--train-limit` for train_limit), its help from the
    field, its default shown: the preset's value where the compact preset sets one. Every option
    defaults to None here, meaning "not given": the preset's value, else the field's, applies."""
    table = load_preset("compact").get("train", {})
    preset = {k: v for k, v in table.items() if not isinstance(v, dict)}
    methods = {k: v for k, v in table.items() if isinstance(v, dict)}  # [train.<method>]
    for f in fields(TrainConfig):
        meta = f.metadata
        if meta.get("cli") is False:
            continue
        own = ", ".join(f"{m} {t[f.name]}" for m, t in methods.items() if f.name in t)
        if f.name in preset:
            shown = f" (default: the preset's; compact: {preset[f.name]}"
            shown += f"; {own})" if own else ")"
        elif own:
            shown = f" (default: the preset's; compact: {own}, else {f.default})"
        else:
            given = "none" if f.default in ("", None) else f.default
            shown = "" if "default" in meta["help"] else f" (default: {given})"
        kw: dict[str, Any] = {"dest": f.name, "default": None, "help": meta["help"] + shown}
        if f.type == "bool":
            if "flag" in meta:  # a single negative flag: --no-export
                kw["help"] = f"do not {meta['help']}"
                parser.add_argument(meta["flag"], action="store_false", **kw)
            else:  # --fresh-masks / --no-fresh-masks
                parser.add_argument(
                    f"--{f.name.replace('_', '-')}", action=argparse.BooleanOptionalAction, **kw
                )
            continue
        kw["type"] = _TYPES[f.type]
        if "choices" in meta:
            kw["choices"] = meta["choices"]
        parser.add_argument(meta.get("flag", f"--{f.name.replace('_', '-')}"), **kw)


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig fields given on the command line (None: not given)."""
    return {
        f.name: getattr(args, f.name)
        for f in fields(TrainConfig)
        if f.metadata.get("cli") is not False and hasattr(args, f.name)
    }


def preset_path(name: str) -> Path:
    p = Path(name)
    return p if p.suffix == ".toml" and p.is_file() else PRESETS_DIR / f"{name}.toml"


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.toml"))


def load_preset(name: str) -> dict[str, Any]:
    """The preset's tables: `train` (TrainConfig fields), `networks.<name>`, `losses.<method>`."""
    path = preset_path(name)
    if not path.is_file():
        raise FileNotFoundError(
            f"no preset {name!r} ({path}); presets: {', '.join(preset_names())}"
        )
    return tomllib.loads(path.read_text())


def resolve(method: str, preset: str = "compact", **overrides: Any) -> TrainConfig:
    """Preset values ([train], then the method's own [train.<method>] table), then explicit
    overrides (None = not given)."""
    p = load_preset(preset)
    known = {f.name for f in fields(TrainConfig)}
    train = p.get("train", {})
    per_method = train.get(method, {}) if isinstance(train.get(method), dict) else {}
    base = {k: v for k, v in train.items() if not isinstance(v, dict)} | per_method
    unknown = set(base) - known
    if unknown:
        raise ValueError(f"preset {preset!r}: unknown [train] option(s) {sorted(unknown)}")
    base["networks"] = p.get("networks", {})
    base["losses"] = p.get("losses", {}).get(method, {})
    base.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(
        method=method, preset=preset, **{k: v for k, v in base.items() if k != "method"}
    )


def to_toml(cfg: TrainConfig) -> str:
    """The resolved config as TOML (scalars at the top, then [networks.*] and [losses])."""
    d = asdict(cfg)
    nets, losses = d.pop("networks"), d.pop("losses")
    lines = [f"{k} = {_toml_value(v)}" for k, v in d.items()]
    for name, opts in nets.items():
        lines += ["", f"[networks.{name}]", *(f"{k} = {_toml_value(v)}" for k, v in opts.items())]
    if losses:
        lines += ["", "[losses]", *(f"{k} = {_toml_value(v)}" for k, v in losses.items())]
    return "\n".join(lines) + "\n"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    s = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


def parse_budget(text: str) -> tuple[float, int]:
    """(seconds, images) of a budget string ("30m", "1h30m", "90s", "200000img", "45m+300000img");
    0 = no limit of that kind. Raises ValueError on anything else."""
    import re

    seconds, images = 0.0, 0
    for part in filter(None, (p.strip() for p in text.lower().split("+"))):
        if m := re.fullmatch(r"(\d+)\s*(img|images)", part):
            images = int(m.group(1))
            continue
        m = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?", part)
        if not m or not any(m.groups()):
            raise ValueError(
                f"budget {part!r} not understood: use e.g. 30m, 1h30m, 90s, 200000img or 45m+200000img"
            )
        h, mins, s = (float(g) if g else 0.0 for g in m.groups())
        seconds = h * 3600 + mins * 60 + s
    return seconds, images
