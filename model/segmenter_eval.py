"""How good is the mask segmenter: IoU on a synthetic split, and its predictions on real photos.

`unmask eval --segmenter --data DIR` writes results/metrics/segmenter.md|json and
results/figures/segmenter_real.png (real masked photos: detect, align, predict, overlay).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two bool masks (1.0 when both are empty)."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    union = np.logical_or(pred, truth).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, truth).sum() / union)


def split_iou(
    segmenter, data: Path, split: str = "test", limit: int | None = None, batch: int = 16
) -> dict:
    """Mean (and pooled) IoU of the raw thresholded prediction against the exact segmentation."""
    from model.data import load_split
    from model.segmenter import THRESHOLD

    s = load_split(data, split, limit)
    scores, inter, union = [], 0, 0
    for i in tqdm(range(0, len(s.ids), batch), desc=f"segmenter IoU ({split})", unit="batch"):
        x = torch.from_numpy(s.masked[i : i + batch]).permute(0, 3, 1, 2).float() / 127.5 - 1
        pred = (segmenter.predict_batch(x)[:, 0] > THRESHOLD).numpy()  # (B, H, W)
        for p, t in zip(pred, s.seg[i : i + batch], strict=True):
            scores.append(iou(p, t))
            inter += int(np.logical_and(p, t).sum())
            union += int(np.logical_or(p, t).sum())
    return {
        "split": split,
        "n": len(scores),
        "iou_mean": float(np.mean(scores)) if scores else float("nan"),
        "iou_median": float(np.median(scores)) if scores else float("nan"),
        "iou_pooled": inter / union if union else float("nan"),
        "share_iou_ge_0.9": float(np.mean(np.array(scores) >= 0.9)) if scores else float("nan"),
    }


def real_figure(segmenter, photos: Path, out: Path, n: int = 24, cols: int = 6) -> int:
    """Grid of the first `n` photos in which a face is found: aligned face with the cleaned
    predicted region in red. Returns how many photos it shows."""
    from PIL import Image, ImageDraw

    from model.faces import FaceError, find_and_align
    from model.imageio import ImageError, load_image
    from model.segmenter import find_mask_region

    tiles = []
    for path in sorted(p for p in photos.iterdir() if p.is_file()):
        if len(tiles) == n:
            break
        try:
            face = find_and_align(load_image(path))
        except (FaceError, ImageError):
            continue
        region = find_mask_region(segmenter, face.image, face.landmarks, face.inside).mask
        tile = face.image.astype(np.float32)
        tile[region] = 0.55 * tile[region] + 0.45 * np.array([255, 0, 0])
        img = Image.fromarray(tile.astype(np.uint8))
        ImageDraw.Draw(img).text((4, 4), path.name, fill=(255, 255, 255))
        tiles.append(img)
    if not tiles:
        return 0
    rows = -(-len(tiles) // cols)
    sheet = Image.new("RGB", (cols * 256, rows * 256), "white")
    for i, t in enumerate(tiles):
        sheet.paste(t, ((i % cols) * 256, (i // cols) * 256))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return len(tiles)


def run_segmenter_report(args) -> int:
    from model.config import shared_data_dir
    from model.segmenter import load_segmenter

    seg = load_segmenter(untrained=bool(args.untrained))
    report = split_iou(seg, args.data, args.split, args.limit)
    report["weights"] = {
        k: seg.card.get(k) for k in ("iterations", "batch", "images_seen", "sha256")
    }
    photos = args.real_photos or shared_data_dir() / "real-masked" / "images"
    if not args.no_figures and photos.is_dir():
        shown = real_figure(seg, photos, args.figures / "segmenter_real.png")
        report["real_photos_shown"] = shown
        print(f"wrote {args.figures / 'segmenter_real.png'} ({shown} photos)", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "segmenter.json").write_text(json.dumps(report, indent=2) + "\n")
    md = [
        "# Mask segmenter",
        "",
        f"IoU of the thresholded prediction (p > 0.5, no clean-up) against the exact synthetic "
        f"segmentation, {report['n']} faces of the `{args.split}` split of `{args.data}`.",
        "",
        "| mean IoU | median IoU | pooled IoU | faces with IoU >= 0.9 |",
        "| ---: | ---: | ---: | ---: |",
        f"| {report['iou_mean']:.4f} | {report['iou_median']:.4f} | {report['iou_pooled']:.4f} "
        f"| {100 * report['share_iou_ge_0.9']:.1f}% |",
        "",
    ]
    (args.out / "segmenter.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0
