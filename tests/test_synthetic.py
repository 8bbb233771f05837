"""The embedded synthetic dataset: layout, determinism, scale span, ids, atomic regeneration."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.data import synthetic as syn

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(n_train=48, n_val=8, image_size=320, seed=0)
TINY = dict(n_train=4, n_val=2, image_size=64, seed=0)


def _tree_digest(root: Path) -> dict[str, str]:
    """sha1 of every dataset file (the manifest aside), keyed by relative path."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != syn.MANIFEST:
            out[str(p.relative_to(root))] = hashlib.sha1(p.read_bytes()).hexdigest()
    return out


def _load(root: Path, split: str) -> dict:
    return json.loads(syn.ann_file(root, split).read_text())


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return syn.generate(tmp_path_factory.mktemp("syn") / "ds", **SMALL)


def test_layout_matches_coco(small: Path) -> None:
    m = syn.read_manifest(small)
    assert m is not None and m["version"] == syn.GENERATOR_VERSION
    assert m["params"]["n_train"] == 48 and m["params"]["image_size"] == [320, 320]
    for split, n in (("train", 48), ("val", 8)):
        data = _load(small, split)
        assert {"info", "licenses", "images", "annotations", "categories"} <= set(data)
        assert len(data["images"]) == n == m["counts"][split]["images"]
        assert len(data["annotations"]) == m["counts"][split]["annotations"]
        files = sorted(p.name for p in syn.img_dir(small, split).glob("*.jpg"))
        assert files == sorted(i["file_name"] for i in data["images"])
    ids = [i["id"] for s in syn.SPLITS for i in _load(small, s)["images"]]
    ann_ids = [a["id"] for s in syn.SPLITS for a in _load(small, s)["annotations"]]
    assert len(set(ids)) == len(ids) and len(set(ann_ids)) == len(ann_ids)


def test_pycocotools_loads_and_annotations_are_sane(small: Path) -> None:
    from pycocotools.coco import COCO

    for split in syn.SPLITS:
        coco = COCO(str(syn.ann_file(small, split)))
        assert len(coco.getImgIds()) == len(_load(small, split)["images"])
        for a in coco.dataset["annotations"]:
            img = coco.imgs[a["image_id"]]
            x, y, w, h = a["bbox"]
            assert all(isinstance(v, float) for v in a["bbox"])
            assert w >= 1 and h >= 1 and x >= 0 and y >= 0
            assert x + w <= img["width"] and y + h <= img["height"]
            assert 0 < a["area"] <= w * h and a["iscrowd"] == 0
            assert len(a["segmentation"][0]) == 8
        with Image.open(
            syn.img_dir(small, split) / coco.imgs[coco.getImgIds()[0]]["file_name"]
        ) as im:
            assert im.mode == "RGB"


def test_category_ids_not_contiguous_and_all_used(small: Path) -> None:
    data = _load(small, "train")
    ids = [c["id"] for c in data["categories"]]
    assert ids == list(syn.cat_ids(4)) == [1, 3, 7, 12]
    assert ids != list(range(1, len(ids) + 1))
    assert [c["name"] for c in data["categories"]] == list(syn.class_names(4))
    assert {a["category_id"] for a in data["annotations"]} == set(ids)


def test_objects_per_image_and_size_jitter(small: Path) -> None:
    data = _load(small, "train")
    per_img = {i["id"]: 0 for i in data["images"]}
    for a in data["annotations"]:
        per_img[a["image_id"]] += 1
    # Placement can give up on an object that would hide another, so counts are at most 8.
    assert max(per_img.values()) <= 8 and min(per_img.values()) >= 1
    assert np.mean(list(per_img.values())) > 3
    sizes = {(i["width"], i["height"]) for i in data["images"]}
    assert all(240 <= w <= 320 and 240 <= h <= 320 for w, h in sizes)
    assert len(sizes) > 10  # sizes really vary: padding paths run
    for i in data["images"][:5]:
        with Image.open(syn.img_dir(small, "train") / i["file_name"]) as im:
            assert im.size == (i["width"], i["height"])


def test_size_span(small: Path) -> None:
    s = [math.sqrt(a["bbox"][2] * a["bbox"][3]) for a in _load(small, "train")["annotations"]]
    assert min(s) < 16 and sum(v < 16 for v in s) >= 5
    assert max(s) > 200 and sum(v > 200 for v in s) >= 3


def test_every_fpn_level_gets_objects(small: Path) -> None:
    train = syn.ann_file(small, "train")
    native = syn.level_counts(train, scale=1.0)
    # At native resolution P3..P6 all get objects; P7 (anchors >= 512 px, boundary 362 px)
    # cannot: no box in a <= 320 px image is that large.
    assert all(native[lvl] > 0 for lvl in (3, 4, 5, 6)), native
    assert native[7] == 0
    # Once the training pipeline upsamples 2x (320 -> 640 px), every level P3..P7 gets objects.
    up = syn.level_counts(train, scale=2.0)
    assert all(up[lvl] > 0 for lvl in syn.FPN_LEVELS), up
    assert sum(up.values()) == sum(native.values())


def test_fpn_level_rule() -> None:
    assert syn.fpn_level(8, 8) == 3 and syn.fpn_level(32, 32) == 3 and syn.fpn_level(45, 45) == 3
    assert syn.fpn_level(46, 46) == 4 and syn.fpn_level(64, 64) == 4
    assert syn.fpn_level(128, 128) == 5 and syn.fpn_level(256, 256) == 6
    assert syn.fpn_level(363, 363) == 7 and syn.fpn_level(2000, 2000) == 7
    assert syn.fpn_level(200, 200, scale=2.0) == 7


def test_deterministic(tmp_path: Path) -> None:
    params = dict(n_train=12, n_val=4, image_size=(200, 160), seed=3)
    a = _tree_digest(syn.generate(tmp_path / "a", **params))
    b = _tree_digest(syn.generate(tmp_path / "b", **params))
    assert a == b and len(a) == 2 + 16  # byte-identical JSON and JPEGs
    assert (tmp_path / "a" / syn.MANIFEST).read_bytes() == (
        tmp_path / "b" / syn.MANIFEST
    ).read_bytes()
    # Parallel generation changes nothing.
    par = {**params, "n_train": 64, "image_size": 64, "size_range": (8, 40)}
    assert _tree_digest(syn.generate(tmp_path / "p", workers=2, **par)) == _tree_digest(
        syn.generate(tmp_path / "q", workers=1, **par)
    )
    # Image i depends on (seed, split, i) only, not on the split's length.
    c = _tree_digest(syn.generate(tmp_path / "c", **{**params, "n_train": 5}))
    jpgs = [k for k in c if k.startswith("train2017")]
    assert len(jpgs) == 5 and all(c[k] == a[k] for k in jpgs)

    d_root = syn.generate(tmp_path / "d", **{**params, "seed": 4})
    d = _tree_digest(d_root)
    assert d.keys() == a.keys()
    assert d["annotations/instances_train2017.json"] != a["annotations/instances_train2017.json"]
    name = next(k for k in a if k.endswith(".jpg"))
    pa = np.asarray(Image.open(tmp_path / "a" / name))
    pd = np.asarray(Image.open(d_root / name))
    assert pa.shape != pd.shape or not np.array_equal(pa, pd)


def test_ensure_dataset_reuses_and_regenerates(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    syn.ensure_dataset(root, **TINY)
    ann = syn.ann_file(root, "train")
    stamp = (ann.stat().st_ino, ann.stat().st_mtime_ns)
    assert syn.ensure_dataset(root, **TINY) == root.absolute()
    assert (ann.stat().st_ino, ann.stat().st_mtime_ns) == stamp  # reused, not rewritten

    syn.ensure_dataset(root, **{**TINY, "n_val": 3})  # different params -> regenerated
    assert syn.read_manifest(root)["params"]["n_val"] == 3
    assert len(_load(root, "val")["images"]) == 3

    # A damaged folder (an image deleted) is regenerated too.
    next(syn.img_dir(root, "val").glob("*.jpg")).unlink()
    syn.ensure_dataset(root, **{**TINY, "n_val": 3})
    assert len(list(syn.img_dir(root, "val").glob("*.jpg"))) == 3

    # A folder from another generator version is regenerated.
    m = json.loads((root / syn.MANIFEST).read_text())
    m["version"] = -1
    (root / syn.MANIFEST).write_text(json.dumps(m))
    syn.ensure_dataset(root, **{**TINY, "n_val": 3})
    assert syn.read_manifest(root)["version"] == syn.GENERATOR_VERSION
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ds.lock", "ds"]  # no temp dirs left


def test_interrupted_generation_leaves_old_dataset_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "ds"
    syn.ensure_dataset(root, **TINY)
    before = _tree_digest(root)
    real = syn._write_split

    def dying(p, r, split, *args, **kwargs):  # noqa: ANN001, ANN202
        if split == "val":
            raise KeyboardInterrupt("killed mid-generation")
        return real(p, r, split, *args, **kwargs)

    monkeypatch.setattr(syn, "_write_split", dying)
    with pytest.raises(KeyboardInterrupt):
        syn.ensure_dataset(root, **{**TINY, "seed": 9})
    assert _tree_digest(root) == before and syn.read_manifest(root)["params"]["seed"] == 0
    assert not list(tmp_path.glob(".ds.tmp-*"))

    # A temp dir left by a SIGKILLed generator is cleaned up by the next generation.
    monkeypatch.setattr(syn, "_write_split", real)
    stale = tmp_path / ".ds.tmp-99999-deadbeef"
    (stale / "train2017").mkdir(parents=True)
    syn.ensure_dataset(root, **{**TINY, "seed": 9})
    assert syn.read_manifest(root)["params"]["seed"] == 9 and not stale.exists()


def test_never_overwrites_foreign_folder(tmp_path: Path) -> None:
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    keep = root / "annotations" / "instances_val2017.json"
    keep.write_text("{}")
    with pytest.raises(FileExistsError):
        syn.ensure_dataset(root, **TINY)
    with pytest.raises(FileExistsError):
        syn.generate(root, **TINY)
    assert keep.read_text() == "{}"


def test_params_validation() -> None:
    with pytest.raises(TypeError):
        syn.SyntheticParams.build(**TINY, colour="red")
    with pytest.raises(ValueError):
        syn.SyntheticParams.build(**{**TINY, "n_classes": 99})
    p = syn.SyntheticParams.build(**{**TINY, "image_size": [64, 48]})
    assert p.image_size == (64, 48) and p == syn.SyntheticParams.build(
        **{**TINY, "image_size": (64, 48)}
    )


def test_fixed_size_and_more_classes(tmp_path: Path) -> None:
    root = syn.generate(
        tmp_path / "ds",
        n_train=6,
        n_val=1,
        image_size=(96, 64),
        size_jitter=0.0,
        n_classes=6,
        size_range=(8, 40),
    )
    data = _load(root, "train")
    assert {(i["width"], i["height"]) for i in data["images"]} == {(96, 64)}
    assert [c["id"] for c in data["categories"]] == [1, 3, 7, 12, 20, 33]


def test_preview_draws_boxes(small: Path, tmp_path: Path) -> None:
    out = syn.preview(small, "val", 0, tmp_path / "p.png", scale=2)
    info = _load(small, "val")["images"][0]
    with Image.open(out) as im:
        assert im.size == (2 * info["width"], 2 * info["height"])
        raw = np.asarray(
            Image.open(syn.img_dir(small, "val") / info["file_name"]).resize(
                im.size, Image.Resampling.NEAREST
            )
        )
        assert not np.array_equal(np.asarray(im.convert("RGB")), raw)


def test_cli(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run(
        [sys.executable, "-m", "bench.data.synthetic", "--help"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and "--n-train" in r.stdout
    assert (
        syn.main(
            [
                str(tmp_path / "ds"),
                "--n-train",
                "3",
                "--n-val",
                "2",
                "--image-size",
                "64x48",
                "--preview",
                "1",
            ]
        )
        == 0
    )
    m = syn.read_manifest(tmp_path / "ds")
    assert m["counts"]["train"]["images"] == 3 and m["params"]["image_size"] == [64, 48]
