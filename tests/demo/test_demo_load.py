"""benchmarks/demo_load.py, small: 4 visitors x 2 masked photos at once against a real demo server.

Issue 14: two visitors uploading masked photos at once crashed the server (one CenterFace net
shared by Gradio's workers). These photos are masked faces dlib's HOG misses, so every upload
goes through CenterFace, from several workers at once.
"""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
from PIL import Image

from model import centerface, faces
from model.config import REPO_DIR
from model.methods import METHODS

pytestmark = pytest.mark.server

VISITORS = 4
PHOTOS_EACH = 2


def _benchmark():
    spec = importlib.util.spec_from_file_location(
        "demo_load", REPO_DIR / "benchmarks" / "demo_load.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


def test_four_visitors_with_masked_photos_at_once(demo_server, tmp_path):
    if not centerface.available():
        pytest.skip(f"CenterFace is not installed ({centerface.INSTALL_HINT})")
    load = _benchmark()
    photos = load.generated_photos(tmp_path / "photos")
    for path in photos:  # every upload reaches CenterFace
        assert faces.detect_faces(np.asarray(Image.open(path).convert("RGB")), upsample=0) == []
    plan = load.photo_plan(VISITORS, PHOTOS_EACH, "generated", photos, [], seed=0)
    assert len({p for visit in plan for p in visit}) == VISITORS * PHOTOS_EACH  # all different

    tally, _wall = load.run_load(demo_server, plan, list(METHODS), tmp_path, timeout=900)

    assert tally.errors == []
    assert tally.refused == []
    assert tally.photos_done == VISITORS * PHOTOS_EACH
    assert {step: len(v) for step, v in tally.seconds.items()} == {
        step: VISITORS * PHOTOS_EACH for step in load.STEPS
    }
    assert load.alive(demo_server)  # no crash
