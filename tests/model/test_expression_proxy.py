"""The machine rater (model/expression_proxy.py): features that ignore a face's place, size and
roll; performers never on both sides of a fold; Wilson intervals; the tables and figure; and
`unmask eval --expressions` end to end on real expressions-tw faces (real dlib, real masks,
Telea and an untrained tiny Pix2Pix), skipped without ../shared/data."""

from __future__ import annotations

import csv
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from model.cli import main
from model.config import EXPRESSIONS, MASKED, REAL
from model.expression_proxy import (
    CSV_COLUMNS,
    Face,
    ProxyResult,
    landmark_features,
    performer_folds,
    pick_evaluated,
    wilson,
    write_outputs,
)
from tests.conftest import shared_or_skip


def test_features_ignore_position_size_and_roll():
    rng = np.random.default_rng(0)
    points = rng.uniform(60, 200, size=(68, 2))
    angle = np.deg2rad(17)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = (points @ rot.T) * 1.7 + np.array([31.0, -12.0])
    assert np.allclose(landmark_features(points), landmark_features(moved), atol=1e-9)
    other = points.copy()
    other[62:68, 1] += 10  # an open mouth is a different face
    assert not np.allclose(landmark_features(points), landmark_features(other))


def test_wilson_interval():
    lo, hi = wilson(5, 10)
    assert math.isclose(lo, 0.2366, abs_tol=1e-4) and math.isclose(hi, 0.7634, abs_tol=1e-4)
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and math.isclose(hi, 0.2775, abs_tol=1e-4)
    assert all(math.isnan(v) for v in wilson(0, 0))


def test_performers_held_out_and_evaluated_faces_spread():
    performers = [f"{p:02d}" for p in range(12) for _ in range(7)]
    folds = performer_folds(performers)
    assert sorted(np.concatenate(folds)) == list(range(len(performers)))
    seen = [{performers[i] for i in f} for f in folds]
    for a in range(len(seen)):
        for b in range(a + 1, len(seen)):
            assert not seen[a] & seen[b]
    img, lm = np.zeros((256, 256, 3), np.uint8), np.zeros((68, 2), np.float32)
    faces = [
        Face(f"{p}{i}", p, EXPRESSIONS[i % 5], img, lm, (0, 0, 1, 1))
        for i, p in enumerate(performers)
    ]
    chosen = pick_evaluated(faces, per_expression=6, seed=1)
    by_expr = Counter(faces[i].expression for i in chosen)
    assert set(by_expr.values()) == {6}
    for e in EXPRESSIONS:
        people = Counter(faces[i].performer for i in chosen if faces[i].expression == e)
        assert max(people.values()) == 1  # 6 faces from 6 different performers


def test_tables_and_figure(tmp_path):
    truth = [e for e in EXPRESSIONS for _ in range(4)]
    r = ProxyResult(
        truth=truth,
        faces=[
            {"image_id": f"f{i}", "performer": "01", "fold": 1, "mask_style": "n95", "mask_seed": i}
            for i in range(20)
        ],
        predictions={MASKED: ["neutral"] * 20, "telea": truth[:10] + ["sad"] * 10, REAL: truth},
        cv_truth=truth * 2,
        cv_pred=truth + ["happy"] * 20,
        conditions=[MASKED, "telea", REAL],
        context={"n_faces": 40},
    )
    files = write_outputs(r, tmp_path / "m", tmp_path / "f")
    rows = list(csv.DictReader((tmp_path / "m" / "expression_proxy.csv").open()))
    assert tuple(rows[0]) == CSV_COLUMNS
    at = {(x["method"], x["expression"]): x for x in rows}
    assert float(at[REAL, "all"]["accuracy"]) == 100.0
    assert float(at[MASKED, "neutral"]["accuracy"]) == 100.0
    assert float(at[MASKED, "all"]["accuracy"]) == 20.0
    assert float(at["real_cv", "happy"]["accuracy"]) == 100.0  # 4 + 4 of 8
    assert float(at["real_cv", "all"]["accuracy"]) == 60.0  # 20 + 4 of 40
    assert {x["kind"] for x in rows} == {"ceiling", "masked", "method", "real"}
    md = (tmp_path / "m" / "expression_proxy.md").read_text()
    assert "a proxy, not people" in md and "Ceiling" in md
    assert "| `masked` | neutral | 100% |" in md  # the answer bias
    per_face = list(csv.DictReader((tmp_path / "m" / "expression_proxy_per_face.csv").open()))
    assert len(per_face) == 20 and per_face[0]["pred_telea"] == per_face[0]["expression"]
    assert files[-1].stat().st_size > 10_000


@pytest.mark.data
def test_eval_expressions_end_to_end(tmp_path):
    from study.stimuli import scan_faces

    src = shared_or_skip("expressions-tw", "images")
    faces_dir = tmp_path / "faces"
    faces_dir.mkdir()
    files = scan_faces(src)
    performers = sorted({f.performer for f in files})[:6]
    taken = Counter()
    for f in files:  # 6 performers, at most 2 faces of each expression each
        if f.performer in performers and taken[f.performer, f.expression] < 2:
            taken[f.performer, f.expression] += 1
            (faces_dir / f.path.name).symlink_to(f.path)
    out = tmp_path / "out"
    code = main(
        [
            "eval",
            "--expressions",
            "--faces",
            str(faces_dir),
            "--per-expression",
            "3",
            "--methods",
            "telea,pix2pix",
            "--untrained",
            "tiny",
            "--proxy-cache",
            str(tmp_path / "cache.npz"),
            "--out",
            str(out),
            "--figures",
            str(out / "fig"),
        ]
    )
    assert code == 0
    rows = list(csv.DictReader((out / "expression_proxy.csv").open()))
    conditions = {x["method"] for x in rows}
    assert conditions == {"real_cv", MASKED, "telea", "pix2pix", REAL}
    at = {(x["method"], x["expression"]): x for x in rows}
    assert int(at[MASKED, "all"]["n"]) == 15 and int(at["real_cv", "all"]["n"]) >= 50
    assert (out / "fig" / "expression_proxy.png").stat().st_size > 10_000
    assert "UNTRAINED" in (out / "expression_proxy.md").read_text()
    assert Path(tmp_path / "cache.npz").is_file()  # a second run skips the alignment
