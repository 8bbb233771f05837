"""A tiny COCO-layout dataset with every real-COCO quirk the harness must survive.

Tests load it through mmdet's own CocoDataset / CocoMetric to prove that the pipeline maps
label indices back to category ids through the annotation file, ignores crowd regions, keeps
images without annotations for evaluation and decodes grayscale and CMYK JPEGs to 3 channels.
Real COCO has all of these (ids 1..90 with gaps, ~48 images without boxes in val2017, crowd
RLE regions, a few grayscale and CMYK JPEGs), a synthetic dataset usually has none.

Layout: ROOT/annotations/instances_val2017.json and ROOT/val2017/<12-digit id>.jpg.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["QUIRK_CATEGORIES", "QuirksDataset", "rle_encode", "write_quirks_dataset"]

# Real COCO ids and names, with the same gaps: label index i <-> id 1, 5, 90.
QUIRK_CATEGORIES: tuple[tuple[int, str], ...] = ((1, "person"), (5, "airplane"), (90, "toothbrush"))


@dataclasses.dataclass(frozen=True)
class QuirksDataset:
    """Where the quirks dataset lies and which image/annotation carries which quirk."""

    root: Path
    ann_file: Path
    img_dir: Path
    classes: tuple[str, ...]
    cat_ids: tuple[int, ...]
    image_ids: tuple[int, ...]
    gray_image_id: int
    cmyk_image_id: int
    empty_image_id: int
    crowd_ann_id: int


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """Uncompressed COCO RLE (column-major runs, starting with a zero run), as crowds use."""
    flat = np.asarray(mask, dtype=np.uint8).flatten(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        runs = [0] + runs
    return {"counts": [int(r) for r in runs], "size": [int(mask.shape[0]), int(mask.shape[1])]}


def _box_poly(x: float, y: float, w: float, h: float) -> list[list[float]]:
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]


def write_quirks_dataset(root: Path | str) -> QuirksDataset:
    """Write the quirks dataset under root (overwriting its files) and describe it.

    Images (ids have gaps too): 1 RGB 320x240 with two objects; 5 grayscale (mode L) 240x320;
    9 CMYK 256x192 with two objects and a crowd region (RLE); 30 RGB 200x150 without any
    annotation; 42 RGB 400x300 with a small (< 32^2), a medium and a large object, so that
    AP_s, AP_m and AP_l are all defined.
    """
    root = Path(root)
    ann_path = root / "annotations" / "instances_val2017.json"
    img_path = root / "val2017"
    ann_path.parent.mkdir(parents=True, exist_ok=True)
    img_path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1234)

    # (image id, mode, width, height, [(category id, x, y, w, h)], crowd mask box or None)
    specs: list[tuple[int, str, int, int, list[tuple[int, int, int, int, int]], tuple[int, int, int, int] | None]] = [
        (1, "RGB", 320, 240, [(1, 20, 30, 80, 150), (90, 180, 100, 60, 24)], None),
        (5, "L", 240, 320, [(5, 30, 60, 170, 90)], None),
        (9, "CMYK", 256, 192, [(1, 10, 20, 50, 120), (5, 140, 20, 100, 60)], (100, 110, 140, 70)),
        (30, "RGB", 200, 150, [], None),
        (42, "RGB", 400, 300, [(90, 10, 10, 20, 14), (5, 60, 40, 120, 70), (1, 200, 60, 180, 220)], None),
    ]
    colors = {1: (220, 40, 40), 5: (40, 200, 60), 90: (40, 80, 230)}

    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    ann_id = 100  # annotation ids are arbitrary in COCO too
    crowd_ann_id = -1
    for image_id, mode, w, h, objs, crowd in specs:
        bg = rng.integers(90, 160, size=(h, w, 3), dtype=np.uint8)
        img = Image.fromarray(bg, "RGB")
        draw = ImageDraw.Draw(img)
        for cid, x, y, bw, bh in objs:
            draw.rectangle((x, y, x + bw - 1, y + bh - 1), fill=colors[cid])
            ann_id += 1
            anns.append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": cid,
                    "bbox": [float(x), float(y), float(bw), float(bh)],
                    "area": float(bw * bh),
                    "iscrowd": 0,
                    "segmentation": _box_poly(x, y, bw, bh),
                }
            )
        if crowd is not None:
            # A crowd: many small people-coloured blobs under one RLE region, like COCO's.
            cx, cy, cw, ch = crowd
            mask = np.zeros((h, w), dtype=np.uint8)
            for yy in range(cy, cy + ch - 8, 14):
                for xx in range(cx, cx + cw - 8, 14):
                    mask[yy : yy + 10, xx : xx + 8] = 1
            arr = np.asarray(img).copy()
            arr[mask.astype(bool)] = colors[1]
            img = Image.fromarray(arr, "RGB")
            ys, xs = np.nonzero(mask)
            ann_id += 1
            crowd_ann_id = ann_id
            anns.append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": 1,
                    "bbox": [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)],
                    "area": float(mask.sum()),
                    "iscrowd": 1,
                    "segmentation": rle_encode(mask),
                }
            )
        file_name = f"{image_id:012d}.jpg"
        img.convert(mode).save(img_path / file_name, quality=92)
        images.append({"id": image_id, "file_name": file_name, "width": w, "height": h, "license": 1})

    data = {
        "info": {"description": "sepc-bench COCO quirks", "version": "1", "year": 2017},
        "licenses": [{"id": 1, "name": "generated", "url": ""}],
        "images": images,
        "annotations": anns,
        "categories": [{"id": cid, "name": name, "supercategory": "thing"} for cid, name in QUIRK_CATEGORIES],
    }
    ann_path.write_text(json.dumps(data, separators=(",", ":")))
    return QuirksDataset(
        root=root,
        ann_file=ann_path,
        img_dir=img_path,
        classes=tuple(name for _, name in QUIRK_CATEGORIES),
        cat_ids=tuple(cid for cid, _ in QUIRK_CATEGORIES),
        image_ids=tuple(s[0] for s in specs),
        gray_image_id=5,
        cmyk_image_id=9,
        empty_image_id=30,
        crowd_ann_id=crowd_ann_id,
    )
