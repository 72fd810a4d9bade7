"""`unmask inpaint`: remove the mask from one photo or a folder of photos, with any method.

For each photo: detect and align the main face, segment the mask (or take --mask), inpaint,
paste back. Writes <out>/<name>/<method>.png (the photo, at its own size) and <method>_face.png
(aligned); <name> is the photo's stem, or stem_ext when two inputs share a stem (said so).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from model.cli import positive_int

ALL = "all"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from model.methods import METHODS  # the registry is light: no torch at import

    parser.add_argument(
        "--input", required=True, type=Path, help="a photo, or a folder of photos (not recursive)"
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder (created)")
    parser.add_argument(
        "--method",
        default=ALL,
        choices=[*METHODS, ALL],
        help=f"method key, or '{ALL}' for every method (default)",
    )
    parser.add_argument(
        "--mask",
        type=Path,
        default=None,
        help="mask image of the photo, in the photo's own coordinates (its size, or the same "
        "proportions), used instead of the segmenter for every photo: white = the hole, or "
        "anything painted on a transparent layer",
    )
    parser.add_argument(
        "--face",
        type=positive_int,
        default=None,
        help="which face of a photo with several: 1 = the largest (default), 2 = the next, ...",
    )


def run(args: argparse.Namespace) -> int:
    from PIL import Image
    from tqdm import tqdm

    from model import pipeline
    from model.methods import METHODS

    if not args.input.exists():
        print(f"unmask inpaint: {args.input} does not exist")
        return 1
    if args.out.exists() and not args.out.is_dir():
        print(f"unmask inpaint: --out {args.out} is a file; give a folder")
        return 1
    files = _inputs(args.input)
    if not files:
        print(f"unmask inpaint: no files in {args.input}")
        return 1
    keys = list(METHODS) if args.method == ALL else [args.method]
    mask = None
    if args.mask is not None:
        from model.imageio import ImageError, load_mask

        if not args.mask.is_file():
            print(f"unmask inpaint: mask file {args.mask} not found")
            return 1
        try:  # read once: the same mask goes with every photo
            mask = load_mask(args.mask)
        except ImageError as err:
            print(f"unmask inpaint: the mask could not be read: {err}")
            return 1
    args.out.mkdir(parents=True, exist_ok=True)
    names = output_names(files)
    for stem, group in _shared_stems(files).items():
        print(
            f"unmask inpaint: {' and '.join(p.name for p in group)} share the name {stem!r}: "
            f"their results go to {', '.join(names[p] + '/' for p in group)}"
        )

    done, failed, unmasked = 0, [], []
    bar = tqdm(files, unit="photo", disable=len(files) == 1)
    for path in bar:
        bar.set_postfix_str(path.name[:30])
        try:
            prepared = pipeline.prepare(path, mask=mask, face=args.face)
        except pipeline.InputError as err:
            failed.append(path)
            tqdm.write(f"{path.name}: skipped: {err}")
            continue
        for note in prepared.messages:
            tqdm.write(f"{path.name}: {note}")
        if not prepared.mask.any() and pipeline.get_segmenter() is not None:
            # "No mask" is an answer: the photo comes back unchanged, under every method's name.
            folder = args.out / names[path]
            folder.mkdir(parents=True, exist_ok=True)
            for key in keys:
                Image.fromarray(prepared.photo).save(folder / f"{key}.png")
            unmasked.append(path)
            continue
        if not prepared.mask.any():
            failed.append(path)
            tqdm.write(f"{path.name}: skipped: no mask region (give one with --mask)")
            continue
        results = pipeline.run_methods(
            prepared.aligned.image, prepared.mask, keys, inside=prepared.aligned.inside
        )
        for message in results.errors.values():
            tqdm.write(f"{path.name}: {message}")
        if not results:
            failed.append(path)
            continue
        folder = args.out / names[path]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(prepared.mask.astype("uint8") * 255).save(folder / "mask.png")
        for key, (face, _seconds) in results.items():
            Image.fromarray(face).save(folder / f"{key}_face.png")
            Image.fromarray(pipeline.paste_result(prepared, face)).save(folder / f"{key}.png")
        done += 1
    print(f"unmask inpaint: {done} of {len(files)} photos done, written to {args.out}")
    if unmasked:
        print(
            f"no mask: no face mask was found on {len(unmasked)}, written unchanged: "
            f"{', '.join(p.name for p in unmasked[:20])}"
        )
    if failed:
        print(f"could not handle {len(failed)}: {', '.join(p.name for p in failed[:20])}")
    return 0 if not failed else 1


def output_names(files: list[Path]) -> dict[Path, str]:
    """path -> the output folder name for it, unique among `files` even on a case-insensitive
    file system: the stem, or stem_ext (person_jpg, person_png) when stems collide, with _2, _3
    ... appended in the unlikely case that is still taken."""
    by_stem: dict[str, list[Path]] = {}
    for p in files:
        by_stem.setdefault(p.stem.lower(), []).append(p)
    names: dict[Path, str] = {}
    taken: set[str] = set()
    for p in files:
        base = p.stem
        if len(by_stem[p.stem.lower()]) > 1:
            base = f"{p.stem}_{p.suffix.lstrip('.')}" if p.suffix else p.stem
        name, n = base, 1
        while name.lower() in taken:
            n += 1
            name = f"{base}_{n}"
        taken.add(name.lower())
        names[p] = name
    return names


def _shared_stems(files: list[Path]) -> dict[str, list[Path]]:
    """stem -> the inputs sharing it (only stems shared by two or more)."""
    groups: dict[str, list[Path]] = {}
    for p in files:
        groups.setdefault(p.stem.lower(), []).append(p)
    return {g[0].stem: g for g in groups.values() if len(g) > 1}


def _inputs(src: Path) -> list[Path]:
    if src.is_dir():
        return sorted(p for p in src.iterdir() if p.is_file() and not p.name.startswith("."))
    return [src] if src.exists() else []
