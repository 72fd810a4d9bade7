"""Stimulus builder: expressions-tw naming, performer balance, a real build (dlib alignment, a
synthetic mask, Telea) into opaque files, the manifest and the database."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.config import EXPRESSIONS, REAL
from study import design
from study.db import make_engine
from study.service import StudyService
from study.stimuli import (
    FaceFile,
    build_stimuli,
    parse_face_name,
    rank_faces,
    read_manifest,
    register,
    resolve_methods,
)
from tests.conftest import shared_or_skip


@pytest.mark.parametrize(
    "name,expected",
    [
        ("0111a02.jpg", ("01", "neutral")),
        ("0211b05.jpg", ("02", "happy")),
        ("3021c01.JPG", ("30", "sad")),
        ("1031d11.jpg", ("10", "angry")),
        ("0511g03.png", ("05", "surprise")),
        ("0111e01.jpg", None),  # disgusted: not in the five
        ("0111f01.jpg", None),  # fearful
        ("0101002.jpg", None),  # unlabelled
        ("notes.txt", None),
    ],
)
def test_parse_face_name(name, expected):
    face = parse_face_name(Path(name))
    assert (None if face is None else (face.performer, face.expression)) == expected


def test_rank_faces_spreads_performers():
    faces = [
        FaceFile(Path(f"{p:02d}11{c}{j:02d}.jpg"), f"{p:02d}11{c}{j:02d}", f"{p:02d}", e)
        for p in range(1, 7)
        for c, e in zip("abcdg", ("neutral", "happy", "sad", "angry", "surprise"), strict=True)
        for j in range(3)
    ]
    ranked = rank_faces(faces, seed=3)
    assert set(ranked) == set(EXPRESSIONS)
    for e in EXPRESSIONS:
        assert len(ranked[e]) == 18
        assert len({f.performer for f in ranked[e][:6]}) == 6  # a round over every performer
    usage = Counter(f.performer for e in EXPRESSIONS for f in ranked[e][:4])
    assert max(usage.values()) - min(usage.values()) <= 1
    assert rank_faces(faces, seed=3) == ranked


def test_resolve_methods():
    assert resolve_methods("unmask,telea") == ["telea", "unmask"]
    with pytest.raises(ValueError):
        resolve_methods("telea,nope")


def _faces_dir(folder: Path, astronaut: np.ndarray) -> Path:
    """The astronaut as 3 'performers' x 5 expressions (flips and brightness make them differ)."""
    folder.mkdir()
    base = np.asarray(Image.fromarray(astronaut).resize((256, 256), Image.BILINEAR))
    for p in range(3):
        for j, code in enumerate("abcdg"):
            img = base[:, ::-1] if (p + j) % 2 else base
            img = np.clip(img.astype(np.int16) + 6 * p - 4 * j, 0, 255).astype(np.uint8)
            Image.fromarray(np.ascontiguousarray(img)).save(folder / f"{p + 1:02d}11{code}01.png")
    return folder


def test_build_with_telea(tmp_path, astronaut):
    faces = _faces_dir(tmp_path / "faces", astronaut)
    out = tmp_path / "stimuli"
    rows = build_stimuli(
        faces,
        out,
        methods=["telea"],
        per_expression=2,
        n_practice=1,
        n_catch=1,
        seed=5,
        log=lambda *_: None,
    )
    main = [r for r in rows if r.role == "main"]
    assert len(main) == 5 * 2 * 2  # faces x conditions
    assert Counter(r.expression for r in main) == {e: 4 for e in EXPRESSIONS}
    assert {r.method for r in main} == {"telea", REAL}
    (catch,) = [r for r in rows if r.role == "catch"]
    assert (catch.method, catch.expression) == (REAL, "happy")
    (practice,) = [r for r in rows if r.role == "practice"]
    main_faces = {r.image_id for r in main}
    assert catch.image_id not in main_faces and practice.image_id not in main_faces
    for r in rows:
        path = out / r.file
        assert r.file == f"images/{r.stimulus_id}.png" and "telea" not in r.file
        assert hashlib.sha256(path.read_bytes()).hexdigest() == r.sha256
        assert Image.open(path).size == (256, 256)
    # The inpainted face differs from the real one (inside the mask) but is the same face.
    by = {(r.image_id, r.method): np.asarray(Image.open(out / r.file)) for r in main}
    some_face = main[0].image_id
    diff = np.abs(by[(some_face, "telea")].astype(int) - by[(some_face, REAL)].astype(int))
    assert 0 < (diff.sum(-1) > 0).mean() < 0.5

    assert read_manifest(out) == rows
    service = StudyService(make_engine(tmp_path / "study.sqlite"))
    assert register(service, out) == len(rows)
    assert design.validate(service.stimulus_refs()) == ("telea", REAL)
    info = service.start_session("built", consent=True)
    assert info.n_trials == 1 + 10 + 1
    view = service.next_trial(info.token)
    assert view.image_png == (out / practice.file).read_bytes()


@pytest.mark.data
def test_build_from_the_expression_norms(tmp_path):
    faces = shared_or_skip("expressions-tw", "images")
    rows = build_stimuli(
        faces,
        tmp_path / "stimuli",
        methods=["telea"],
        per_expression=2,
        n_practice=1,
        n_catch=1,
        seed=0,
        log=lambda *_: None,
    )
    main = [r for r in rows if r.role == "main" and r.method == REAL]
    assert Counter(r.expression for r in main) == {e: 2 for e in EXPRESSIONS}
    for e in EXPRESSIONS:  # two different performers for each expression
        assert len({r.performer for r in main if r.expression == e}) == 2
    # The labels come from the file names: 5th character a/b/c/d/g.
    codes = {"neutral": "a", "happy": "b", "sad": "c", "angry": "d", "surprise": "g"}
    assert all(r.image_id[4] == codes[r.expression] for r in rows)
    (catch,) = [r for r in rows if r.role == "catch"]
    assert catch.expression == "happy" and catch.method == REAL
