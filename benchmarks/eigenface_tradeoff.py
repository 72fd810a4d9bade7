"""What the eigenface weight budget costs: gappy-PCA fills for several basis sizes, component counts,
fit resolutions and ridge strengths, on validation faces (the batched metrics of model.metrics:
MSE in the mask, PSNR, SSIM, LPIPS; and ms/face).

    python benchmarks/eigenface_tradeoff.py --data data/utk --faces 200
    python benchmarks/eigenface_tradeoff.py --data data/utk --faces 904 --settings 96,300,64,0.1

The second line is how unmask's prior (compact preset) was chosen: on all 904 validation faces
96/160/64/0.3 gave 28.11 dB, LPIPS 0.0990; 96/300/64 at ridge 0.3 28.18 / 0.0978, 0.15 28.34 / 0.0943,
0.1 28.39 / 0.0925, 0.05 28.33 / 0.0906 (2-core CPU, 2026-11-30, dataset with the smeared band).

Fits one basis per (size, components) on the train split (randomized SVD), then scores each setting.
The fp16 file size of a basis is 2 bytes x 3 x size^2 x components (the shipped file must be <= 16 MiB).
"""

from __future__ import annotations

import argparse
import time

import torch

from model.data import load_split
from model.evaluate import as_delivered
from model.methods.base import keep_known
from model.metrics import BATCH_METRICS
from model.networks.gappy_pca import GappyPCA, GappyPCAConfig, fit_gappy_pca

SETTINGS = (  # (size, components, fit_size, ridge)
    (128, 160, 64, 0.3),
    (128, 300, 64, 0.3),
    (128, 160, 64, 0.1),
    (128, 160, 64, 1.0),
    (128, 160, 128, 0.3),
    (128, 160, 32, 0.1),
    (96, 160, 64, 0.3),
)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", required=True, help="dataset folder (unmask data build)")
    ap.add_argument("--faces", type=int, default=200, help="faces scored (default 200; 0: all)")
    ap.add_argument(
        "--split",
        default="val",
        choices=("val", "test"),
        help="split scored (default val; the basis is always fitted on train)",
    )
    ap.add_argument(
        "--settings",
        nargs="+",
        metavar="SIZE,K,FIT,RIDGE",
        help="settings to score instead of the default list, e.g. 96,300,64,0.1 96,300,64,0.05",
    )
    args = ap.parse_args()
    settings = SETTINGS
    if args.settings:
        try:
            settings = tuple(
                (int(a), int(b), int(c), float(d))
                for a, b, c, d in (s.split(",") for s in args.settings)
            )
        except ValueError:
            ap.error("each --settings entry is SIZE,K,FIT,RIDGE, e.g. 96,300,64,0.1")
    train = load_split(args.data, "train")
    val = load_split(args.data, args.split, args.faces or None)
    faces = torch.from_numpy(train.face).permute(0, 3, 1, 2)
    real = torch.from_numpy(val.face).permute(0, 3, 1, 2).float() / 127.5 - 1
    masked = torch.from_numpy(val.masked).permute(0, 3, 1, 2).float() / 127.5 - 1
    hole = torch.from_numpy(val.seg)[:, None].float()
    bases: dict[tuple[int, int], GappyPCA] = {}
    metrics = [m.header for m in BATCH_METRICS]  # the table's metrics, read from model.metrics
    headers = ["size", "K", "fit", "ridge", "MiB fp16", *metrics, "ms/face"]
    print("| " + " | ".join(headers) + " |")
    print("|" + "---:|" * len(headers))
    for size, k, fit, ridge in settings:
        if (size, k) not in bases:
            bases[(size, k)] = fit_gappy_pca(faces, GappyPCAConfig(size=size, components=k))
        prior = GappyPCA(GappyPCAConfig(size=size, components=k, fit_size=fit, ridge=ridge))
        prior.load_state_dict(bases[(size, k)].state_dict())
        t = time.perf_counter()
        with torch.no_grad():
            out = torch.cat(
                [
                    keep_known(prior(x, m), x, m)  # the fill in the hole, the known pixels kept
                    for x, m in zip(masked.split(20), hole.split(20), strict=True)
                ]
            )
        ms = 1000 * (time.perf_counter() - t) / len(real)
        mib = 2 * 3 * size * size * k / 2**20
        # Scored as `unmask eval` scores Table 2 (outside the photo: the fill, not scored).
        _, out, known = as_delivered(out, val.face, hole)
        scores = [f"{m.batch(out, real, known).mean():.{m.decimals}f}" for m in BATCH_METRICS]
        cells = [size, k, fit, ridge, f"{mib:.1f}", *scores, f"{ms:.1f}"]
        print("| " + " | ".join(map(str, cells)) + " |", flush=True)


if __name__ == "__main__":
    main()
