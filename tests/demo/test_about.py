"""The About tab and the weights note, from the registry and the model cards (real and made up)."""

from __future__ import annotations

import json

import pytest

from demo import about
from model.config import REPO_DIR, WEIGHTS_DIR
from model.methods import METHODS

GAN = next(k for k, s in METHODS.items() if s.trainable)
OTHER_GAN = [k for k, s in METHODS.items() if s.trainable][1]

FULL_CARD = {
    "key": GAN,
    "parameters": 3_404_595,
    "data": {"dir": str(REPO_DIR / "data" / "utk"), "split": "train", "train_faces": 7176,
             "val_faces": 48, "fresh_masks": True},
    "iterations": 600, "batch": 4, "images_seen": 2400, "wall_time_s": 849.3,
    "hardware": {"device": "cpu", "name": "AMD EPYC", "cpu_threads": 1},
    "validation": {"mse_mask": 4050.406, "psnr": 22.8411, "ssim": 0.7642, "new_metric": 0.5},
    "config": {"weights_dir": str(WEIGHTS_DIR), "data": "/home/someone/data/utk"},
    "bytes": 6_821_606, "created_at": "2026-11-23T05:23:10+00:00",
}  # fmt: skip


def _write(folder, key, card) -> None:
    (folder / f"{key}.json").write_text(json.dumps(card))


@pytest.fixture
def no_metrics(tmp_path, monkeypatch):
    monkeypatch.setattr(about, "RESULTS_DIR", tmp_path / "results")


def test_a_card_becomes_a_short_table_without_server_paths(tmp_path, no_metrics):
    _write(tmp_path, GAN, FULL_CARD)
    text = about.about_markdown(card_link=lambda p: f"cards/{p.name}", weights_dir=tmp_path)
    section = text.split(f"### {METHODS[GAN].label}\n")[1].split("###")[0]
    assert "7,176 training faces, from `data/utk` (split train)" in section
    assert "600 steps × batch 4 · 2,400 images seen · 14 min · CPU (AMD EPYC, 1 thread)" in section
    assert "MSE (mask) 4,050 · PSNR 22.84 dB · SSIM 0.764 · new_metric 0.5" in section
    assert "(on 48 validation faces)" in section and "3.40 M parameters" in section
    assert f"[{tmp_path.name}/{GAN}.json](cards/{GAN}.json)" in section  # outside the repo
    assert "6.5 MiB" in section
    assert str(REPO_DIR) not in text and "/home/someone" not in text  # config is not shown
    assert sum(line.startswith("| **") for line in section.splitlines()) == 5  # short


def test_missing_fields_are_left_out_and_newer_fields_shown(tmp_path, no_metrics):
    _write(tmp_path, GAN, {"key": GAN})  # a card with nothing in it
    _write(tmp_path, OTHER_GAN, {"budget": {"wall_time_s": 30, "precision": "bf16",
                                            "hardware": {"device": "cuda", "name": "NVIDIA H200"}},
                                 "validation": {"psnr": "n/a"}})  # fmt: skip
    text = about.about_markdown(weights_dir=tmp_path)
    empty = text.split(f"### {METHODS[GAN].label}\n")[1].split("###")[0]
    assert "**What**" in empty and "**Data**" not in empty and "**Validation**" not in empty
    newer = text.split(f"### {METHODS[OTHER_GAN].label}\n")[1].split("###")[0]
    assert "30 s · NVIDIA H200 · bf16 precision" in newer
    assert "**Validation**" not in newer
    for key, spec in METHODS.items():  # every method, with or without a card
        assert f"### {spec.label}\n" in text, key
        assert spec.summary in text


def test_every_shipped_card_is_linked_and_readable(no_metrics):
    text = about.about_markdown(card_link=lambda p: f"files/{p.name}")
    for path in WEIGHTS_DIR.glob("*.json"):
        assert f"[model/weights/{path.name}](files/{path.name})" in text
    assert str(REPO_DIR) not in text
    assert "| model card |" not in text  # the raw card dump is gone
    assert "Helper models" in text


@pytest.mark.parametrize(
    ("seen", "expected"),
    [(2400, "short stand-in runs, not the papers' training"), (2_000_000, "About the weights")],
)
def test_weights_note_says_what_the_weights_are(tmp_path, seen, expected):
    _write(tmp_path, GAN, {**FULL_CARD, "images_seen": seen})
    _write(tmp_path, OTHER_GAN, {**FULL_CARD, "images_seen": 960, "wall_time_s": 2526})
    note = about.weights_note(tmp_path)
    assert expected in note
    assert f"960–{seen:,} training images" in note and "14–42 min" in note
    assert "on CPU (AMD EPYC)." in note


def test_no_cards_no_note(tmp_path):
    assert about.weights_note(tmp_path) == ""


def test_a_closed_form_fit_is_no_network_in_the_note(tmp_path, no_metrics):
    _write(tmp_path, GAN, {**FULL_CARD, "iterations": 0, "images_seen": 0, "wall_time_s": 121.7})
    _write(tmp_path, OTHER_GAN, FULL_CARD)
    note = about.weights_note(tmp_path)
    assert "saw 2,400 training images" in note and " 14 min" in note  # not "0–2,400", "2–14"
    text = about.about_markdown(weights_dir=tmp_path)
    section = text.split(f"### {METHODS[GAN].label}\n")[1].split("###")[0]
    assert "fitted in closed form (no training steps) · 2 min" in section


def test_the_metrics_table_when_measured(tmp_path, monkeypatch):
    monkeypatch.setattr(about, "RESULTS_DIR", tmp_path)
    assert "unmask eval" in about.about_markdown(weights_dir=tmp_path)
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "table2.md").write_text(
        "# Table 2\n\n| method | PSNR |\n| --- | --- |\n| telea | 20 |"
    )
    text = about.about_markdown(weights_dir=tmp_path)
    assert "| telea | 20 |" in text and "### Table 2" in text
