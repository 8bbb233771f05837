"""Embedded, download-free COCO-layout dataset of coloured shapes on cluttered backgrounds.

The suite must run (and its detectors must learn something) on machines without COCO, so
this module writes a dataset with exactly COCO's folder layout and annotation format:

    ROOT/annotations/instances_train2017.json   ROOT/train2017/000000000001.jpg ...
    ROOT/annotations/instances_val2017.json     ROOT/val2017/000010000001.jpg ...
    ROOT/synthetic.json                          manifest: generator version + params

Design choices, each forced by something the harness must exercise:

* Classes are shapes with their own colour family (red rectangle, green ellipse, blue
  triangle, yellow ring, ...), so a detector trained from scratch for a few hundred
  iterations separates them. Category ids are NOT contiguous (1, 3, 7, 12, ...): like real
  COCO (1..90 with gaps), the pipeline must map label index -> category id through the
  annotation file.
* Object scale sqrt(w*h) is log-uniform in ``size_range`` (default 8..300 px, clipped to the
  image) so every FPN level gets objects; see :func:`fpn_level` for which level that is.
* Clutter: a low-frequency textured background, desaturated irregular distractor blobs and
  lines (never annotated), pixel noise, JPEG compression.
* Occlusion: objects are drawn largest first, later ones on top. Boxes are the tight box of
  the *visible* pixels and ``area`` is the visible pixel count, as in COCO, where both come
  from the visible segmentation. A placement that would leave an earlier object less than
  half visible is rejected and retried, so every label stays learnable.
* Image sizes vary mildly (each side drawn in [1 - size_jitter, 1] * size) so batch padding
  paths run.
* Deterministic: every image has its own RNG seeded by (seed, split, index), so the same
  seed gives byte-identical JSON and identical JPEG files, and image i of a split does not
  depend on how many images the split has.

CLI: ``python -m bench.data.synthetic ROOT --n-train 400 --n-val 100 --image-size 320``.
"""

from __future__ import annotations

import argparse
import colorsys
import contextlib
import dataclasses
import functools
import json
import math
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "GENERATOR_VERSION",
    "SHAPES",
    "FPN_LEVELS",
    "SyntheticParams",
    "generate",
    "ensure_dataset",
    "read_manifest",
    "ann_file",
    "img_dir",
    "class_names",
    "cat_ids",
    "fpn_level",
    "level_counts",
    "draw_annotations",
    "preview",
    "main",
]

# Bump whenever the rendered pixels or annotations change for the same params: the manifest
# records it and ensure_dataset() regenerates folders written by another version.
GENERATOR_VERSION = 1

MANIFEST = "synthetic.json"
SPLITS = ("train", "val")
_SPLIT_CODE = {"train": 0, "val": 1}
# Image ids are unique across splits (as in COCO); val ids start here.
_ID_BASE = {"train": 0, "val": 10_000_000}

# (category id, name, hue in degrees). Ids deliberately have gaps; hues are far apart so the
# colour family alone nearly separates classes, and the shape separates them alone too.
SHAPES: tuple[tuple[int, str, float], ...] = (
    (1, "rectangle", 0.0),  # red
    (3, "ellipse", 120.0),  # green
    (7, "triangle", 225.0),  # blue
    (12, "ring", 55.0),  # yellow
    (20, "cross", 300.0),  # magenta
    (33, "diamond", 185.0),  # cyan
)

# FPN levels of the three detectors (RetinaNet, FSAF, FreeAnchor): P3..P7, strides 8..128,
# anchor base size 4 * stride = 32 * 2**(l - 3).
FPN_LEVELS = (3, 4, 5, 6, 7)


@dataclasses.dataclass(frozen=True)
class SyntheticParams:
    """Everything that determines the dataset's content (recorded in the manifest)."""

    n_train: int
    n_val: int
    image_size: tuple[int, int]  # (width, height) before jitter
    seed: int = 0
    size_jitter: float = 0.25
    size_range: tuple[float, float] = (8.0, 300.0)
    aspect_range: tuple[float, float] = (0.5, 2.0)
    objects_per_image: tuple[int, int] = (1, 8)
    n_classes: int = 4
    distractors: tuple[int, int] = (2, 10)
    noise_sigma: float = 6.0
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        if self.n_train < 0 or self.n_val < 0:
            raise ValueError("n_train and n_val must be >= 0")
        if not 1 <= self.n_classes <= len(SHAPES):
            raise ValueError(f"n_classes must be in 1..{len(SHAPES)}")
        if not 0.0 <= self.size_jitter < 1.0:
            raise ValueError("size_jitter must be in [0, 1)")
        if min(self.image_size) < 32:
            raise ValueError("image_size must be at least 32 px")
        lo, hi = self.size_range
        if not 1.0 <= lo <= hi:
            raise ValueError("size_range must satisfy 1 <= lo <= hi")
        if not 0 <= self.objects_per_image[0] <= self.objects_per_image[1]:
            raise ValueError("objects_per_image must satisfy 0 <= lo <= hi")

    @classmethod
    def build(cls, **params: Any) -> SyntheticParams:
        """Normalise user/JSON values (ints for sizes, tuples for ranges) into params."""
        size = params.pop("image_size")
        if isinstance(size, (int, float)):
            size = (int(size), int(size))
        params["image_size"] = (int(size[0]), int(size[1]))
        for key in ("size_range", "aspect_range"):
            if key in params:
                params[key] = tuple(float(v) for v in params[key])
        for key in ("objects_per_image", "distractors"):
            if key in params:
                params[key] = tuple(int(v) for v in params[key])
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(params) - known
        if unknown:
            raise TypeError(f"unknown synthetic dataset params: {sorted(unknown)}")
        return cls(**params)

    def to_json(self) -> dict[str, Any]:
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }

    @property
    def shapes(self) -> tuple[tuple[int, str, float], ...]:
        return SHAPES[: self.n_classes]


# --------------------------------------------------------------------------- paths / meta


def ann_file(root: Path | str, split: str = "val") -> Path:
    """Annotation file of a split, at the same place real COCO has it."""
    return Path(root) / "annotations" / f"instances_{split}2017.json"


def img_dir(root: Path | str, split: str = "val") -> Path:
    return Path(root) / f"{split}2017"


def class_names(n_classes: int = 4) -> tuple[str, ...]:
    """Class names in category-id order, i.e. the order mmdet assigns label indices."""
    return tuple(name for _, name, _ in SHAPES[:n_classes])


def cat_ids(n_classes: int = 4) -> tuple[int, ...]:
    return tuple(cid for cid, _, _ in SHAPES[:n_classes])


def read_manifest(root: Path | str) -> dict[str, Any] | None:
    """The manifest of a generated folder, or None when there is none (or it is unreadable)."""
    try:
        return json.loads((Path(root) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------- rendering


def _hsv_rgb(h_deg: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb((h_deg % 360.0) / 360.0, s, v), dtype=np.float32) * 255.0


def _smooth_field(
    rng: np.random.Generator, w: int, h: int, cells: int, channels: int
) -> np.ndarray:
    """Random values on a coarse grid, bicubically upsampled: cheap low-frequency texture.

    Returns float32 (h, w, channels) in [-0.5, 0.5].
    """
    gw = max(2, int(round(cells * w / max(w, h))))
    gh = max(2, int(round(cells * h / max(w, h))))
    coarse = rng.integers(0, 256, size=(gh, gw, channels), dtype=np.uint8)
    img = Image.fromarray(
        coarse if channels == 3 else coarse[..., 0], "RGB" if channels == 3 else "L"
    )
    up = np.asarray(img.resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32).reshape(
        h, w, channels
    )
    up *= 1.0 / 255.0
    up -= 0.5
    return up


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Desaturated, textured background so objects are not found by thresholding alone."""
    base = rng.uniform(70.0, 170.0)
    lum = _smooth_field(rng, w, h, int(rng.integers(3, 8)), 1)
    tint = _smooth_field(rng, w, h, int(rng.integers(2, 5)), 3)
    fine = _smooth_field(rng, w, h, int(rng.integers(24, 64)), 1)
    lum *= 110.0
    lum += base
    fine *= 30.0
    lum += fine
    tint *= 36.0
    tint += lum
    return np.clip(tint, 0.0, 255.0, out=tint)


def _shape_mask(kind: str, w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean (h, w) mask of one shape filling a w x h box (PIL rasterisation, no loops)."""
    img = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(img)
    x1, y1 = w - 1, h - 1
    if kind == "rectangle":
        d.rectangle((0, 0, x1, y1), fill=255)
    elif kind == "ellipse":
        d.ellipse((0, 0, x1, y1), fill=255)
    elif kind == "ring":
        width = max(2, int(round(0.22 * min(w, h))))
        d.ellipse((0, 0, x1, y1), outline=255, width=width)
    elif kind == "triangle":
        # A rotated equilateral triangle, stretched to fill the box.
        theta = rng.uniform(0.0, 2.0 * math.pi)
        pts = np.array(
            [
                [math.cos(theta + k * 2 * math.pi / 3), math.sin(theta + k * 2 * math.pi / 3)]
                for k in range(3)
            ]
        )
        pts -= pts.min(axis=0)
        pts /= np.maximum(pts.max(axis=0), 1e-6)
        d.polygon([(float(px * x1), float(py * y1)) for px, py in pts], fill=255)
    elif kind == "cross":
        tw, th = max(1, int(round(0.3 * w))), max(1, int(round(0.3 * h)))
        cx, cy = (w - tw) // 2, (h - th) // 2
        d.rectangle((cx, 0, cx + tw - 1, y1), fill=255)
        d.rectangle((0, cy, x1, cy + th - 1), fill=255)
    elif kind == "diamond":
        d.polygon([(x1 / 2, 0), (x1, y1 / 2), (x1 / 2, y1), (0, y1 / 2)], fill=255)
    else:  # pragma: no cover - SHAPES is closed
        raise ValueError(kind)
    return np.asarray(img) > 0


def _blob_mask(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """Irregular star-ish polygon: clutter that matches none of the classes' shapes."""
    n = int(rng.integers(7, 14))
    ang = np.sort(rng.uniform(0.0, 2 * math.pi, n))
    rad = rng.uniform(0.35, 1.0, n)
    pts = [
        ((1 + r * math.cos(a)) * (w - 1) / 2, (1 + r * math.sin(a)) * (h - 1) / 2)
        for a, r in zip(ang, rad)
    ]
    img = Image.new("L", (w, h), 0)
    ImageDraw.Draw(img).polygon(pts, fill=255)
    return np.asarray(img) > 0


def _paint(
    canvas: np.ndarray,
    x0: int,
    y0: int,
    mask: np.ndarray,
    rgb: np.ndarray,
    rng: np.random.Generator,
    shade: float,
) -> None:
    """Fill mask with a colour plus a random linear shading gradient (texture inside objects)."""
    h, w = mask.shape
    gx, gy = rng.normal(size=2) * shade
    xs = np.linspace(-0.5 * gx, 0.5 * gx, w, dtype=np.float32)
    ys = np.linspace(-0.5 * gy, 0.5 * gy, h, dtype=np.float32)
    grad = (ys[:, None] + xs[None, :])[mask]
    region = canvas[y0 : y0 + h, x0 : x0 + w]
    region[mask] = np.clip(rgb[None, :] + grad[:, None], 0.0, 255.0)


def _draw_distractors(canvas: np.ndarray, rng: np.random.Generator, p: SyntheticParams) -> None:
    H, W = canvas.shape[:2]
    for _ in range(int(rng.integers(p.distractors[0], p.distractors[1] + 1))):
        if rng.random() < 0.7:
            s = math.exp(rng.uniform(math.log(6.0), math.log(max(7.0, min(90.0, 0.4 * min(W, H))))))
            w = int(np.clip(round(s * math.exp(rng.uniform(-0.4, 0.4))), 3, W))
            h = int(np.clip(round(s * math.exp(rng.uniform(-0.4, 0.4))), 3, H))
            x0, y0 = int(rng.integers(0, W - w + 1)), int(rng.integers(0, H - h + 1))
            rgb = _hsv_rgb(rng.uniform(0, 360), rng.uniform(0.0, 0.25), rng.uniform(0.25, 0.95))
            _paint(canvas, x0, y0, _blob_mask(w, h, rng), rgb, rng, 25.0)
        else:
            img = Image.new("L", (W, H), 0)
            pts = [(float(rng.uniform(0, W)), float(rng.uniform(0, H))) for _ in range(2)]
            ImageDraw.Draw(img).line(pts, fill=255, width=int(rng.integers(1, 4)))
            m = np.asarray(img) > 0
            canvas[m] = _hsv_rgb(rng.uniform(0, 360), rng.uniform(0.0, 0.3), rng.uniform(0.2, 0.9))


_NOISE_TILE = 512


@functools.lru_cache(maxsize=2)
def _noise_bank(seed: int) -> np.ndarray:
    """A 2x2-tiled bank of unit Gaussian noise; images take random windows of it.

    Drawing fresh noise per pixel was the most expensive step of rendering.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 99]))
    tile = rng.standard_normal(size=(_NOISE_TILE, _NOISE_TILE, 3), dtype=np.float32)
    return np.tile(tile, (2, 2, 1))


def _noise(seed: int, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    dy, dx = (int(v) for v in rng.integers(0, _NOISE_TILE, size=2))
    if h > _NOISE_TILE or w > _NOISE_TILE:
        return rng.standard_normal(size=(h, w, 3), dtype=np.float32)
    return _noise_bank(seed)[dy : dy + h, dx : dx + w]


def _render(
    p: SyntheticParams, split: str, index: int, out_dir: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Render one image, write its JPEG, return (image record, annotations without ids)."""
    rng = np.random.default_rng(np.random.SeedSequence([p.seed, _SPLIT_CODE[split], index]))
    W0, H0 = p.image_size
    W = int(round(W0 * rng.uniform(1.0 - p.size_jitter, 1.0))) if p.size_jitter else W0
    H = int(round(H0 * rng.uniform(1.0 - p.size_jitter, 1.0))) if p.size_jitter else H0

    canvas = _background(rng, W, H)
    _draw_distractors(canvas, rng, p)

    shapes = p.shapes
    n_obj = int(rng.integers(p.objects_per_image[0], p.objects_per_image[1] + 1))
    lo, hi = p.size_range
    scales = np.exp(rng.uniform(math.log(lo), math.log(hi), n_obj))
    scales[::-1].sort()  # largest first: small objects land on top of big ones, not vice versa

    owner = np.full((H, W), -1, dtype=np.int32)  # index of the topmost object per pixel
    placed: list[tuple[int, int, int, np.ndarray]] = []  # (class idx, x0, y0, mask)
    full_area: list[int] = []
    visible: list[int] = []
    for s in scales:
        for _attempt in range(20):
            ar = math.exp(rng.uniform(math.log(p.aspect_range[0]), math.log(p.aspect_range[1])))
            # Too big for the image: shrink keeping the aspect ratio (clipping each side would
            # pile many boxes up at exactly the image's width or height).
            fit = min(s, 0.95 * W / math.sqrt(ar), 0.95 * H * math.sqrt(ar))
            w = int(np.clip(round(fit * math.sqrt(ar)), 4, W))
            h = int(np.clip(round(fit / math.sqrt(ar)), 4, H))
            x0, y0 = int(rng.integers(0, W - w + 1)), int(rng.integers(0, H - h + 1))
            cls = int(rng.integers(0, len(shapes)))
            mask = _shape_mask(shapes[cls][1], w, h, rng)
            covered = owner[y0 : y0 + h, x0 : x0 + w][mask]
            covered = covered[covered >= 0]
            if covered.size:
                lost = np.bincount(covered, minlength=len(placed))
                if any(visible[k] - lost[k] < 0.5 * full_area[k] for k in np.nonzero(lost)[0]):
                    continue  # would hide more than half of an earlier object: retry
                for k in np.nonzero(lost)[0]:
                    visible[k] -= int(lost[k])
            owner[y0 : y0 + h, x0 : x0 + w][mask] = len(placed)
            rgb = _hsv_rgb(
                shapes[cls][2] + rng.uniform(-12, 12), rng.uniform(0.7, 1.0), rng.uniform(0.6, 1.0)
            )
            _paint(canvas, x0, y0, mask, rgb, rng, 30.0)
            placed.append((cls, x0, y0, mask))
            full_area.append(int(mask.sum()))
            visible.append(int(mask.sum()))
            break

    if p.noise_sigma > 0:
        canvas += _noise(p.seed, rng, H, W) * np.float32(p.noise_sigma)
    canvas += 0.5
    pixels = np.clip(canvas, 0.0, 255.0, out=canvas).astype(np.uint8)

    image_id = _ID_BASE[split] + index + 1
    file_name = f"{image_id:012d}.jpg"
    Image.fromarray(pixels, "RGB").save(os.path.join(out_dir, file_name), quality=p.jpeg_quality)

    anns: list[dict[str, Any]] = []
    for k, (cls, x0, y0, mask) in enumerate(placed):
        h, w = mask.shape
        vis = owner[y0 : y0 + h, x0 : x0 + w] == k
        ys, xs = np.nonzero(vis)
        bx, by = float(x0 + xs.min()), float(y0 + ys.min())
        bw, bh = float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)
        anns.append(
            {
                "image_id": image_id,
                "category_id": shapes[cls][0],
                "bbox": [bx, by, bw, bh],
                "area": float(vis.sum()),
                "iscrowd": 0,
                "segmentation": [[bx, by, bx + bw, by, bx + bw, by + bh, bx, by + bh]],
            }
        )
    info = {"id": image_id, "file_name": file_name, "width": W, "height": H, "license": 1}
    return info, anns


def _render_star(
    args: tuple[SyntheticParams, str, int, str],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return _render(*args)


def _coco_json(
    p: SyntheticParams, split: str, images: list[dict[str, Any]], anns: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "info": {
            "description": f"sepc-bench synthetic shapes ({split})",
            "version": str(GENERATOR_VERSION),
            "year": 2017,
            "contributor": "bench.synthetic",  # its name when its data were first made: kept
            "date_created": "1970-01-01",
        },
        "licenses": [{"id": 1, "name": "generated", "url": ""}],
        "images": images,
        "annotations": anns,
        "categories": [
            {"id": cid, "name": name, "supercategory": "shape"} for cid, name, _ in p.shapes
        ],
    }


def _default_workers() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        n = os.cpu_count() or 1
    return max(1, min(8, n))


def _write_split(
    p: SyntheticParams, root: Path, split: str, n: int, ann_id0: int, workers: int | None
) -> tuple[int, int]:
    workers = _default_workers() if workers is None else workers
    out = img_dir(root, split)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(p, split, i, str(out)) for i in range(n)]
    if workers > 1 and n >= 64:
        with ProcessPoolExecutor(max_workers=workers) as ex:
            results = list(ex.map(_render_star, jobs, chunksize=max(1, n // (4 * workers))))
    else:
        results = [_render_star(j) for j in jobs]
    images, anns = [], []
    ann_id = ann_id0
    for info, img_anns in results:
        images.append(info)
        for a in img_anns:
            ann_id += 1
            anns.append({"id": ann_id, **a})
    path = ann_file(root, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_coco_json(p, split, images, anns), separators=(",", ":")))
    return len(images), len(anns)


# --------------------------------------------------------------------------- atomic write


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Serialise generators of one folder (e.g. many SLURM array tasks starting at once)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    lock_path = root.parent / f".{root.name}.lock"
    with open(lock_path, "a+") as fh:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - non-POSIX: best effort, no lock
            yield
            return
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _is_replaceable(root: Path) -> bool:
    """Only ever delete a folder this module wrote (or an empty one): never a real COCO."""
    if not root.exists():
        return True
    if not root.is_dir():
        return False
    return (root / MANIFEST).is_file() or not any(root.iterdir())


def _generate_locked(root: Path, p: SyntheticParams, workers: int | None) -> Path:
    if not _is_replaceable(root):
        raise FileExistsError(
            f"{root} exists and is not a bench.data.synthetic dataset; refusing to overwrite it"
        )
    # Leftovers of generators that were killed: safe to remove, we hold the lock.
    for stale in root.parent.glob(f".{root.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    for stale in root.parent.glob(f".{root.name}.old-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir(parents=True)
        counts = {}
        ann_id0 = 0
        for split, n in (("train", p.n_train), ("val", p.n_val)):
            n_img, n_ann = _write_split(p, tmp, split, n, ann_id0, workers)
            counts[split] = {"images": n_img, "annotations": n_ann}
            ann_id0 += n_ann
        manifest = {
            "generator": "bench.synthetic",  # (the files stay byte-identical across moves)
            "version": GENERATOR_VERSION,
            "params": p.to_json(),
            "counts": counts,
            "categories": [{"id": cid, "name": name} for cid, name, _ in p.shapes],
        }
        # The manifest goes in last: a folder without it is never mistaken for a complete one.
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        old = None
        if root.exists():
            old = root.parent / f".{root.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(root, old)
        os.rename(tmp, root)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def generate(
    root: Path | str,
    *,
    n_train: int,
    n_val: int,
    image_size: int | tuple[int, int],
    seed: int = 0,
    size_jitter: float = 0.25,
    size_range: tuple[float, float] = (8.0, 300.0),
    aspect_range: tuple[float, float] = (0.5, 2.0),
    objects_per_image: tuple[int, int] = (1, 8),
    n_classes: int = 4,
    distractors: tuple[int, int] = (2, 10),
    noise_sigma: float = 6.0,
    jpeg_quality: int = 90,
    workers: int | None = None,
) -> Path:
    """(Re)generate the dataset at root, always; the folder is swapped in atomically.

    ``image_size`` is ``(width, height)`` or one int for square images; each image's sides are
    drawn in ``[1 - size_jitter, 1] * image_size``. ``workers`` (default: the CPUs this process
    may use, at most 8) only changes speed, never the output. Refuses to overwrite a folder that
    is not a dataset written by this module.
    """
    root = Path(root).absolute()
    p = SyntheticParams.build(
        n_train=n_train,
        n_val=n_val,
        image_size=image_size,
        seed=seed,
        size_jitter=size_jitter,
        size_range=size_range,
        aspect_range=aspect_range,
        objects_per_image=objects_per_image,
        n_classes=n_classes,
        distractors=distractors,
        noise_sigma=noise_sigma,
        jpeg_quality=jpeg_quality,
    )
    with _locked(root):
        return _generate_locked(root, p, workers)


def _is_current(root: Path, p: SyntheticParams) -> bool:
    m = read_manifest(root)
    if not m or m.get("version") != GENERATOR_VERSION or m.get("params") != p.to_json():
        return False
    for split in SPLITS:
        c = m.get("counts", {}).get(split, {})
        d = img_dir(root, split)
        if not ann_file(root, split).is_file() or not d.is_dir():
            return False
        if sum(1 for _ in d.glob("*.jpg")) != c.get("images"):
            return False
    return True


def ensure_dataset(root: Path | str, *, workers: int | None = None, **params: Any) -> Path:
    """Generate root unless it already holds this generator version with these params.

    Cheap to call from every job: it reads the manifest and counts files. Safe to call from
    many processes at once (file lock) and after a killed generation (temp dir + rename).
    ``params`` are generate()'s keyword arguments.
    """
    root = Path(root).absolute()
    p = SyntheticParams.build(**params)
    if _is_current(root, p):
        return root
    with _locked(root):
        if _is_current(root, p):  # another process generated it while we waited
            return root
        return _generate_locked(root, p, workers)


# --------------------------------------------------------------------------- analysis


def fpn_level(w: float, h: float, scale: float = 1.0) -> int:
    """FPN level (3..7) whose anchor base size 32 * 2**(l-3) is nearest (in log2) to the box.

    This is RetinaNet's / FreeAnchor's anchor rule (octave base scale 4 x stride), so a box
    goes to the level where its best-matching anchors live. ``scale`` is the resize factor of
    the training pipeline: level boundaries are at 45, 91, 181 and 362 px *after* resizing,
    so P7 only gets objects when images are upsampled enough (e.g. scale 2 for 181+ px
    objects); at native 320 px no object reaches P7.
    """
    s = math.sqrt(max(w * h, 1e-6)) * scale
    return int(min(7, max(3, round(math.log2(s / 32.0)) + 3)))


def level_counts(ann: Path | str | dict[str, Any], scale: float = 1.0) -> dict[int, int]:
    """Number of non-crowd boxes per FPN level (see fpn_level) in a COCO annotation file."""
    data = ann if isinstance(ann, dict) else json.loads(Path(ann).read_text())
    counts = {lvl: 0 for lvl in FPN_LEVELS}
    for a in data["annotations"]:
        if not a.get("iscrowd", 0):
            counts[fpn_level(a["bbox"][2], a["bbox"][3], scale)] += 1
    return counts


def draw_annotations(
    image: Image.Image,
    anns: Sequence[dict[str, Any]],
    categories: dict[int, str] | None = None,
    *,
    scale: int = 1,
) -> Image.Image:
    """Image with its COCO boxes and names drawn on, for eyeballing that boxes fit objects."""
    img = image.convert("RGB")
    if scale != 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    d = ImageDraw.Draw(img)
    for a in anns:
        x, y, w, h = (v * scale for v in a["bbox"])
        color = (255, 0, 255) if a.get("iscrowd") else (255, 255, 255)
        # The box's outer edge hugs the object's outermost pixels: pixel i spans [i, i+1).
        d.rectangle((x - 1, y - 1, x + w, y + h), outline=(0, 0, 0))
        d.rectangle((x, y, x + w - 1, y + h - 1), outline=color)
        name = (categories or {}).get(a["category_id"], str(a["category_id"]))
        d.text((x + 2, max(0, y - 11)), name, fill=color)
    return img


def preview(
    root: Path | str,
    split: str = "val",
    index: int = 0,
    out: Path | str | None = None,
    *,
    scale: int = 2,
) -> Path:
    """Write the index-th image of a split with its annotations drawn as a PNG; return its path."""
    data = json.loads(ann_file(root, split).read_text())
    info = data["images"][index]
    anns = [a for a in data["annotations"] if a["image_id"] == info["id"]]
    cats = {c["id"]: c["name"] for c in data["categories"]}
    img = draw_annotations(
        Image.open(img_dir(root, split) / info["file_name"]), anns, cats, scale=scale
    )
    out = Path(out) if out is not None else Path(root) / f"preview_{split}_{index}.png"
    img.save(out)
    return out


# --------------------------------------------------------------------------- CLI


def _pair(cast: type) -> Any:
    def parse(text: str) -> tuple[Any, Any]:
        parts = text.replace("x", ",").split(",")
        if len(parts) != 2:
            raise argparse.ArgumentTypeError(f"expected two values like 8,300, got {text!r}")
        return cast(parts[0]), cast(parts[1])

    return parse


def _size(text: str) -> int | tuple[int, int]:
    return int(text) if text.isdigit() else _pair(int)(text)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.data.synthetic",
        description="Write (or check) the embedded COCO-layout synthetic shapes dataset.",
    )
    ap.add_argument(
        "root", type=Path, help="dataset folder (COCO layout: annotations/, train2017/, val2017/)"
    )
    ap.add_argument("--n-train", type=int, default=400)
    ap.add_argument("--n-val", type=int, default=100)
    ap.add_argument("--image-size", type=_size, default=320, help="S or WxH (default 320)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size-jitter", type=float, default=0.25, help="sides drawn in [1-j, 1]*size")
    ap.add_argument(
        "--size-range", type=_pair(float), default=(8.0, 300.0), help="object sqrt(area) range, px"
    )
    ap.add_argument("--objects-per-image", type=_pair(int), default=(1, 8))
    ap.add_argument("--n-classes", type=int, default=4, help=f"1..{len(SHAPES)}")
    ap.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes (default: CPUs, max 8); output identical",
    )
    ap.add_argument("--force", action="store_true", help="regenerate even if the folder is current")
    ap.add_argument(
        "--preview", type=int, default=0, metavar="N", help="also write N annotated val PNGs"
    )
    args = ap.parse_args(argv)

    params = dict(
        n_train=args.n_train,
        n_val=args.n_val,
        image_size=args.image_size,
        seed=args.seed,
        size_jitter=args.size_jitter,
        size_range=args.size_range,
        objects_per_image=args.objects_per_image,
        n_classes=args.n_classes,
    )
    t0 = time.perf_counter()
    try:
        root = (
            generate(args.root, workers=args.workers, **params)
            if args.force
            else ensure_dataset(args.root, workers=args.workers, **params)
        )
    except FileExistsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    dt = time.perf_counter() - t0
    m = read_manifest(root) or {}
    print(f"{root}: {json.dumps(m.get('counts'))} ({dt:.1f} s)")
    for split in SPLITS:
        for sc in (1.0, 2.0):
            c = level_counts(ann_file(root, split), sc)
            print(
                f"  {split} boxes per level at resize x{sc:g}: "
                + " ".join(f"P{k}={v}" for k, v in c.items())
            )
    for i in range(min(args.preview, m.get("counts", {}).get("val", {}).get("images", 0))):
        print(f"  preview: {preview(root, 'val', i)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
