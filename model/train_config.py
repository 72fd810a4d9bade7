"""Training configuration: one frozen dataclass resolved from a named TOML preset plus command-line
overrides, written back to the run folder as `config.toml`.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from model.config import PRESETS_DIR, WEIGHTS_DIR

# Trainable keys besides the registry's GAN methods.
AUXILIARY = ("segmenter", "landmark_regressor")


@dataclass(frozen=True)
class TrainConfig:
    method: str  # a trainable METHODS key, "segmenter" or "landmark_regressor"
    data: str = ""  # dataset folder (`unmask data build`); empty when splits are given in memory
    run_dir: str = ""
    preset: str = "compact"
    steps: int = 50_000
    batch: int = 10  # effective (global) batch: split evenly over the data-parallel processes
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    seed: int = 0
    size: int = 256  # training image side; smaller sizes are area-downscaled on load
    train_limit: int = 0  # 0 = the whole train split
    val_limit: int = 64  # validation faces used for the periodic metrics
    val_every: int = 1000
    ckpt_every: int = 2500
    log_every: int = 50
    keep_checkpoints: int = 0  # 0 = keep every checkpoint (evaluate's Table 1 reads them all)
    fresh_masks: bool = True  # a new synthetic mask per face per epoch (model.masks.apply_mask)
    mask_workers: int = 2
    mask_templates: str = (
        ""  # MaskTheFace templates folder for fresh masks (as `unmask data build --templates`)
    )
    flip: bool = True
    jitter: float = 0.05  # colour jitter strength (brightness, contrast, saturation)
    warmup_steps: int = 0  # recipes with warm-up: generator alone for this many steps
    regressor: str = (
        ""  # landmark method: landmark_regressor weights (.safetensors) or checkpoint (.pt)
    )
    weights_dir: str = str(WEIGHTS_DIR)  # shipped weights (the landmark method's frozen regressor)
    export: bool = True  # write <export_dir>/<key>.safetensors + card at the end
    export_dir: str = ""  # default <run_dir>/weights; `unmask promote` copies into model/weights
    # Stop early (cleanly: validate, checkpoint, export) at a wall-clock or images-seen budget:
    # "30m", "1h30m", "90s", "200000img", or both joined by "+" ("45m+300000img"); "" = none.
    budget: str = ""
    # "auto": bf16 autocast + channels_last on CUDA and on CPUs with native bf16 (avx512_bf16/amx),
    # else fp32; or "bf16" / "fp32" explicitly.
    precision: str = "auto"
    note: str = ""  # free text for the model card (e.g. what a size limit cost in quality)
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)  # network name -> options
    losses: dict[str, float] = field(default_factory=dict)  # loss weight overrides for this method

    @property
    def key(self) -> str:
        return self.method


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
