"""Real-COCO quirks through mmdet 3.x's own CocoDataset and CocoMetric.

Proves what the harness relies on: label index -> category id goes through the annotation
file (ids 1, 5, 90), crowd regions are neither misses nor false positives, images without
boxes are kept for evaluation, and grayscale / CMYK JPEGs come out with 3 channels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from fixtures.coco_quirks import QuirksDataset, rle_encode, write_quirks_dataset

TEST_PIPELINE = [
    dict(type="LoadImageFromFile"),
    dict(type="Resize", scale=(320, 320), keep_ratio=True),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(
        type="PackDetInputs",
        meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor"),
    ),
]


@pytest.fixture(scope="module")
def quirks(tmp_path_factory: pytest.TempPathFactory) -> QuirksDataset:
    from mmdet.utils import register_all_modules

    register_all_modules()
    return write_quirks_dataset(tmp_path_factory.mktemp("quirks"))


def _dataset(q: QuirksDataset, **kwargs: Any):  # noqa: ANN202 - mmdet type
    from mmdet.datasets import CocoDataset

    kwargs.setdefault("test_mode", True)
    return CocoDataset(
        data_root=str(q.root),
        ann_file="annotations/instances_val2017.json",
        data_prefix=dict(img="val2017/"),
        metainfo=dict(classes=q.classes),
        pipeline=TEST_PIPELINE,
        **kwargs,
    )


def _gt(q: QuirksDataset) -> dict[str, Any]:
    return json.loads(q.ann_file.read_text())


def test_files_have_the_quirks(quirks: QuirksDataset) -> None:
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    data = _gt(quirks)
    assert [c["id"] for c in data["categories"]] == [1, 5, 90]
    modes = {}
    for img in data["images"]:
        with Image.open(quirks.img_dir / img["file_name"]) as im:
            modes[img["id"]] = im.mode
            assert im.size == (img["width"], img["height"])
    assert modes[quirks.gray_image_id] == "L" and modes[quirks.cmyk_image_id] == "CMYK"
    assert len({(i["width"], i["height"]) for i in data["images"]}) == len(data["images"])
    assert not [a for a in data["annotations"] if a["image_id"] == quirks.empty_image_id]
    crowd = [a for a in data["annotations"] if a["iscrowd"]]
    assert [a["id"] for a in crowd] == [quirks.crowd_ann_id]
    coco = COCO(str(quirks.ann_file))
    m = coco.annToMask(coco.anns[quirks.crowd_ann_id])
    assert (
        m.sum() == crowd[0]["area"]
        and mask_utils.toBbox(coco.annToRLE(coco.anns[quirks.crowd_ann_id])).tolist()
        == crowd[0]["bbox"]
    )


def test_rle_encode_roundtrip() -> None:
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(0)
    for first in (0, 1):
        m = (rng.random((7, 5)) > 0.5).astype(np.uint8)
        m[0, 0] = first
        rle = mask_utils.frPyObjects(rle_encode(m), 7, 5)
        assert np.array_equal(mask_utils.decode(rle), m)


def test_every_image_decodes_to_three_channels(quirks: QuirksDataset) -> None:
    ds = _dataset(quirks)
    data = _gt(quirks)
    sizes = {i["id"]: (i["height"], i["width"]) for i in data["images"]}
    assert len(ds) == len(data["images"]) == 5
    seen = set()
    for i in range(len(ds)):
        out = ds[i]
        inputs, sample = out["inputs"], out["data_samples"]
        assert isinstance(inputs, torch.Tensor) and inputs.dtype == torch.uint8
        assert inputs.ndim == 3 and inputs.shape[0] == 3, (sample.img_id, inputs.shape)
        assert tuple(sample.ori_shape) == sizes[sample.img_id]
        assert max(sample.img_shape) == 320
        seen.add(sample.img_id)
    assert seen == set(quirks.image_ids)
    # The grayscale image really is gray in all three channels; the CMYK one is not blank.
    gray = next(
        ds[i]["inputs"]
        for i in range(len(ds))
        if ds.get_data_info(i)["img_id"] == quirks.gray_image_id
    )
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    cmyk = next(
        ds[i]["inputs"]
        for i in range(len(ds))
        if ds.get_data_info(i)["img_id"] == quirks.cmyk_image_id
    )
    assert cmyk.float().std() > 10


def test_label_index_maps_back_to_category_ids(quirks: QuirksDataset) -> None:
    ds = _dataset(quirks)
    assert list(ds.cat_ids) == [1, 5, 90]
    assert tuple(ds.metainfo["classes"]) == quirks.classes
    cats = {c["id"]: c["name"] for c in _gt(quirks)["categories"]}
    for label, cid in enumerate(ds.cat_ids):
        assert ds.cat2label[cid] == label and cats[cid] == ds.metainfo["classes"][label]

    by_box = {(a["image_id"], tuple(a["bbox"])): a for a in _gt(quirks)["annotations"]}
    n_crowd = 0
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        for inst in info["instances"]:
            x1, y1, x2, y2 = inst["bbox"]
            ann = by_box[(info["img_id"], (x1, y1, x2 - x1, y2 - y1))]
            assert ds.cat_ids[inst["bbox_label"]] == ann["category_id"]
            assert inst["ignore_flag"] == ann["iscrowd"]
            n_crowd += inst["ignore_flag"]
        # After the test pipeline crowd boxes are set aside and the rest stay in original image
        # pixels (LoadAnnotations runs after Resize), which is where predictions are compared.
        out = ds[i]["data_samples"]
        orig = np.array(
            [inst["bbox"] for inst in info["instances"] if not inst["ignore_flag"]],
            dtype=np.float32,
        ).reshape(-1, 4)
        assert np.array_equal(out.gt_instances.bboxes.numpy(), orig)
        assert [ds.cat_ids[int(lbl)] for lbl in out.gt_instances.labels] == [
            ds.cat_ids[inst["bbox_label"]] for inst in info["instances"] if not inst["ignore_flag"]
        ]
        assert len(out.ignored_instances) == sum(inst["ignore_flag"] for inst in info["instances"])
    assert n_crowd == 1


def test_empty_image_kept_for_evaluation(quirks: QuirksDataset) -> None:
    def ids(ds) -> set[int]:  # noqa: ANN001
        return {ds.get_data_info(i)["img_id"] for i in range(len(ds))}

    keep = _dataset(quirks, test_mode=False, filter_cfg=dict(filter_empty_gt=False))
    assert quirks.empty_image_id in ids(keep) and len(keep) == 5
    # The filter is real: training-style filtering drops exactly the image without boxes.
    dropped = _dataset(quirks, test_mode=False, filter_cfg=dict(filter_empty_gt=True))
    assert ids(dropped) == set(quirks.image_ids) - {quirks.empty_image_id}
    # test_mode never filters.
    assert quirks.empty_image_id in ids(
        _dataset(quirks, test_mode=True, filter_cfg=dict(filter_empty_gt=True))
    )


def _perfect_predictions(
    q: QuirksDataset, cat_ids: list[int], score: float = 0.5
) -> dict[int, dict[str, list]]:
    """Ground truth as detections: boxes in original pixels (xyxy), labels as indices."""
    data = _gt(q)
    preds: dict[int, dict[str, list]] = {
        i["id"]: {"bboxes": [], "scores": [], "labels": []} for i in data["images"]
    }
    for a in data["annotations"]:
        if a["iscrowd"]:
            continue
        x, y, w, h = a["bbox"]
        p = preds[a["image_id"]]
        p["bboxes"].append([x, y, x + w, y + h])
        p["scores"].append(score)
        p["labels"].append(cat_ids.index(a["category_id"]))
    return preds


def _evaluate(
    q: QuirksDataset, ds, preds: dict[int, dict[str, list]], outfile_prefix: str | None = None
) -> dict[str, float]:  # noqa: ANN001
    from mmdet.evaluation import CocoMetric

    metric = CocoMetric(ann_file=str(q.ann_file), metric="bbox", outfile_prefix=outfile_prefix)
    metric.dataset_meta = ds.metainfo
    sizes = {i["id"]: (i["height"], i["width"]) for i in _gt(q)["images"]}
    for img_id, p in preds.items():
        sample = dict(
            img_id=img_id,
            ori_shape=sizes[img_id],
            pred_instances=dict(
                bboxes=torch.tensor(p["bboxes"], dtype=torch.float32).reshape(-1, 4),
                scores=torch.tensor(p["scores"], dtype=torch.float32),
                labels=torch.tensor(p["labels"], dtype=torch.int64),
            ),
        )
        metric.process({}, [sample])
    return metric.evaluate(size=len(preds))


def test_perfect_predictions_give_ap_one(quirks: QuirksDataset, tmp_path: Path) -> None:
    ds = _dataset(quirks)
    preds = _perfect_predictions(quirks, list(ds.cat_ids))
    res = _evaluate(quirks, ds, preds, outfile_prefix=str(tmp_path / "det"))
    assert res["coco/bbox_mAP"] == pytest.approx(1.0)
    assert res["coco/bbox_mAP_50"] == pytest.approx(1.0) and res[
        "coco/bbox_mAP_75"
    ] == pytest.approx(1.0)
    for k in ("s", "m", "l"):
        assert res[f"coco/bbox_mAP_{k}"] == pytest.approx(1.0)  # every area range has objects
    # The written detections carry the original category ids and boxes, not label indices.
    dets = json.loads((tmp_path / "det.bbox.json").read_text())
    gt = {
        (a["image_id"], a["category_id"], tuple(a["bbox"]))
        for a in _gt(quirks)["annotations"]
        if not a["iscrowd"]
    }
    assert {d["category_id"] for d in dets} == {1, 5, 90}
    assert {(d["image_id"], d["category_id"], tuple(np.round(d["bbox"], 3))) for d in dets} == gt


def test_crowd_region_is_ignored_not_a_false_positive(quirks: QuirksDataset) -> None:
    ds = _dataset(quirks)
    crowd = next(a for a in _gt(quirks)["annotations"] if a["iscrowd"])
    x, y, w, h = crowd["bbox"]
    person = list(ds.cat_ids).index(1)

    preds = _perfect_predictions(quirks, list(ds.cat_ids))
    p = preds[crowd["image_id"]]
    p["bboxes"].append([x, y, x + w, y + h])
    p["scores"].append(0.9)  # ranked above every true positive
    p["labels"].append(person)
    assert _evaluate(quirks, ds, preds)["coco/bbox_mAP"] == pytest.approx(1.0)

    # Control: the same top-scored box on the image without annotations is a false positive.
    preds = _perfect_predictions(quirks, list(ds.cat_ids))
    e = preds[quirks.empty_image_id]
    e["bboxes"].append([10.0, 10.0, 60.0, 60.0])
    e["scores"].append(0.9)
    e["labels"].append(person)
    assert _evaluate(quirks, ds, preds)["coco/bbox_mAP"] < 1.0


def test_one_wrong_category_lowers_ap(quirks: QuirksDataset) -> None:
    ds = _dataset(quirks)
    ids = list(ds.cat_ids)
    preds = _perfect_predictions(quirks, ids)
    p = preds[42]
    k = p["labels"].index(ids.index(1))
    p["labels"][k] = ids.index(5)  # the person predicted as an airplane
    res = _evaluate(quirks, ds, preds)
    assert res["coco/bbox_mAP"] < 1.0
