"""The loss table: every recipe and preset names only known terms; a misspelt term is refused at
start (it used to be dropped silently, training with the other terms alone)."""

from __future__ import annotations

import pytest
import torch

from model import losses
from model.methods.gan import RECIPES
from model.train_config import preset_names, resolve


@pytest.mark.parametrize("preset", preset_names())
@pytest.mark.parametrize("key", list(RECIPES))
def test_every_recipe_and_preset_names_known_terms(key, preset):
    cfg = resolve(key, preset)
    weights = {**RECIPES[key].losses, **cfg.losses}
    losses.check_terms(key, weights, RECIPES[key].discriminators)
    assert weights, "a recipe with no loss trains nothing"


def test_a_misspelt_term_is_refused_before_training():
    from model.tasks import GanTask

    cfg = resolve("pix2pix", "tiny", losses={"L1": 200.0})
    with pytest.raises(ValueError, match=r"unknown loss term\(s\) \['L1'\].*'l1'"):
        GanTask(cfg, torch.device("cpu"))


def test_an_adversarial_term_needs_its_discriminator():
    with pytest.raises(ValueError, match="adv_local"):
        losses.check_terms("pix2pix", {"adv_local": 1.0}, {"global": {}})
