"""Shipped weights: `model/weights/<key>.safetensors` (fp16) and its `<key>.json` model card.

The card records how the weights were made (architecture, data, iterations, hardware, validation
metrics) and the sha256 of the weights file; loading checks it and names the file on any problem.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from model.config import WEIGHTS_DIR

CARD_FORMAT = 1


class WeightsError(RuntimeError):
    """Weights missing, unreadable or not matching their card's sha256; the message names the file."""


def weights_paths(key: str, weights_dir: str | Path = WEIGHTS_DIR) -> tuple[Path, Path]:
    d = Path(weights_dir)
    return d / f"{key}.safetensors", d / f"{key}.json"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def save_weights(
    key: str,
    state_dict: dict[str, torch.Tensor],
    card: dict[str, Any],
    weights_dir: str | Path = WEIGHTS_DIR,
) -> Path:
    """Write `<key>.safetensors` (floating tensors as fp16) and `<key>.json` (card + sha256, size).

    Both files are written atomically (temporary file + rename), weights first, so a card never
    describes a half-written file. Returns the weights path.
    """
    from safetensors.torch import save

    path, card_path = weights_paths(key, weights_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {
        k: (
            v.detach().to("cpu", torch.float16) if v.is_floating_point() else v.detach().cpu()
        ).contiguous()
        for k, v in state_dict.items()
    }
    _atomic_write_bytes(path, save(tensors, metadata={"key": key, "format": "unmask-weights"}))
    full = {
        "key": key,
        "card_format": CARD_FORMAT,
        **card,
        "weights_file": path.name,
        "dtype": "float16",
        "bytes": path.stat().st_size,
        "sha256": sha256_file(path),
    }
    _atomic_write_bytes(
        card_path, (json.dumps(full, indent=2, sort_keys=False, default=str) + "\n").encode()
    )
    return path


def load_weights(
    key: str, weights_dir: str | Path = WEIGHTS_DIR
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state_dict, card) for `key`; raises WeightsError naming the file when missing or corrupt.

    Floating tensors come back as stored (fp16); `module.load_state_dict` casts them to the module's dtype.
    """
    from safetensors.torch import load

    path, card_path = weights_paths(key, weights_dir)
    retrain = (
        f"train it with `unmask train --method {key} --data DIR`, then ship the run with "
        f"`unmask promote --run runs/{key}-compact --data DIR`"
    )
    if not path.is_file():
        raise WeightsError(f"weights for {key!r} not found: {path} is missing ({retrain})")
    if not card_path.is_file():
        raise WeightsError(f"model card for {key!r} not found: {card_path} is missing ({retrain})")
    try:
        card = json.loads(card_path.read_text())
    except (OSError, ValueError) as err:
        raise WeightsError(f"model card {card_path} is unreadable: {err}") from err
    expected = card.get("sha256")
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if expected != actual:
        raise WeightsError(
            f"weights file {path} is corrupt: sha256 {actual[:12]}... does not match its card's "
            f"{str(expected)[:12]}... ({card_path}); restore it from git or {retrain}"
        )
    try:
        state = load(data)
    except Exception as err:  # safetensors raises its own error types on a bad header
        raise WeightsError(f"weights file {path} is unreadable: {err}") from err
    return state, card
