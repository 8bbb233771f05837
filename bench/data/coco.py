"""Where a cell's data lives: the embedded synthetic set, or a COCO-layout folder the user gives.

Checked before anything is queued, so that a wrong path or a broken annotation file is a one-line
error at submit time, not a failed job an hour later.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from bench.repo import REPO

TRAIN_ANN = "annotations/instances_train2017.json"
VAL_ANN = "annotations/instances_val2017.json"
#: Files above this size get a structural check only (COCO's train json is 448 MB).
FULL_PARSE_LIMIT = 64 * 2**20


class DataError(ValueError):
    """A data root that cannot be used; the message names the path and the problem."""


@dataclass(frozen=True)
class Dataset:
    root: Path
    classes: tuple[str, ...]
    cat_ids: tuple[int, ...]

    @property
    def train_ann(self) -> Path:
        return self.root / TRAIN_ANN

    @property
    def val_ann(self) -> Path:
        return self.root / VAL_ANN


def _check_annotation(path: Path) -> dict | None:
    if not path.is_file():
        raise DataError(f"annotation file missing: {path}")
    if path.stat().st_size > FULL_PARSE_LIMIT:
        with open(path, "rb") as fh:
            head = fh.read(1).strip()
        if head != b"{":
            raise DataError(f"malformed annotation file {path}: not a JSON object")
        return None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"malformed annotation file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise DataError(f"malformed annotation file {path}: not a JSON object")
    missing = [k for k in ("images", "annotations", "categories") if k not in data]
    if missing:
        raise DataError(f"malformed annotation file {path}: no {', '.join(missing)} key")
    if not data["categories"]:
        raise DataError(f"annotation file {path} has no categories")
    return data


@lru_cache(maxsize=8)
def open_coco_root(root: str | Path, need_train: bool = True) -> Dataset:
    """Validate a COCO-layout folder and read its categories (label index -> category id order).

    ``need_train=False``: evaluation only (released checkpoints), the train split may be absent.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"data root does not exist: {root}")
    for sub in ("train2017", "val2017") if need_train else ("val2017",):
        if not (root / sub).is_dir():
            raise DataError(f"data root {root} lacks the image folder {sub}/")
    val = _check_annotation(root / VAL_ANN)
    if need_train:
        _check_annotation(root / TRAIN_ANN)
    if val is None:  # a huge val file: parse it anyway, the categories are needed
        val = json.loads((root / VAL_ANN).read_text())
    cats = val["categories"]
    try:
        return Dataset(root, tuple(c["name"] for c in cats), tuple(int(c["id"]) for c in cats))
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"malformed categories in {root / VAL_ANN}: {exc}") from None


def synthetic_root(params: dict) -> Path:
    """Folder of the embedded synthetic dataset for these generator parameters."""
    tag = "synthetic-{n_train}-{n_val}-{image_size}-s{seed}".format(**params)
    extra = {k: v for k, v in params.items()
             if k not in ("kind", "n_train", "n_val", "image_size", "seed")}
    if extra:  # other generator knobs get their own folder too
        blob = json.dumps(extra, sort_keys=True, default=list).encode()
        tag += "-" + hashlib.sha1(blob).hexdigest()[:8]
    return REPO / "data" / tag


def ensure_synthetic(params: dict) -> Dataset:
    """Generate the synthetic dataset if it is missing (seconds), then open it."""
    from bench.data.synthetic import ensure_dataset

    root = synthetic_root(params)
    ensure_dataset(root, **{k: v for k, v in params.items() if k != "kind"})
    open_coco_root.cache_clear()
    return open_coco_root(root)
