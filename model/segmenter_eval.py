"""How good is the mask segmenter: does it find masks, only masks, and leave bare faces alone.

`unmask eval --segmenter --data DIR` writes segmenter.md|json under --out and segmenter_real.png
under --figures:
1. synthetic IoU on the split's masked faces, over the pixels inside the photo (`iou_in_photo`),
   overall and per mask style (the manifest's `mask_style`): of the raw thresholded prediction,
   and of the final region (`model.segmenter.find_mask_region`; the pipeline paints it with a
   2-px rim);
2. false positives on unmasked faces: the split's aligned faces themselves and every labelled
   face of ../shared/data/expressions-tw (detected and aligned): share of faces whose final region
   (`model.segmenter.find_mask_region`, the pipeline's answer) is "no mask", share whose raw
   prediction covers < 1 %, and mean areas;
3. real masked photos (../shared/data/real-masked/images): share with a region, the area
   distribution, and a grid of 24 with the final region outlined in green;
4. a rotation sweep (0-345 degrees, 15 degree steps) of skimage's astronaut: every angle aligned
   upright or refused.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

FP_AREA = 0.01  # "leaves the face alone": predicted area under 1 % of the aligned face
EXPRESSION_CODES = "abcdefg"  # 5th character of an expressions-tw file name; "0" = unlabelled


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two bool masks (1.0 when both are empty)."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    union = np.logical_or(pred, truth).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, truth).sum() / union)


def iou_in_photo(pred: np.ndarray, truth: np.ndarray, face: np.ndarray) -> float:
    """IoU of two (H, W) bool masks over the pixels of the aligned `face` (H, W, 3) uint8 that lie
    inside its photo (`model.faces.inside_from_fill`): the synthetic mask drawn across the photo's
    edge onto the flat fill is not a mask the region rule could ever keep."""
    from model.faces import inside_from_fill

    inside = inside_from_fill(face)
    return iou(np.asarray(pred, bool) & inside, np.asarray(truth, bool) & inside)


def _raw(segmenter, images: np.ndarray, batch: int = 16) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, H, W) float32 probabilities."""
    out = []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(images[i : i + batch]).permute(0, 3, 1, 2).float() / 127.5 - 1
        out.append(segmenter.predict_batch(x)[:, 0].numpy())
    return np.concatenate(out) if out else np.zeros((0, 256, 256), np.float32)


def split_iou(
    segmenter, data: Path, split: str = "test", limit: int | None = None, batch: int = 16
) -> dict:
    """IoU against the exact segmentation, overall and per mask style, of the raw thresholded
    prediction and of the final region (the pipeline's answer; empty when it is "no mask");
    plus the false positives on the same faces without their masks."""
    from model.data import _read_manifest, load_split
    from model.faces import inside_from_fill
    from model.segmenter import THRESHOLD, find_mask_region

    s = load_split(data, split, limit)
    styles = {r["id"]: r["mask_style"] for r in _read_manifest(Path(data) / "manifest.csv")}
    scores, scores_all, inter, union, per_style = [], [], 0, 0, {}
    finals, final_per_style = [], {}
    bare_raw, bare_final, bare_found = [], [], []
    for i in tqdm(range(0, len(s.ids), batch), desc=f"segmenter ({split})", unit="batch"):
        probs = _raw(segmenter, s.masked[i : i + batch])  # (B, H, W)
        for j, (fid, prob, t, face) in enumerate(
            zip(
                s.ids[i : i + batch],
                probs,
                s.seg[i : i + batch],
                s.face[i : i + batch],
                strict=True,
            )
        ):
            p = prob > THRESHOLD
            # Scored inside the photo (as `iou_in_photo`); the pooled IoU likewise.
            inside = inside_from_fill(face)
            t = np.asarray(t, bool)
            scores_all.append(iou(p, t))
            p, t = p & inside, t & inside
            scores.append(iou(p, t))
            inter += int(np.logical_and(p, t).sum())
            union += int(np.logical_or(p, t).sum())
            style = styles.get(fid, "?").split(":")[0]
            per_style.setdefault(style, []).append(scores[-1])
            # The pipeline's region: `inside` from the real face (the synthetic mask covers the
            # flat fill in the masked one).
            r = find_mask_region(_Fixed(prob), s.masked[i + j], s.landmarks[i + j], inside)
            finals.append(iou(r.mask & inside, t))
            final_per_style.setdefault(style, []).append(finals[-1])
        bare = _raw(segmenter, s.face[i : i + batch])
        for j, prob in enumerate(bare):
            bare_raw.append(float((prob > THRESHOLD).mean()))
            r = find_mask_region(_Fixed(prob), s.face[i + j], s.landmarks[i + j])
            bare_final.append(float(r.mask.mean()))
            bare_found.append(r.found)
    return {
        "split": split,
        "n": len(scores),
        "iou_mean": _mean(scores),
        "iou_median": float(np.median(scores)) if scores else float("nan"),
        "iou_pooled": inter / union if union else float("nan"),
        "iou_mean_with_outside": _mean(scores_all),
        "share_iou_ge_0.9": _mean(np.array(scores) >= 0.9),
        "iou_per_style": {
            k: {"n": len(v), "iou_mean": _mean(v), "final_iou_mean": _mean(final_per_style[k])}
            for k, v in sorted(per_style.items())
        },
        "final_iou_mean": _mean(finals),
        "final_iou_median": float(np.median(finals)) if finals else float("nan"),
        "unmasked": _fp_summary(bare_raw, bare_final, bare_found),
    }


class _Fixed:
    """A segmenter that answers probabilities already computed (batched above)."""

    def __init__(self, prob: np.ndarray):
        self.prob = prob

    def probability(self, image: np.ndarray) -> np.ndarray:
        return self.prob


def _mean(values) -> float:
    values = np.asarray(values, dtype=float)
    return float(values.mean()) if values.size else float("nan")


def _fp_summary(raw: list[float], final: list[float], found: list[bool]) -> dict:
    raw_a, final_a = np.asarray(raw), np.asarray(final)
    return {
        "n": len(raw),
        "share_no_mask": _mean(~np.asarray(found, bool)),  # the pipeline's answer: left alone
        "share_raw_under_1pct": _mean(raw_a < FP_AREA),
        "raw_area_mean": _mean(raw_a),
        "final_area_mean": _mean(np.where(found, final_a, 0.0)),
        "share_final_under_1pct": _mean(np.where(found, final_a, 0.0) < FP_AREA),
    }


def expressions_fp(segmenter, folder: Path, limit: int | None = None) -> dict:
    """False positives on the labelled expressions-tw faces (detected and aligned like a photo)."""
    from model.faces import FaceError, find_and_align
    from model.imageio import ImageError, load_image
    from model.segmenter import THRESHOLD, find_mask_region

    files = sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp")
        and len(p.stem) >= 5
        and p.stem[4].lower() in EXPRESSION_CODES
    )[:limit]
    raw, final, found, refused = [], [], [], 0
    for path in tqdm(files, desc="expressions-tw", unit="face"):
        try:
            face = find_and_align(load_image(path))
        except (FaceError, ImageError):
            refused += 1
            continue
        prob = segmenter.probability(face.image)
        raw.append(float((prob > THRESHOLD).mean()))
        r = find_mask_region(_Fixed(prob), face.image, face.landmarks, face.inside)
        final.append(float(r.mask.mean()))
        found.append(r.found)
    return {"files": len(files), "not_aligned": refused, **_fp_summary(raw, final, found)}


def real_photos(
    segmenter, photos: Path, out: Path | None, n: int = 24, cols: int = 6, limit: int | None = None
) -> dict:
    """Every photo: detect, align, final region. Returns the share with a region and the area
    distribution; draws the first `n` photos with a face (sorted names) into `out`."""
    from PIL import Image, ImageDraw

    from model.faces import FaceError, find_and_align
    from model.imageio import ImageError, load_image
    from model.segmenter import find_mask_region

    files = sorted(p for p in photos.iterdir() if p.is_file())[:limit]
    tiles, areas, no_face, no_mask = [], [], 0, 0
    for path in tqdm(files, desc="real masked photos", unit="photo"):
        try:
            face = find_and_align(load_image(path))
        except (FaceError, ImageError):
            no_face += 1
            continue
        r = find_mask_region(segmenter, face.image, face.landmarks, face.inside)
        areas.append(r.area if r.found else 0.0)
        no_mask += not r.found
        if out is not None and len(tiles) < n:
            img = Image.fromarray(_overlay(face.image, r.mask & face.inside))
            label = path.name[:28] + ("" if r.found else "  NO MASK")
            draw = ImageDraw.Draw(img)
            draw.text((5, 5), label, fill=(0, 0, 0))
            draw.text((4, 4), label, fill=(255, 255, 255))
            tiles.append(img)
    if out is not None and tiles:
        rows = -(-len(tiles) // cols)
        sheet = Image.new("RGB", (cols * 256, rows * 256), "white")
        for i, t in enumerate(tiles):
            sheet.paste(t, ((i % cols) * 256, (i // cols) * 256))
        out.parent.mkdir(parents=True, exist_ok=True)
        sheet.save(out)
    a = np.asarray(areas)
    with_region = a[a > 0]
    return {
        "files": len(files),
        "no_face": no_face,
        "aligned": len(areas),
        "share_with_region": _mean(a > 0),
        "no_mask": no_mask,
        "area_percentiles": {
            str(q): float(np.percentile(with_region, q)) if with_region.size else float("nan")
            for q in (5, 25, 50, 75, 95)
        },
        "shown": len(tiles),
    }


def _overlay(image: np.ndarray, region: np.ndarray) -> np.ndarray:
    """The region as a light green tint inside a bright green outline (red masks stay visible).
    Only the part inside the photo is drawn (the hole also runs past its edge, for feathering)."""
    import cv2

    out = image.astype(np.float32)
    out[region] = 0.7 * out[region] + 0.3 * np.array([0, 255, 80])
    out = out.astype(np.uint8)
    contours, _ = cv2.findContours(
        region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
    )
    cv2.drawContours(out, contours, -1, (0, 255, 80), 2)
    return out


def rotation_sweep(step: int = 15) -> dict:
    """The astronaut turned 0..345 degrees: each angle aligned upright or refused. Upright: the
    aligned face matches the upright one (mean |difference| of the two blurred (sigma 3) over
    eyes, nose and mouth under 14 grey levels; the upright face turned by 10 degrees gives 17,
    upside down 38, a few pixels of shift 11)."""
    import cv2
    from skimage import data

    from model.faces import FaceError, find_and_align

    photo = np.ascontiguousarray(data.astronaut())
    ref = find_and_align(photo)
    centre = np.s_[60:200, 60:196]
    rows = []
    for deg in range(0, 360, step):
        h, w = photo.shape[:2]
        m = cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)
        c, s = abs(m[0, 0]), abs(m[0, 1])
        nw, nh = int(h * s + w * c), int(h * c + w * s)
        m[0, 2] += nw / 2 - w / 2
        m[1, 2] += nh / 2 - h / 2
        turned = cv2.warpAffine(photo, m, (nw, nh), borderValue=(200, 200, 200))
        try:
            f = find_and_align(turned)
        except FaceError as err:
            rows.append({"deg": deg, "result": "refused", "reason": err.reason})
            continue
        got, want = (
            cv2.GaussianBlur(x.astype(np.float32), (0, 0), 3) for x in (f.image, ref.image)
        )
        diff = float(np.abs(got[centre] - want[centre]).mean())
        rows.append(
            {"deg": deg, "result": "upright" if diff < 14 else "WRONG", "diff": round(diff, 1)}
        )
    return {
        "angles": len(rows),
        "upright": sum(r["result"] == "upright" for r in rows),
        "refused": sum(r["result"] == "refused" for r in rows),
        "wrong": sum(r["result"] == "WRONG" for r in rows),
        "rows": rows,
    }


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def markdown(report: dict) -> str:
    s, u = report["synthetic"], report["synthetic"]["unmasked"]
    w = report.get("weights", {})
    md = [
        "# Mask segmenter",
        "",
        f"Weights: sha256 `{str(w.get('sha256'))[:12]}`, {w.get('images_seen')} training images "
        f"({w.get('init', 'from scratch')}). Command: `{report['command']}`.",
        "",
        "## Synthetic masks: IoU",
        "",
        f"Raw thresholded prediction (p > 0.5, before the region rule) against the exact "
        f"segmentation, {s['n']} faces of the `{s['split']}` split of `{report['data']}`, "
        "over the pixels inside the photo: where the aligned square runs past the photo (the "
        "flat grey fill) the data build still draws the synthetic mask, but no mask exists "
        "there and the region rule never keeps it. Counting those pixels too, mean IoU is "
        f"{s.get('iou_mean_with_outside', float('nan')):.4f}.",
        "",
        "| mean IoU | median IoU | pooled IoU | faces with IoU >= 0.9 |",
        "| ---: | ---: | ---: | ---: |",
        f"| {s['iou_mean']:.4f} | {s['iou_median']:.4f} | {s['iou_pooled']:.4f} "
        f"| {_pct(s['share_iou_ge_0.9'])} |",
        "",
        "The final region (`model.segmenter.find_mask_region`, which the pipeline paints with a "
        "2-px rim: the region rule on the same probabilities, with the photo's colours; empty "
        "where it answers "
        f'"no mask"), same faces and pixels: mean IoU {s.get("final_iou_mean", float("nan")):.4f}, '
        f"median {s.get('final_iou_median', float('nan')):.4f}.",
        "",
        "| mask style | faces | mean IoU, raw | mean IoU, final region |",
        "| --- | ---: | ---: | ---: |",
        *[
            f"| {k} | {v['n']} | {v['iou_mean']:.4f} | {v.get('final_iou_mean', float('nan')):.4f} |"
            for k, v in s["iou_per_style"].items()
        ],
        "",
        "## Unmasked faces: left alone?",
        "",
        '"No mask" is the pipeline\'s answer (`model.segmenter.find_mask_region`: final region '
        "under 1 % of the face or mean probability under 0.6); the photo is then left unchanged. "
        "Raw: the thresholded prediction before the region rule. Target: >= 98 % under 1 %.",
        "",
        '| faces | n | answered "no mask" | final region < 1 % | raw < 1 % | mean raw area | mean final area |',
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    rows = [(f"UTKFace `{s['split']}` split, aligned, no mask", u)]
    if "expressions" in report:
        e = report["expressions"]
        rows.append(
            (f"expressions-tw, labelled ({e['files']} files, {e['not_aligned']} not aligned)", e)
        )
    for name, v in rows:
        md.append(
            f"| {name} | {v['n']} | {_pct(v['share_no_mask'])} | {_pct(v['share_final_under_1pct'])} "
            f"| {_pct(v['share_raw_under_1pct'])} | {_pct(v['raw_area_mean'])} "
            f"| {_pct(v['final_area_mean'])} |"
        )
    if "real" in report:
        r = report["real"]
        p = r["area_percentiles"]
        md += [
            "",
            "## Real masked photos",
            "",
            f"{r['files']} photos of `real-masked/images`: {r['aligned']} with a face aligned, "
            f"{r['no_face']} without (no face found, or not upright). Of the aligned: "
            f'{_pct(r["share_with_region"])} with a mask region, {r["no_mask"]} answered "no mask".',
            "",
            "| area of the region (share of the aligned face) | 5 % | 25 % | 50 % | 75 % | 95 % |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
            "| percentile | "
            + " | ".join(_pct(p[k]) for k in ("5", "25", "50", "75", "95"))
            + " |",
            "",
            f"`results/figures/segmenter_real.png`: the first {r['shown']} photos with a face, final "
            "region outlined and tinted green (flat grey: outside the photo).",
        ]
    if "rotation" in report:
        t = report["rotation"]
        md += [
            "",
            "## Rotation sweep",
            "",
            f"skimage's astronaut turned 0-345 degrees in 15 degree steps ({t['angles']} angles): "
            f"{t['upright']} aligned upright, {t['refused']} refused, {t['wrong']} wrong.",
            "",
            "| degrees | " + " | ".join(str(x["deg"]) for x in t["rows"]) + " |",
            "| --- | " + " | ".join("---" for _ in t["rows"]) + " |",
            "| result | " + " | ".join(x["result"] for x in t["rows"]) + " |",
        ]
    return "\n".join(md) + "\n"


def run_segmenter_report(args) -> int:
    from model.config import shared_data_dir
    from model.segmenter import load_segmenter

    weights_dir = getattr(args, "weights_dir", None)
    seg = (
        load_segmenter(untrained=True)
        if args.untrained
        else load_segmenter(**({"weights_dir": weights_dir} if weights_dir else {}))
    )
    report: dict = {
        "data": str(args.data),
        "command": "unmask " + " ".join(sys.argv[1:]),
        "weights": {
            k: seg.card.get(k) for k in ("iterations", "batch", "images_seen", "sha256", "init")
        },
    }
    report["synthetic"] = split_iou(seg, args.data, args.split, args.limit)
    shared = shared_data_dir()
    expressions = shared / "expressions-tw" / "images"
    if expressions.is_dir():
        report["expressions"] = expressions_fp(seg, expressions, args.limit)
    photos = args.real_photos or shared / "real-masked" / "images"
    if photos.is_dir():
        fig = None if args.no_figures else args.figures / "segmenter_real.png"
        report["real"] = real_photos(seg, photos, fig, n=24, limit=args.limit)
        if fig is not None:
            print(f"wrote {fig} ({report['real']['shown']} photos)", file=sys.stderr)
    report["rotation"] = rotation_sweep()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "segmenter.json").write_text(json.dumps(report, indent=2) + "\n")
    md = markdown(report)
    (args.out / "segmenter.md").write_text(md)
    print(md)
    return 0
