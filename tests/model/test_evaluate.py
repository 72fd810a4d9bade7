"""`unmask eval`: statistics, table/figure writers, and the command end to end on a tiny dataset
built by the real `unmask data build` from generated astronaut variants (CPU, untrained nets)."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from PIL import Image

from model import evaluate as E
from model.cli import main as unmask
from model.run_folder import RunFolder


def test_summary_is_t_based_and_skips_non_finite():
    s = E.summarise([1.0, 2.0, 3.0, 4.0, math.inf, math.nan])
    # mean 2.5, sd (ddof 1) = sqrt(5/3), t(0.975, 3) = 3.182446...
    assert s.n == 4 and s.mean == pytest.approx(2.5)
    assert s.ci95 == pytest.approx(3.182446305 * math.sqrt(5 / 3) / 2, rel=1e-6)
    one = E.summarise([7.0])
    assert (one.n, one.mean) == (1, 7.0) and math.isnan(one.ci95)
    assert E.summarise([]).n == 0


def test_checkpoints_sorted_by_step(tmp_path):
    ck = tmp_path / "checkpoints"
    ck.mkdir()
    for step in (1000, 50, 300):
        (ck / f"step_{step:07d}.pt").write_bytes(b"")
    (ck / "latest.pt").write_bytes(b"")
    assert [s for s, _ in RunFolder(tmp_path).checkpoints()] == [50, 300, 1000]


def test_parse_methods():
    assert E.parse_methods("all") == list(E.METHODS)
    assert E.parse_methods("telea, masked") == ["telea"]
    with pytest.raises(SystemExit, match="unknown method"):
        E.parse_methods("telea,nope")


def test_grid_figure_has_a_labelled_header_and_one_row_per_face(tmp_path):
    rng = np.random.default_rng(0)
    rows = [
        [rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for _ in range(3)] for _ in range(2)
    ]
    path = tmp_path / "grid.png"
    E.grid_figure(
        path, ["Input", "A very long method label that must be cut", "Real"], rows, cell=64
    )
    with Image.open(path) as im:
        assert im.size == (3 * 68 + 4, 30 + 2 * 68 + 4)


def _variants(astronaut: np.ndarray) -> list[np.ndarray]:
    """Six different photos of one face: flips, shifts, a crop and a colour change."""
    a = astronaut
    return [
        a,
        a[:, ::-1],
        np.roll(a, 12, axis=1),
        np.roll(a, -10, axis=0)[:, ::-1],
        a[20:480, 10:470],
        np.clip(a.astype(int) * [1.1, 0.95, 0.9], 0, 255).astype(np.uint8),
    ]


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory, astronaut):
    root = tmp_path_factory.mktemp("eval")
    faces = root / "faces"
    faces.mkdir()
    for i, img in enumerate(_variants(astronaut)):
        Image.fromarray(np.ascontiguousarray(img)).save(faces / f"astro_{i}.png")
    out = root / "dataset"
    assert (
        unmask(["data", "build", "--faces", str(faces), "--out", str(out), "--workers", "1"]) == 0
    )
    return root, out


def test_eval_end_to_end(tiny_dataset, tmp_path):
    root, data = tiny_dataset
    from model.data import load_split

    # The split is a hash of the file name: evaluate whichever split got the most images.
    split = max(("test", "val", "train"), key=lambda s: len(load_split(data, s)))
    photos = root / "photos"  # stand-in for the real masked photos: any photo with one face
    photos.mkdir(exist_ok=True)
    Image.open(root / "faces" / "astro_1.png").save(photos / "a.jpg")
    out, figs = tmp_path / "metrics", tmp_path / "figures"
    argv = [
        "eval",
        "--data",
        str(data),
        "--split",
        split,
        "--methods",
        "telea,pix2pix_mask",
        "--limit",
        "3",
    ]
    argv += ["--batch", "2", "--untrained", "tiny", "--out", str(out), "--figures", str(figs)]
    assert unmask([*argv, "--real-photos", str(photos)]) == 0

    with open(out / "table2.csv") as f:
        table = {r["method"]: r for r in csv.DictReader(f)}
    assert list(table) == [
        "masked",
        "telea",
        "pix2pix_mask",
    ]  # the floor first, then registry order
    for name in (m.name for m in E.METRICS):
        assert {f"{name}_mean", f"{name}_ci95", f"{name}_n"} <= set(table["telea"])
    assert {"n", "ms_per_image", "machine", "status"} <= set(table["telea"])
    n = int(table["masked"]["n"])
    assert 2 <= n <= 3 and all(int(r["n"]) == n for r in table.values())
    # Telea fills the hole from its border: far closer to the real face than the mask itself.
    assert float(table["masked"]["mse_mean"]) > float(table["telea"]["mse_mean"])
    assert float(table["masked"]["psnr_mean"]) < float(table["telea"]["psnr_mean"])
    assert (
        float(table["masked"]["identity_mean"]) >= 0
        and float(table["telea"]["landmark_nme_mean"]) >= 0
    )
    assert float(table["telea"]["ms_per_image"]) > 0

    with open(out / "per_image.csv") as f:
        per_image = list(csv.DictReader(f))
    assert len(per_image) == 3 * n
    assert set(per_image[0]) == {
        "id",
        "method",
        "mse",
        "psnr",
        "ssim",
        "lpips",
        "identity",
        "landmark_nme",
    }
    md = (out / "table2.md").read_text()
    assert "Masked input (floor)" in md and "Patch-based (Telea)" in md and "TEST RUN" in md

    with Image.open(figs / "qualitative_synthetic.png") as im:
        assert im.width > 4 * 192  # input, telea, pix2pix_mask, real
    assert (figs / "qualitative_real.png").is_file()


def test_missing_weights_are_a_note_not_a_crash(tiny_dataset, tmp_path):
    _, data = tiny_dataset
    from model.data import load_split

    split = max(("test", "val", "train"), key=lambda s: len(load_split(data, s)))
    out = tmp_path / "metrics"
    argv = ["eval", "--data", str(data), "--split", split, "--methods", "unmask", "--limit", "1"]
    # An empty weights folder: loading `unmask` fails, which must become a note, not a crash.
    argv += ["--weights-dir", str(tmp_path / "no-weights")]
    assert unmask([*argv, "--no-figures", "--no-face-metrics", "--out", str(out)]) == 0
    with open(out / "table2.csv") as f:
        table = {r["method"]: r for r in csv.DictReader(f)}
    assert table["unmask"]["status"] != "ok"
    assert table["unmask"]["note"] and "Skipped `unmask`" in (out / "table2.md").read_text()


def test_eval_run_checkpoints_table1(tiny_dataset, tmp_path):
    _, data = tiny_dataset
    run = tmp_path / "run"
    train = ["train", "--method", "pix2pix_mask", "--data", str(data), "--preset", "tiny"]
    train += ["--steps", "3", "--ckpt-every", "2", "--no-export", "--run-dir", str(run)]
    assert unmask([*train, "--device", "cpu", "--no-progress"]) == 0
    steps = [s for s, _ in RunFolder(run).checkpoints()]
    assert len(steps) >= 2

    out = tmp_path / "metrics"
    # No --data: the dataset is read from the run's config.toml.
    argv = ["eval", "--run", str(run), "--split", "train", "--limit", "2", "--batch", "2"]
    assert unmask([*argv, "--no-face-metrics", "--out", str(out)]) == 0
    with open(out / "table1.csv") as f:
        table = list(csv.DictReader(f))
    assert [int(r["step"]) for r in table] == steps
    assert all(int(r["n"]) == 2 and float(r["mse_mean"]) > 0 for r in table)
    md = (out / "table1.md").read_text()
    assert "pix2pix_mask" in md and all(f"step {s}" in md for s in steps)


def test_eval_segmenter_on_a_built_split(tiny_dataset, tmp_path):
    """`unmask eval --segmenter` with the shipped segmenter: IoU table, JSON and the photo grid."""
    import json

    root, data = tiny_dataset
    from model.data import load_split

    split = max(("test", "val", "train"), key=lambda s: len(load_split(data, s)))
    photos = root / "photos_seg"
    photos.mkdir(exist_ok=True)
    Image.open(root / "faces" / "astro_1.png").save(photos / "a.jpg")
    out, figs = tmp_path / "metrics", tmp_path / "figures"
    argv = ["eval", "--segmenter", "--data", str(data), "--split", split]
    argv += ["--out", str(out), "--figures", str(figs), "--real-photos", str(photos)]
    assert unmask(argv) == 0
    report = json.loads((out / "segmenter.json").read_text())
    assert report["synthetic"]["n"] == len(load_split(data, split).ids) > 0
    # The shipped segmenter (val IoU 0.97 on UTKFace) finds the procedural masks on the astronaut.
    assert report["synthetic"]["iou_mean"] > 0.8
    assert report["synthetic"]["final_iou_mean"] > 0.8  # the pipeline's hole too
    assert report["real"]["shown"] == 1 and (figs / "segmenter_real.png").is_file()
    assert "mean IoU" in (out / "segmenter.md").read_text()


def test_default_output_is_a_new_run_folder_not_results(tiny_dataset, tmp_path, monkeypatch):
    """README step 3 rewrote the committed results/metrics/table2.* and the figures."""
    from model.config import RESULTS_DIR
    from model.data import load_split

    _, data = tiny_dataset
    split = max(("test", "val", "train"), key=lambda s: len(load_split(data, s)))
    committed = {
        p: p.stat().st_mtime_ns for p in RESULTS_DIR.rglob("*") if p.is_file()
    }  # what the repository ships
    monkeypatch.chdir(tmp_path)
    argv = ["eval", "--data", str(data), "--split", split, "--methods", "telea", "--limit", "1"]
    argv += ["--no-face-metrics", "--real-photos", str(tmp_path / "none")]
    assert unmask(argv) == 0
    assert unmask(argv) == 0  # a second run in the same second gets its own folder
    runs = sorted((tmp_path / "runs" / "eval").iterdir())
    assert len(runs) == 2 and runs[0].name != runs[1].name
    for run in runs:
        assert (run / "table2.md").is_file() and (run / "table2.csv").is_file()
        assert (run / "figures" / "qualitative_synthetic.png").is_file()
    assert {p: p.stat().st_mtime_ns for p in committed} == committed


def _split_cut_by_the_photo_edge() -> tuple:
    """Two faces whose bottom 40 rows lie outside the photo (the flat fill), masked over rows
    150-255: 66 of the mask's 106 rows are inside the photo."""
    from model.data import PairedSplit
    from model.faces import OUTSIDE_FILL

    rng = np.random.default_rng(3)
    face = rng.integers(0, 256, (2, 256, 256, 3), dtype=np.uint8)
    face[:, 216:] = OUTSIDE_FILL
    seg = np.zeros((2, 256, 256), bool)
    seg[:, 150:] = True
    masked = face.copy()
    masked[seg] = 0
    split = PairedSplit(["a", "b"], face, masked, seg, np.zeros((2, 68, 2), np.float32))
    return split, seg


def test_eval_scores_the_output_as_delivered_outside_the_photo_is_the_fill():
    """What a method paints where the photo ends is set back to the fill (as the pipeline does for
    every real photo) and is not part of MSE (mask): those pixels hold no ground truth."""
    from model.faces import OUTSIDE_FILL

    split, seg = _split_cut_by_the_photo_edge()
    cpu = __import__("torch").device("cpu")

    def paint(value_outside: float):
        def infer(masked, mask):  # the real face inside the photo + 0.1 everywhere in the hole
            real = __import__("torch").from_numpy(split.face).permute(0, 3, 1, 2).float()
            out = (real / 127.5 - 1 + 0.1 * mask).clamp(-1, 1)
            out[:, :, 216:] = value_outside
            return out

        return infer

    a, kept = E.evaluate_outputs(
        "x", "x", split, paint(1.0), device=cpu, batch=2, refs=None, keep=[0]
    )
    b, _ = E.evaluate_outputs("x", "x", split, paint(-1.0), device=cpu, batch=2, refs=None)
    assert a.rows == [{**r, "method": "x"} for r in b.rows]  # what lies outside does not count
    assert (kept[0][216:] == OUTSIDE_FILL).all()  # and is the fill in the figures
    # MSE (mask): over the 66 mask rows inside the photo only, where every pixel is off by 0.1
    # (12.75 grey levels, less where clipped at 255): about 3 * 12.75**2 = 488 per pixel.
    assert 400 < a.rows[0]["mse"] < 490


def test_notes_say_equal_budget_only_when_the_cards_agree():
    ctx = {"data": "d", "split": "test", "when": "now", "machine": "m", "device": "cpu"}

    def row(key, given):
        return E.MethodResult(key, key, budget=f"{key} budget", budget_given=given)

    same = E._notes(ctx, [row("pix2pix", "8000img"), row("unmask", "8000img"), row("telea", "")])
    assert any("**Equal budget**" in n and "`8000img`" in n for n in same)
    mixed = E._notes(ctx, [row("pix2pix", "8000img"), row("unmask", "30m")])
    assert not any("Equal budget" in n for n in mixed)


def test_notes_say_equal_wall_clock_when_every_run_fits_the_one_time_budget():
    ctx = {"data": "d", "split": "test", "when": "now", "machine": "m", "device": "cpu"}
    hw = {"device": "cpu", "name": "Xeon", "processes": 1, "cpu_threads": 2}

    def row(key, given, wall, threads=2):
        r = E.MethodResult(key, key)
        budget = {"given": given, "wall_time_s": wall, "images_seen": 1, "precision": "bf16"}
        E.attach_card(r, {"budget": budget, "hardware": {**hw, "cpu_threads": threads}})
        return r

    def equal(rows):
        return [n for n in E._notes(ctx, rows) if "Equal budget" in n]

    fits = [row("pix2pix", "26m", 1570.0), row("unmask", "8000img", 1538.0)]
    (note,) = equal(fits)
    assert "at most 26 minutes" in note and "Xeon, 2 threads, bf16" in note
    assert "`unmask` `--budget 8000img`, which ended sooner" in note and "`unmask` 25.6" in note
    assert not equal([row("pix2pix", "26m", 1570.0), row("unmask", "8000img", 1700.0)])  # longer
    assert not equal([row("pix2pix", "26m", 1570.0), row("unmask", "8000img", 900.0, threads=1)])
    assert not equal([row("pix2pix", "26m", 1570.0), row("unmask", "30m", 1500.0)])  # two budgets


def test_keep_rows_rescores_one_method_and_keeps_the_others(tiny_dataset, tmp_path):
    _, data = tiny_dataset
    from model.data import load_split

    split = max(("test", "val", "train"), key=lambda s: len(load_split(data, s)))
    base = ["eval", "--data", str(data), "--split", split, "--limit", "3", "--batch", "2"]
    base += ["--untrained", "tiny", "--no-figures", "--no-face-metrics"]
    first, second = tmp_path / "first", tmp_path / "second"
    assert unmask([*base, "--methods", "telea,pix2pix_mask", "--out", str(first)]) == 0
    argv = [*base, "--methods", "pix2pix_mask", "--keep-rows", str(first), "--out", str(second)]
    # With the grids: the kept row's method runs on the figure's faces only, and is shown.
    argv = [a for a in argv if a != "--no-figures"] + ["--figures", str(tmp_path / "figs")]
    assert unmask([*argv, "--real-photos", str(tmp_path / "no-photos")]) == 0
    with Image.open(tmp_path / "figs" / "qualitative_synthetic.png") as im:
        assert im.width > 4 * 192  # input, telea (kept), pix2pix_mask (re-scored), real

    def table(folder):
        with open(folder / "table2.csv") as f:
            return {r["method"]: r for r in csv.DictReader(f)}

    old, new = table(first), table(second)
    assert list(new) == ["masked", "telea", "pix2pix_mask"]  # registry order, kept row in place
    for col in ("n", "mse_mean", "psnr_mean", "ssim_mean", "lpips_mean", "ms_per_image"):
        assert new["telea"][col] == old["telea"][col]  # kept, not re-scored
    with open(second / "per_image.csv") as f:
        assert {r["method"] for r in csv.DictReader(f)} == {"masked", "telea", "pix2pix_mask"}
    md = (second / "table2.md").read_text()
    assert "Patch-based (Telea)" in md and "`telea` kept from the table in" in md
    # Other images than the kept table's: refused with the reason, nothing mixed.
    other = [a if a != "3" else "2" for a in base]  # --limit 2
    with pytest.raises(SystemExit, match="not the 2 images"):
        unmask(
            [
                *other,
                "--methods",
                "pix2pix_mask",
                "--keep-rows",
                str(first),
                "--out",
                str(tmp_path / "third"),
            ]
        )


def test_kept_rows_carry_the_time_they_were_scored(tmp_path):
    """A table that itself kept rows from an earlier one: keeping them again names the earlier time."""
    md = tmp_path / "table2.md"
    md.write_text(
        "- Data: `data/utk`, split `test`; evaluated 2026-11-30 15:52 UTC on Linux (device `cpu`).\n"
        "- Rows: rows of `telea`, `pix2pix` kept from the table in `results/metrics` (evaluated "
        "2026-11-30 12:54 UTC on Linux; `unmask eval --keep-rows`); the others re-scored now\n"
    )
    assert E._kept_when(md, ["telea", "pix2pix"]) == "2026-11-30 12:54 UTC on Linux"
    assert E._kept_when(md, ["unmask"]) == "2026-11-30 15:52 UTC on Linux"
    both = E._kept_when(md, ["telea", "unmask"])
    assert both == "2026-11-30 12:54 UTC on Linux; `unmask` 2026-11-30 15:52 UTC on Linux"
    assert E._kept_when(tmp_path / "none.md", ["telea"]) == "at an earlier time"


def test_kept_rows_of_a_chain_of_kept_tables_each_keep_their_own_time(tmp_path):
    """A Rows note that already names several times: keeping some of its rows again gives each
    its own time, and names no time of a row not kept now."""
    md = tmp_path / "table2.md"
    md.write_text(
        "- Data: `data/utk`, split `test`; evaluated 2026-12-01 05:49 UTC on Linux (device `cpu`).\n"
        "- Rows: rows of `telea`, `eigenface`, `pix2pix`, `unmask` kept from the table in `runs/a` "
        "(evaluated 2026-11-30 12:54 UTC on Linux; `unmask` 2026-12-01 04:41 UTC on Linux; "
        "`pix2pix` 2026-12-01 05:43 UTC on Linux; `unmask eval --keep-rows`); the others re-scored now\n"
    )
    got = E._kept_when(md, ["telea", "eigenface", "unmask"])
    assert got == "2026-11-30 12:54 UTC on Linux; `unmask` 2026-12-01 04:41 UTC on Linux"
    got = E._kept_when(md, ["unmask", "pix2pix_mask", "telea"])
    assert got == (
        "2026-12-01 04:41 UTC on Linux; `pix2pix_mask` 2026-12-01 05:49 UTC on Linux; "
        "`telea` 2026-11-30 12:54 UTC on Linux"
    )
