"""The trainer on tiny networks and 64x64 faces: train -> export -> load -> identical predictions for
every trainable key; resume equals an uninterrupted run; torchrun with 2 CPU processes (gloo)
equals one process on the same effective batch; weights I/O refuses missing or corrupt files."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from support import free_port

from model.checkpoint import WeightsError, load_weights, save_weights
from model.methods import METHODS
from model.methods.gan import RECIPES
from model.networks import from_architecture
from model.networks.landmark_regressor import MIRROR_68
from model.run_folder import RunFolder
from model.train import train
from model.train_config import resolve

GANS = list(RECIPES)
SIZE = 64


@dataclass
class Split:  # the fields of model.data.PairedSplit
    ids: list[str]
    face: np.ndarray
    masked: np.ndarray
    seg: np.ndarray
    landmarks: np.ndarray


def make_split(astronaut: np.ndarray, n: int, size: int = SIZE, seed: int = 0) -> Split:
    """n crops of the astronaut with a lower-face 'mask' of a random colour and jittered landmarks."""
    rng = np.random.default_rng(seed)
    faces, masked, segs, lms = [], [], [], []
    base = (
        np.array([[30 + 4 * (i % 17), 20 + 2 * (i % 9)] for i in range(68)], np.float32)
        * size
        / 100
    )
    for _ in range(n):
        y, x = rng.integers(0, 60, 2)
        f = cv2.resize(
            astronaut[20 + y : 240 + y, 130 + x : 350 + x],
            (size, size),
            interpolation=cv2.INTER_AREA,
        )
        s = np.zeros((size, size), bool)
        top = int(rng.integers(size // 2, size // 2 + 6))
        s[top : size - 3, size // 5 : size - size // 5] = True
        m = f.copy()
        m[s] = rng.integers(0, 256, 3)
        faces.append(f), masked.append(m), segs.append(s)
        lms.append(base + rng.normal(0, 1, base.shape).astype(np.float32))
    return Split(
        [f"f{i}" for i in range(n)],
        np.stack(faces),
        np.stack(masked),
        np.stack(segs),
        np.stack(lms),
    )


@pytest.fixture(scope="module")
def splits(astronaut):
    return make_split(astronaut, 6), make_split(astronaut, 2, seed=1)


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory, splits):
    """Shared weights folder, holding a landmark regressor for the `landmark` method's C1."""
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("weights")
    run = tmp_path_factory.mktemp("runs") / "regressor"
    train(
        resolve(
            "landmark_regressor",
            "tiny",
            run_dir=str(run),
            weights_dir=str(d),
            export_dir=str(d),
            steps=2,
        ),
        *splits,
        progress=False,
    )
    return d


def _cfg(key: str, run: Path, weights_dir: Path, **kw):
    return resolve(
        key,
        "tiny",
        run_dir=str(run),
        weights_dir=str(weights_dir),
        export_dir=str(weights_dir),
        **kw,
    )


def _half_rounded(net: torch.nn.Module) -> torch.nn.Module:
    """The network as the fp16 export stores it: its state dict (which may quantize a buffer)
    with every floating tensor rounded to fp16, loaded back."""
    state = net.state_dict()
    net.load_state_dict({k: v.half() if v.is_floating_point() else v for k, v in state.items()})
    return net


@pytest.mark.parametrize("key", GANS)
def test_gan_train_export_load_identical(key, splits, weights_dir, tmp_path):
    from model.methods.gan import build, from_checkpoint

    torch.set_num_threads(1)
    summary = train(_cfg(key, tmp_path / "run", weights_dir, steps=2), *splits, progress=False)
    assert summary["steps"] == 2 and Path(summary["weights"]).is_file()
    run = tmp_path / "run"
    assert (run / "config.toml").is_file() and list((run / "samples").glob("*.png"))
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert any(r["kind"] == "val" and "psnr" in r for r in log)

    face, masked, seg = splits[1].face, splits[1].masked, splits[1].seg
    ckpt_method = from_checkpoint(RunFolder(run).latest_checkpoint(), device="cpu")
    shipped = build(METHODS[key], weights_dir=weights_dir, device="cpu")
    card = shipped.card
    assert card["iterations"] == 2 and card["batch"] == 2 and card["images_seen"] == 4
    assert card["sha256"] and card["architecture"]["network"] == shipped.recipe.generator
    assert {"mse_mask", "psnr", "ssim"} <= set(card["validation"])
    # The shipped (fp16) generator predicts exactly as the trained one with fp16-rounded weights.
    ref = _half_rounded(from_checkpoint(RunFolder(run).latest_checkpoint(), device="cpu").net)
    ckpt_method.net = ref
    for i in range(len(face)):
        assert np.array_equal(
            shipped.inpaint(masked[i], seg[i]), ckpt_method.inpaint(masked[i], seg[i])
        )


@pytest.mark.parametrize("key", ["segmenter", "landmark_regressor"])
def test_aux_train_export_load_identical(key, splits, weights_dir, tmp_path):
    from model.segmenter import load_segmenter

    torch.set_num_threads(1)
    wd = tmp_path / "w"
    train(_cfg(key, tmp_path / "run", wd, steps=2), *splits, progress=False)
    ckpt = torch.load(RunFolder(tmp_path / "run").latest_checkpoint(), weights_only=True)
    trained = _half_rounded(from_architecture(ckpt["architectures"][key]))
    trained.load_state_dict(ckpt["nets"][key])
    trained = _half_rounded(trained).eval()
    x = torch.from_numpy(splits[1].masked).permute(0, 3, 1, 2).float() / 127.5 - 1
    if key == "segmenter":
        seg = load_segmenter(weights_dir=wd)
        assert torch.equal(seg.predict_batch(x), torch.sigmoid(trained(x)))
        assert seg.predict(splits[1].masked[0]).shape == (SIZE, SIZE)
    else:
        state, card = load_weights(key, wd)
        net = from_architecture(card["architecture"])
        net.load_state_dict(state)
        with torch.no_grad():
            assert torch.equal(net.eval()(x), trained(x))


@pytest.mark.parametrize("key", ["pix2pix", "unmask"])
def test_resume_equals_uninterrupted(key, splits, weights_dir, tmp_path):
    """pix2pix: dropout (RNG state) and batch norm; unmask: crosses the warm-up into two discriminators."""
    torch.set_num_threads(1)
    a = train(
        _cfg(key, tmp_path / "a", weights_dir, steps=4, export=False), *splits, progress=False
    )
    train(_cfg(key, tmp_path / "b", weights_dir, steps=2, export=False), *splits, progress=False)
    b = train(
        _cfg(key, tmp_path / "b", weights_dir, steps=4, export=False),
        *splits,
        resume=True,
        progress=False,
    )
    assert a["steps"] == b["steps"] == 4
    ca = torch.load(RunFolder(tmp_path / "a").latest_checkpoint(), weights_only=True)
    cb = torch.load(RunFolder(tmp_path / "b").latest_checkpoint(), weights_only=True)
    for name in ca["nets"]:
        for k, v in ca["nets"][name].items():
            assert torch.equal(v, cb["nets"][name][k]), f"{name}.{k} differs after resume"
    assert torch.equal(ca["rng"][0]["cpu"], cb["rng"][0]["cpu"])
    assert a["validation"] == b["validation"]
    # `unmask train --export` exports a run's latest checkpoint into the run folder, never into
    # the shipped weights.
    from model.cli import main

    argv = ["train", "--method", key, "--run-dir", str(tmp_path / "b"), "--export"]
    assert main(argv) == 0
    state, card = load_weights(key, tmp_path / "b" / "weights")
    assert card["iterations"] == 4 and card["hardware"]["processes"] == 1
    assert torch.equal(state[next(iter(state))], ca["nets"]["generator"][next(iter(state))].half())


def test_eigenface_fit_export_load(splits, weights_dir, tmp_path):
    """`unmask train --method eigenface` fits the basis in closed form (no steps), validates, exports;
    the shipped basis fills a training face's hole closer to the truth than the mean face does."""
    from model.methods.eigenface import build
    from model.metrics import mse_masked_batch

    torch.set_num_threads(1)
    summary = train(
        _cfg("eigenface", tmp_path / "run", weights_dir, steps=0), *splits, progress=False
    )
    assert summary["steps"] == 0 and Path(summary["weights"]).is_file()
    assert {"mse_mask", "psnr", "ssim", "lpips"} <= set(summary["validation"])
    method = build(METHODS["eigenface"], weights_dir=weights_dir, device="cpu")
    assert method.card["architecture"]["network"] == "gappy_pca"
    assert method.card["budget"]["images_seen"] == 0
    assert method.card["data"]["fresh_masks"] is False  # a closed-form fit draws no masks
    face, masked, seg = splits[0].face, splits[0].masked, splits[0].seg
    x = torch.from_numpy(masked).permute(0, 3, 1, 2).float() / 127.5 - 1
    real = torch.from_numpy(face).permute(0, 3, 1, 2).float() / 127.5 - 1
    m = torch.from_numpy(seg)[:, None].float()
    filled = method.inpaint_batch(x, m)
    mean = method.prior.mean.view(1, 3, 16, 16)
    mean_fill = (
        m
        * torch.nn.functional.interpolate(
            mean.expand(len(x), -1, -1, -1), size=x.shape[-2:], mode="bilinear"
        )
        + (1 - m) * x
    )
    assert float(mse_masked_batch(filled, real, m).mean()) < float(
        mse_masked_batch(mean_fill, real, m).mean()
    )


def test_budget_stops_cleanly(splits, weights_dir, tmp_path):
    """An images-seen budget stops the run early, validated, checkpointed and exported."""
    torch.set_num_threads(1)
    cfg = _cfg("pix2pix", tmp_path / "run", weights_dir, steps=50, budget="6img")
    summary = train(cfg, *splits, progress=False)
    assert summary["steps"] == 3 and summary["stopped_by_budget"]  # 3 steps x batch 2 = 6 images
    card = load_weights("pix2pix", weights_dir)[1]
    assert card["budget"]["given"] == "6img" and card["budget"]["images_seen"] == 6
    assert RunFolder(tmp_path / "run").latest_checkpoint().name == "step_0000003.pt"


def test_flips_mirror_landmarks(splits):
    from model.batches import PairSource

    src = PairSource(
        splits[0], size=SIZE, batch=6, seed=3, device=torch.device("cpu"), flip=True, jitter=0.0
    )
    plain = PairSource(
        splits[0], size=SIZE, batch=6, seed=3, device=torch.device("cpu"), flip=False, jitter=0.0
    )
    b, p = src.batch_at(0), plain.batch_at(0)
    flipped = [i for i in range(6) if not torch.equal(b.face[i], p.face[i])]
    assert flipped and len(flipped) < 6  # the seed gives a mix
    for i in flipped:
        assert torch.equal(b.face[i], p.face[i].flip(-1)) and torch.equal(
            b.mask[i], p.mask[i].flip(-1)
        )
        mirrored = p.landmarks[i][list(MIRROR_68)]
        assert torch.allclose(b.landmarks[i][:, 0], 1 - mirrored[:, 0]) and torch.equal(
            b.landmarks[i][:, 1], mirrored[:, 1]
        )


def test_colour_jitter_keeps_known_pixels_equal(splits):
    from model.batches import PairSource

    b = PairSource(
        splits[0], size=SIZE, batch=6, seed=0, device=torch.device("cpu"), jitter=0.2
    ).batch_at(1)
    known = (1 - b.mask).bool().expand_as(b.face)
    assert torch.allclose(b.face[known], b.masked[known])


def write_dataset(root: Path, train_split: Split, val_split: Split) -> None:
    """A dataset folder in the layout of docs/DESIGN.md (256x256 PNGs), as `unmask data build` writes it."""
    for sub in ("face", "masked", "seg"):
        (root / sub).mkdir(parents=True)
    rows, lms = [], {}
    for split_name, s in (("train", train_split), ("val", val_split)):
        for i, id_ in enumerate(s.ids):
            id_ = f"{split_name}_{id_}"
            up = lambda a: cv2.resize(a, (256, 256), interpolation=cv2.INTER_NEAREST)  # noqa: E731
            cv2.imwrite(str(root / "face" / f"{id_}.png"), up(s.face[i])[:, :, ::-1])
            cv2.imwrite(str(root / "masked" / f"{id_}.png"), up(s.masked[i])[:, :, ::-1])
            cv2.imwrite(str(root / "seg" / f"{id_}.png"), up(s.seg[i].astype(np.uint8) * 255))
            lms[id_] = s.landmarks[i] * 4
            rows.append(
                {
                    "id": id_,
                    "source": f"{id_}.jpg",
                    "split": split_name,
                    "status": "ok",
                    "reason": "",
                    "mask_style": "surgical",
                    "mask_colour": "blue",
                    "yaw_deg": 0.0,
                    "seed": i,
                }
            )
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    np.savez(root / "landmarks.npz", **lms)


def _ddp_worker(rank: int, world: int, port: int, argv: list[str]) -> None:
    """One torchrun-like process: rank/world in the environment, then the real CLI."""
    from model.cli import main

    torch.set_num_threads(1)
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    assert main(argv) == 0


def test_ddp_two_cpu_processes_match_one(splits, weights_dir, tmp_path, monkeypatch):
    """2 processes (gloo, batch 2 each) and one process (batch 4) make the same weights.

    The processes are forked (torch already imported: seconds instead of a torchrun start-up);
    each runs `unmask train` with RANK/WORLD_SIZE set as torchrun sets them.
    """
    import torch.multiprocessing as tmp

    from model.cli import main

    data = tmp_path / "data"
    write_dataset(data, *splits)
    common = [
        "train",
        "--method",
        "unmask",
        "--data",
        str(data),
        "--preset",
        "tiny",
        "--steps",
        "2",
        "--batch",
        "4",
        "--no-export",
        "--no-progress",
        "--weights-dir",
        str(weights_dir),
    ]
    for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(v, raising=False)
    tmp.start_processes(
        _ddp_worker,
        args=(2, free_port(), [*common, "--run-dir", str(tmp_path / "ddp")]),
        nprocs=2,
        start_method="fork",
    )
    assert main([*common, "--run-dir", str(tmp_path / "one")]) == 0
    c2 = torch.load(RunFolder(tmp_path / "ddp").latest_checkpoint(), weights_only=True)
    c1 = torch.load(RunFolder(tmp_path / "one").latest_checkpoint(), weights_only=True)
    assert c2["world"] == 2 and c1["world"] == 1 and c2["images_seen"] == c1["images_seen"] == 8
    # unmask's prior solves a least-squares fit per face in batches of 2 (DDP) or 4 (one process):
    # the rounding of the batched solve differs at ~1e-6, which Adam's normalised first steps lift
    # to ~2e-5 in the discriminators. Unaveraged or unsynchronised gradients differ by ~lr = 2e-4.
    for name in c1["nets"]:
        for k, v in c1["nets"][name].items():
            torch.testing.assert_close(
                c2["nets"][name][k], v, rtol=1e-4, atol=5e-5, msg=f"{name}.{k}"
            )


def test_weights_io_refuses_missing_and_corrupt(tmp_path):
    net = torch.nn.Linear(3, 2)
    with pytest.raises(WeightsError, match="missing"):
        load_weights("segmenter", tmp_path)
    path = save_weights("segmenter", net.state_dict(), {"architecture": {}}, tmp_path)
    state, card = load_weights("segmenter", tmp_path)
    assert (
        state["weight"].dtype == torch.float16
        and card["sha256"]
        and card["bytes"] == path.stat().st_size
    )
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="corrupt") as err:
        load_weights("segmenter", tmp_path)
    assert str(path) in str(err.value)


def test_fresh_masks_are_new_each_epoch_and_deterministic(astronaut):
    """Epoch 0 uses the built pairs; epoch 1 new masks (model.masks.apply_mask), the same in every run."""
    from types import SimpleNamespace

    from model.batches import PairSource
    from model.faces import find_and_align
    from model.masks import apply_mask

    aligned = find_and_align(astronaut)
    built = [apply_mask(aligned.image, aligned.landmarks, seed=100 + i) for i in range(4)]
    split = SimpleNamespace(
        ids=list("abcd"),
        face=np.stack([aligned.image] * 4),
        masked=np.stack([m.image for m in built]),
        seg=np.stack([m.seg for m in built]),
        landmarks=np.stack([aligned.landmarks] * 4),
    )

    def source():
        return PairSource(
            split,
            size=SIZE,
            batch=2,
            seed=0,
            device=torch.device("cpu"),
            fresh_masks=True,
            jitter=0.0,
            flip=False,
        )

    a, b = source(), source()
    try:
        epoch0 = a.seg.clone()
        a1, b1 = a.batch_at(2), b.batch_at(2)  # step 2 = epoch 1 (2 steps per epoch)
        assert not torch.equal(a.seg, epoch0), "epoch 1 has new masks"
        assert torch.equal(a1.masked, b1.masked) and torch.equal(a1.mask, b1.mask)
        known = (1 - a1.mask).bool().expand_as(a1.face)
        assert torch.equal(a1.face[known], a1.masked[known])
    finally:
        a.close(), b.close()


def test_promote_only_when_better_or_forced(splits, tmp_path, capsys):
    """A run exports into its own folder; `unmask promote` ships it into an empty weights folder,
    refuses a run of a smaller preset than the shipped card's (printing both side by side), and
    ships it with --force."""
    from model.cli import main

    torch.set_num_threads(1)
    data, shipped = tmp_path / "data", tmp_path / "shipped"
    write_dataset(data, *splits)
    shipped.mkdir()
    for name in ("a", "b"):
        argv = ["train", "--method", "eigenface", "--data", str(data), "--preset", "tiny"]
        assert (
            main([*argv, "--steps", "0", "--run-dir", str(tmp_path / name), "--no-progress"]) == 0
        )
        assert (tmp_path / name / "weights" / "eigenface.safetensors").is_file()
    assert not list(shipped.iterdir()), "training alone never writes the shipped folder"
    promote = ["promote", "--data", str(data), "--weights-dir", str(shipped), "--faces", "2"]
    assert main([*promote, "--run", str(tmp_path / "a")]) == 0
    assert load_weights("eigenface", shipped)[1]["sha256"]
    # The shipped card now claims a larger preset: a tiny run may not replace it.
    card_path = shipped / "eigenface.json"
    card_path.write_text(card_path.read_text().replace('"preset": "tiny"', '"preset": "compact"'))
    capsys.readouterr()
    assert main([*promote, "--run", str(tmp_path / "b")]) == 1
    out = capsys.readouterr().out
    assert "not promoted" in out and "smaller" in out and "psnr" in out and "shipped" in out
    assert '"preset": "compact"' in card_path.read_text()
    assert main([*promote, "--run", str(tmp_path / "b"), "--force"]) == 0
    assert '"preset": "tiny"' in card_path.read_text()
    # A shipped file that does not load (one byte added) is not "nothing to beat": refused.
    weights = shipped / "eigenface.safetensors"
    weights.write_bytes(weights.read_bytes() + b"x")
    capsys.readouterr()
    assert main([*promote, "--run", str(tmp_path / "a")]) == 1
    out = capsys.readouterr().out
    assert "not promoted: the shipped weights do not load" in out
    assert main([*promote, "--run", str(tmp_path / "a"), "--force"]) == 0  # a deliberate repair
    # A mistyped weights folder, and no faces to compare on: a message, nothing written.
    with pytest.raises(SystemExit, match="is not a folder"):
        main(
            [*promote[:-4], "--weights-dir", str(tmp_path / "nosuch"), "--run", str(tmp_path / "a")]
        )
    with pytest.raises(SystemExit):  # argparse: --faces 0 must be at least 1
        main([*promote[:-2], "--faces", "0", "--run", str(tmp_path / "a")])
    assert "must be at least 1" in capsys.readouterr().err


def test_ema_generator_is_the_running_average_and_ships(splits, weights_dir, tmp_path):
    """--ema: every step, average <- d * average + (1 - d) * weights; the average starts as the
    fitted generator (prior included), validates, exports, and resumes exactly."""
    from model.methods.gan import from_checkpoint

    torch.set_num_threads(1)
    cfg = _cfg("unmask", tmp_path / "run", weights_dir, steps=3, ema=0.75, ckpt_every=1)
    summary = train(cfg, *splits, progress=False)
    ckpts = [
        torch.load(RunFolder(tmp_path / "run").checkpoint_path(s), weights_only=True)
        for s in (1, 2, 3)
    ]
    for prev, ckpt in zip(ckpts, ckpts[1:], strict=False):
        w, avg, before = ckpt["nets"]["generator"], ckpt["nets"]["generator_ema"], prev["nets"]
        moved = 0
        for k, v in w.items():
            expected = before["generator_ema"][k].lerp(v, 0.25) if "prior" not in k else v
            assert torch.allclose(avg[k], expected, atol=1e-6), k
            moved += not torch.equal(avg[k], v)
        assert moved, "the average lags the trained weights"
    assert "generator_ema" not in ckpts[-1]["optimizers"]
    # What validates and ships is the average.
    last = ckpts[-1]["nets"]["generator_ema"]
    state, card = load_weights("unmask", weights_dir)
    assert card["config"]["ema"] == 0.75
    assert all(torch.equal(state[k], last[k].half()) for k in state if state[k].dtype == torch.half)
    assert torch.equal(
        from_checkpoint(RunFolder(tmp_path / "run").latest_checkpoint(), "cpu").net.out.weight,
        last["out.weight"],
    )
    # Resumed from step 2, the average continues where it was.
    cfg2 = _cfg("unmask", tmp_path / "b", weights_dir, steps=2, ema=0.75, export=False)
    train(cfg2, *splits, progress=False)
    b = train(
        _cfg("unmask", tmp_path / "b", weights_dir, steps=3, ema=0.75, export=False),
        *splits,
        resume=True,
        progress=False,
    )
    cb = torch.load(RunFolder(tmp_path / "b").latest_checkpoint(), weights_only=True)
    for k, v in last.items():
        assert torch.equal(v, cb["nets"]["generator_ema"][k]), k
    assert b["validation"] == summary["validation"]


def test_learning_rate_falls_linearly_to_zero_over_the_decay():
    """pix2pix's schedule: constant, then linear to zero over the last `lr_decay` of the run; the
    run's length is the images budget's steps when a budget is given, and the optimisers of a
    budget-stopped run end at its last step's rate."""
    from model.train import learning_rate

    cfg = resolve("unmask", "tiny", lr=1e-3, lr_decay=0.5)
    assert [learning_rate(cfg, 10, s) for s in (0, 4, 5, 6, 9)] == pytest.approx(
        [1e-3, 1e-3, 1e-3, 0.8e-3, 0.2e-3]
    )
    assert learning_rate(resolve("unmask", "tiny", lr=1e-3), 10, 9) == 1e-3  # no decay: constant


def test_budget_run_decays_to_its_last_step(splits, weights_dir, tmp_path):
    torch.set_num_threads(1)
    cfg = _cfg(
        "pix2pix", tmp_path / "run", weights_dir, steps=50, budget="8img", lr=1e-3, lr_decay=0.5,
        export=False,
    )  # fmt: skip
    assert train(cfg, *splits, progress=False)["steps"] == 4  # 4 planned steps of batch 2
    ckpt = torch.load(RunFolder(tmp_path / "run").latest_checkpoint(), weights_only=True)
    for opt in ckpt["optimizers"].values():  # decay over the last 2 of 4 steps: 1, 1, 1, 1/2
        assert opt["param_groups"][0]["lr"] == pytest.approx(0.5e-3)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--budget", "10xyz"], "budget '10xyz' not understood"),
        (["--lr-decay", "1.5"], "--lr-decay 1.5 is a fraction of the run"),
        (["--lr-decay", "0.5", "--budget", "30m"], "stop before the decay begins. Add --steps"),
        (["--preset", "nosuch"], "no preset 'nosuch'"),
        (["--ema", "1"], "--ema 1.0 is a decay per step"),
        (["--ema", "0.9", "--method", "segmenter"], "segmenter has none"),
        (["--steps", "-5"], "--steps -5 must be 0"),
        (["--batch", "0"], "--batch 0 must be at least 1"),
        (["--lr", "-1"], "--lr -1.0 must be above 0"),
        (["--budget", "0m"], "--budget 0m is no budget"),
    ],
)
def test_train_cli_refuses_bad_options_with_a_message(option, message, tmp_path):
    """A bad --budget, --lr-decay (or one a wall-clock budget alone would never reach), --ema or
    preset ends `unmask train` with one line, before any data is read (no traceback)."""
    from model.cli import main

    argv = ["train", "--method", "pix2pix", "--data", str(tmp_path), *option]
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert str(e.value).startswith("unmask train: ") and message in str(e.value)


def test_resume_says_what_it_does_with_another_method_or_nothing(
    splits, weights_dir, tmp_path, capsys
):
    torch.set_num_threads(1)
    run = tmp_path / "run"
    train(_cfg("pix2pix", run, weights_dir, steps=1, export=False), *splits, progress=False)
    with pytest.raises(SystemExit, match="holds a pix2pix run, not pix2pix_mask"):
        train(_cfg("pix2pix_mask", run, weights_dir, steps=2), *splits, resume=True, progress=False)
    fresh = tmp_path / "fresh"
    cfg = _cfg("pix2pix", fresh, weights_dir, steps=1, export=False)
    with pytest.raises(SystemExit, match="nothing to resume in .*drop --resume"):
        train(cfg, *splits, resume=True, progress=False)
