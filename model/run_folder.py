"""A training run's folder and its checkpoint files: the one owner of their layout.

runs/<method>-<preset>/           (or --run-dir)
  config.toml                     the resolved TrainConfig (model/train_config.to_toml)
  log.jsonl                       one JSON object a line: kind "train" | "val", step,
                                  images_seen, wall_s, then the losses or validation metrics
  checkpoints/step_0000100.pt     everything to resume exactly (see `Checkpoint`)
  samples/step_0000100.png        the validation sample grid at that step
  weights/<key>.safetensors       the export `unmask promote` ships (+ <key>.json card)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from model.config import RUNS_DIR

STEP_DIGITS = 7  # step_0000100.pt: file names sort as steps do


class Checkpoint(TypedDict, total=False):
    """What `checkpoints/step_*.pt` holds (torch.save of plain tensors and containers)."""

    key: str  # the trained key (a METHODS key, "segmenter" or "landmark_regressor")
    step: int
    images_seen: int
    wall_s: float  # training wall clock so far, the closed-form fit included
    world: int  # data-parallel processes
    config: dict[str, Any]  # dataclasses.asdict(TrainConfig)
    architectures: dict[str, dict[str, Any]]  # network name -> what rebuilds it
    nets: dict[str, dict[str, Any]]  # network name -> state_dict
    optimizers: dict[str, dict[str, Any]]
    rng: list[dict[str, Any]]  # one per process: {"cpu": ..., "cuda": ...}
    val: dict[str, float]  # the last validation (model.metrics keys)
    hardware: dict[str, Any]
    precision: str
    faces: dict[str, int]  # {"train": N, "val": N}


@dataclass(frozen=True)
class RunFolder:
    path: Path  # a str is accepted and made a Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @classmethod
    def default(cls, method: str, preset: str) -> RunFolder:
        """runs/<method>-<preset name>, where `unmask train` writes when no --run-dir is given."""
        return cls(RUNS_DIR / f"{method}-{Path(preset).stem}")

    # ---- the layout -----------------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.path / "config.toml"

    @property
    def log_path(self) -> Path:
        return self.path / "log.jsonl"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def samples_dir(self) -> Path:
        return self.path / "samples"

    @property
    def weights_dir(self) -> Path:
        return self.path / "weights"

    def checkpoint_path(self, step: int) -> Path:
        return self.checkpoints_dir / f"step_{step:0{STEP_DIGITS}d}.pt"

    def sample_path(self, step: int) -> Path:
        return self.samples_dir / f"step_{step:0{STEP_DIGITS}d}.png"

    # ---- writing --------------------------------------------------------------------------------

    def create(self, config_toml: str) -> None:
        """Make the folders and write the resolved config (a resumed run rewrites it)."""
        self.checkpoints_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(config_toml)

    def save_checkpoint(self, ckpt: Checkpoint, keep: int = 0) -> Path:
        """Write checkpoints/step_<step>.pt atomically (a crash leaves the previous one, never half
        a file); then, when `keep` > 0, delete all but the newest `keep`."""
        import torch

        path = self.checkpoint_path(ckpt["step"])
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save(ckpt, tmp)
        os.replace(tmp, path)
        if keep:
            for _, old in self.checkpoints()[:-keep]:
                old.unlink()
        return path

    # ---- reading --------------------------------------------------------------------------------

    def checkpoints(self) -> list[tuple[int, Path]]:
        """(step, path) of every checkpoints/step_*.pt, by step (other files are ignored)."""
        found = []
        for p in self.checkpoints_dir.glob("step_*.pt"):
            try:
                found.append((int(p.stem.split("_", 1)[1]), p))
            except ValueError:
                continue
        return sorted(found)

    def latest_checkpoint(self) -> Path:
        found = self.checkpoints()
        if not found:
            raise FileNotFoundError(f"no checkpoints/step_*.pt in {self.path}")
        return found[-1][1]

    def config(self) -> dict[str, Any]:
        """The resolved config.toml ({} when there is none)."""
        import tomllib

        return tomllib.loads(self.config_path.read_text()) if self.config_path.is_file() else {}

    def data_dir(self) -> Path | None:
        """The dataset the run trained on (config.toml's `data`), or None."""
        data = self.config().get("data")
        return Path(data) if isinstance(data, str) and data else None

    def log(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The rows of log.jsonl ([] when there is none), only those of `kind` when given."""
        if not self.log_path.is_file():
            return []
        rows = [json.loads(line) for line in self.log_path.read_text().splitlines() if line]
        return [r for r in rows if kind is None or r.get("kind") == kind]

    def last_sample(self) -> Path | None:
        found = sorted(self.samples_dir.glob("step_*.png"))
        return found[-1] if found else None

    def exported(self) -> list[str]:
        """Keys of the weights exported into weights/ (`<key>.safetensors`)."""
        return sorted(p.stem for p in self.weights_dir.glob("*.safetensors"))


def load_checkpoint(path: str | Path, device: Any = "cpu") -> Checkpoint:
    import torch

    return torch.load(path, map_location=device, weights_only=True)


AVERAGED = "{}_ema"  # the name of a network's weight average in a checkpoint (`--ema`)


def checkpoint_network(ckpt: Checkpoint, name: str, averaged: bool = False):
    """Network `name` of a checkpoint, rebuilt from its architecture with its trained weights;
    with `averaged`, its weight average (`unmask train --ema`) where the run kept one."""
    from model.networks import from_architecture

    if averaged and AVERAGED.format(name) in ckpt["nets"]:
        name = AVERAGED.format(name)
    net = from_architecture(ckpt["architectures"][name])
    net.load_state_dict(ckpt["nets"][name])
    return net
