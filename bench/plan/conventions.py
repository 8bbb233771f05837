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
    """Rewrite ``cfg`` in place to ``conventions`` (``mmdet3``: the config as mmdet 3.x has it)."""
    if check_conventions(conventions) == "mmdet3":
        return
    head = cfg.model.bbox_head
    head.anchor_generator.update(type="LegacyAnchorGenerator", center_offset=0.5)
    if head.bbox_coder.type == "TBLRBBoxCoder":  # the release's FSAF coder: no normalizer
        head.bbox_coder = dict(type="LegacyTBLRBBoxCoder")
    _legacy(head.bbox_coder)
    assigner = (cfg.model.get("train_cfg") or {}).get("assigner")
    if assigner is not None and assigner.type == "MaxIoUAssigner":
        assigner.iou_calculator = dict(type="LegacyBboxOverlaps2D")
    cfg.model.test_cfg.nms["offset"] = 1
    cfg.model.test_cfg.min_bbox_size = -1  # 1.x's one-stage heads applied none
    if cfg.get("train_dataloader"):
        for step in cfg.train_dataloader.dataset.pipeline:
            _legacy(step)
    for name in ("val_evaluator", "test_evaluator"):
        _legacy(cfg.get(name))
