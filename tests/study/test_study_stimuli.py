"""Stimulus builder: expressions-tw naming, performer balance, a real build (dlib alignment, a
synthetic mask, Telea) into opaque files, the manifest and the database."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import cv2
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
    catch_candidates,
    parse_face_name,
    rank_faces,
    read_agreement,
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


def test_no_stimulus_shows_pixels_from_outside_the_photo(tmp_path, astronaut):
    """Photos cut through the mouth (the aligned square and the mask run past their bottom edge):
    there every stimulus, real and inpainted alike, is the flat fill, never a smeared band of
    edge pixels nor a method's paint (which would tell the inpainted faces from the real ones)."""
    from model.faces import OUTSIDE_FILL, find_and_align

    cut = np.ascontiguousarray(astronaut[30:175, 140:285])  # 145², cut through mouth and chin
    faces = _faces_dir(tmp_path / "faces", cut)
    out = tmp_path / "stimuli"
    rows = build_stimuli(faces, out, methods=["telea"], per_expression=2, n_practice=1,
                         n_catch=1, seed=5, log=lambda *_: None)  # fmt: skip
    outside = {}
    for r in rows:
        if r.image_id not in outside:
            inside = find_and_align(np.asarray(Image.open(faces / f"{r.image_id}.png"))).inside
            outside[r.image_id] = ~cv2.dilate(inside.astype(np.uint8), np.ones((3, 3))).astype(bool)
        image = np.asarray(Image.open(out / r.file))
        assert 0.1 < outside[r.image_id].mean() < 0.5, r.image_id  # the cut is in the picture
        assert (image[outside[r.image_id]] == OUTSIDE_FILL).all(), (r.method, r.image_id)


@pytest.mark.data
def test_build_from_the_expression_norms(tmp_path):
    faces = shared_or_skip("expressions-tw", "images")
    rows = build_stimuli(
        faces,
        tmp_path / "stimuli",
        methods=["telea"],
        per_expression=2,
        n_practice=1,
        n_catch=4,
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
    # Catch faces: four different answers, each face agreed on by >= 90% of the norms' observers.
    catches = [r for r in rows if r.role == "catch"]
    assert {r.method for r in catches} == {REAL}
    assert sorted(r.expression for r in catches) == ["angry", "happy", "sad", "surprise"]
    agreement = read_agreement(faces)
    assert all(agreement[r.image_id] >= 0.9 for r in catches)


@pytest.mark.data
def test_read_agreement_from_the_norms():
    agreement = read_agreement(shared_or_skip("expressions-tw", "images"))
    # Observers' choice of the performed category: every happy face of the norms was read as
    # happy by most of them; fearful and disgusted are not in the study's five.
    present = {p.stem for p in shared_or_skip("expressions-tw", "images").iterdir()}
    happy = sorted(v for k, v in agreement.items() if k[4] == "b" and k in present)
    assert len(happy) == 226 and happy[len(happy) // 2] >= 0.9  # 226 happy faces, median agreed
    assert {k[4] for k in agreement} == {"b", "c", "d", "g"}  # no neutral category in the norms
    assert all(0.0 <= v <= 1.0 for v in agreement.values())


def test_catch_candidates_alternate_answers():
    def faces(code: str, expression: str, n: int) -> list[FaceFile]:
        return [
            FaceFile(Path(f"0{j}11{code}01.jpg"), f"0{j}11{code}01", f"0{j}", expression)
            for j in range(n)
        ]

    ranked = {
        "neutral": faces("a", "neutral", 3),
        "happy": faces("b", "happy", 3),
        "sad": faces("c", "sad", 3),
        "angry": faces("d", "angry", 3),
        "surprise": faces("g", "surprise", 3),
    }
    agreement = {f.image_id: 0.95 for e in ranked for f in ranked[e]}
    agreement["0011c01"] = 0.5  # a sad face often misread: never a catch
    order = catch_candidates(ranked, agreement)
    assert [f.expression for f in order[:4]] == ["happy", "surprise", "sad", "angry"]
    assert "0011c01" not in {f.image_id for f in order}
    assert all(f.expression != "neutral" for f in order)
    first_happy = ranked["happy"][0].image_id
    assert catch_candidates(ranked, agreement, exclude=[first_happy])[0].image_id != first_happy
    # No norms sheet: happy faces only.
    assert {f.expression for f in catch_candidates(ranked, {})} == {"happy"}
    assert read_agreement(Path(__file__).parent) == {}
