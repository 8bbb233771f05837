"""Box conventions of a cell: mmdet 1.1's (the authors' code) or mmdet 3.x's own.

One switch, ``conventions`` in a profile's settings, applied by one function, so that a trained
``paper`` cell and an authors' released checkpoint (always ``mmdet1``) are built, trained and
evaluated alike. What ``mmdet1`` changes, and why each piece matters, is in
docs/differences-from-the-original.md; in short: anchors centred at ``(stride - 1) / 2`` (with
the faithful cls/loc padding this gives each head output the anchor the original gave it), box
coders, IoU, NMS and COCO output with "+1" sizes, training boxes as mmdet 1.1's CocoDataset gave
them (last pixel inside, crowd boxes dropped), no minimum box size at test.
"""
from __future__ import annotations

from bench.plan.cells import MatrixError

CONVENTIONS = ("mmdet1", "mmdet3")

#: mmdet 3.x types and their 1.x forms (sepc.legacy, or mmdet's own Legacy* classes).
_LEGACY_TYPES = {
    "DeltaXYWHBBoxCoder": "LegacyDeltaXYWHBBoxCoder",
    "LoadAnnotations": "LegacyLoadAnnotations",
    "Resize": "LegacyResize",
    "RandomFlip": "LegacyRandomFlip",
    "CocoMetric": "LegacyCocoMetric",
}


def check_conventions(name: str) -> str:
    if name not in CONVENTIONS:
        raise MatrixError(f"unknown conventions {name!r} (known: {', '.join(CONVENTIONS)})")
    return name


def _legacy(d) -> None:
    if d is not None and d.get("type") in _LEGACY_TYPES:
        d["type"] = _LEGACY_TYPES[d["type"]]


def apply_conventions(cfg, conventions: str) -> None:
    """Rewrite ``cfg`` in place to ``conventions`` (``mmdet3``: the config as mmdet 3.x has it).

    Every part that has the piece gets it, whatever the detector: anchors and box coders of the
    dense heads (a one-stage ``bbox_head``, an ``rpn_head``) and of a RoI head's box head, the
    IoU of every ``MaxIoUAssigner``, RoIAlign as mmdet 1.1's (no half-pixel shift, 2 samples per
    bin), "+1" NMS at every test stage; an anchor-free head's points and distance coder are the
    same in both (mmdet 1.1's FCOS points sat at ``stride // 2``, 3.x's at ``stride / 2``)."""
    if check_conventions(conventions) == "mmdet3":
        return
    model = cfg.model
    roi = model.get("roi_head") or {}
    for head in (model.get("bbox_head"), model.get("rpn_head"), roi.get("bbox_head")):
        if not head:
            continue
        if head.get("anchor_generator"):
            head.anchor_generator.update(type="LegacyAnchorGenerator", center_offset=0.5)
        if (head.get("bbox_coder") or {}).get("type") == "TBLRBBoxCoder":
            head.bbox_coder = dict(type="LegacyTBLRBBoxCoder")  # the release's FSAF coder
        _legacy(head.get("bbox_coder"))
    layer = (roi.get("bbox_roi_extractor") or {}).get("roi_layer")
    if layer and layer.get("type") == "RoIAlign":
        layer.update(sampling_ratio=2, aligned=False)
    train = model.get("train_cfg") or {}
    for stage in (train, train.get("rpn"), train.get("rcnn")):
        assigner = (stage or {}).get("assigner")
        if assigner is not None and assigner.type == "MaxIoUAssigner":
            assigner.iou_calculator = dict(type="LegacyBboxOverlaps2D")
    test = model.test_cfg
    if "nms" in test:  # a one-stage detector's
        test.nms["offset"] = 1
        test.min_bbox_size = -1  # 1.x's one-stage heads applied none
    for stage in (test.get("rpn"), test.get("rcnn")):
        if stage and stage.get("nms"):
            stage.nms["offset"] = 1
    if cfg.get("train_dataloader"):
        for step in cfg.train_dataloader.dataset.pipeline:
            _legacy(step)
    for name in ("val_evaluator", "test_evaluator"):
        _legacy(cfg.get(name))
