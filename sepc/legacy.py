"""mmdet 1.1's conventions on mmdet 3.x: what training and evaluating like the authors' code needs
beyond mmdet's own ``Legacy*`` classes (``LegacyAnchorGenerator``, ``LegacyDeltaXYWHBBoxCoder``).

mmdet 1.x counted a box's last pixel as inside it: ``x2 = x1 + w - 1``, sizes ``x2 - x1 + 1``,
centres ``(x1 + x2 + 1) / 2``, and flipped a box as ``x' = W - 1 - x``. mmdet 3.x dropped every
"+1". The pieces here put them back, each where 3.x would otherwise apply its own:

- ``LegacyTBLRBBoxCoder``: the FSAF box coder of the SEPC release (mmdet 1.1 had no FSAF; the
  authors wrote their own). It differs from mmdet 3.x's ``TBLRBBoxCoder`` in three ways: no
  normalizer (3.x divides by 4), the "+1" convention (prior centres ``(x1 + x2 + 1) / 2``, sizes
  ``x2 - x1 + 1``, ``x2 = cx + r - 1``), and its channel order (bottom, top, left, right): the
  authors swapped top and bottom in both encode and decode.
- ``legacy_bbox_overlaps`` / ``LegacyBboxOverlaps2D``: IoU and IoF with "+1" areas (1.x's
  ``bbox_overlaps``), for ``MaxIoUAssigner`` and the release's ``EffectiveAreaAssigner``.
- ``LegacyLoadAnnotations``, ``LegacyResize``, ``LegacyRandomFlip``: training boxes as mmdet
  1.1's CocoDataset and pipeline produced them (crowd boxes never reached the heads).
- ``LegacyDetDataPreprocessor``: 1.x padded inside each pipeline, so a config could pad test
  images to another multiple than training ones (the release's FSAF baseline: 384 at test).
- ``LegacyCocoMetric``: mmdet 1.x wrote COCO boxes as ``w = x2 - x1 + 1``; 3.x writes
  ``x2 - x1``, one pixel less for a 1.x model's boxes.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from mmdet.datasets.transforms import LoadAnnotations, RandomFlip, Resize
from mmdet.evaluation.metrics import CocoMetric
from mmdet.models.data_preprocessors import DetDataPreprocessor
from mmdet.models.task_modules.coders.base_bbox_coder import BaseBBoxCoder
from mmdet.registry import METRICS, MODELS, TASK_UTILS, TRANSFORMS
from mmdet.structures.bbox import HorizontalBoxes, get_box_tensor
from torch import Tensor


def _centers_and_sizes(priors: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(cx, cy, w, h) of priors in the 1.x convention, each (..., 1)."""
    cx = (priors[..., 0:1] + priors[..., 2:3] + 1) / 2
    cy = (priors[..., 1:2] + priors[..., 3:4] + 1) / 2
    return cx, cy, priors[..., 2:3] - priors[..., 0:1] + 1, priors[..., 3:4] - priors[..., 1:2] + 1


@TASK_UTILS.register_module()
class LegacyTBLRBBoxCoder(BaseBBoxCoder):
    """The SEPC release's FSAF box coder (mmdet 1.1, ``TBLRCoder``), channels (b, t, l, r).

    Args:
        target_means: subtracted from the encoded distances (the release: 0).
        target_stds: divide the encoded distances (the release: 1).
    """

    def __init__(self, target_means: Sequence[float] = (0., 0., 0., 0.),
                 target_stds: Sequence[float] = (1., 1., 1., 1.), **kwargs) -> None:
        super().__init__(**kwargs)
        self.means, self.stds = tuple(target_means), tuple(target_stds)

    def encode(self, bboxes, gt_bboxes) -> Tensor:
        """Distances from each prior's centre to the sides of its ground truth box."""
        priors, gts = get_box_tensor(bboxes), get_box_tensor(gt_bboxes)
        cx, cy, w, h = _centers_and_sizes(priors)
        top, bottom = cy - gts[..., 1:2], gts[..., 3:4] - cy + 1
        left, right = cx - gts[..., 0:1], gts[..., 2:3] - cx + 1
        loc = torch.cat([bottom / h, top / h, left / w, right / w], dim=-1)
        return (loc - loc.new_tensor(self.means)) / loc.new_tensor(self.stds)

    def decode(self, bboxes, pred_bboxes: Tensor, max_shape: Sequence[int] | None = None):
        """Boxes (x1, y1, x2, y2) from distances, clamped to [0, W-1] x [0, H-1] as 1.x did."""
        priors = get_box_tensor(bboxes)
        loc = pred_bboxes * pred_bboxes.new_tensor(self.stds) + pred_bboxes.new_tensor(self.means)
        cx, cy, w, h = _centers_and_sizes(priors)
        bottom, top = loc[..., 0:1] * h, loc[..., 1:2] * h
        left, right = loc[..., 2:3] * w, loc[..., 3:4] * w
        x1, x2 = cx - left, cx + right - 1
        y1, y2 = cy - top, cy + bottom - 1
        if max_shape is not None:
            height, width = int(max_shape[0]), int(max_shape[1])
            x1, x2 = x1.clamp(0, width - 1), x2.clamp(0, width - 1)
            y1, y2 = y1.clamp(0, height - 1), y2.clamp(0, height - 1)
        boxes = torch.cat([x1, y1, x2, y2], dim=-1)
        return HorizontalBoxes(boxes) if self.use_box_type else boxes


@METRICS.register_module()
class LegacyCocoMetric(CocoMetric):
    """mmdet's CocoMetric writing boxes as mmdet 1.x did: ``w = x2 - x1 + 1``."""

    def xyxy2xywh(self, bbox: np.ndarray) -> list:
        x1, y1, x2, y2 = bbox.tolist()
        return [x1, y1, x2 - x1 + 1, y2 - y1 + 1]


def legacy_bbox_overlaps(bboxes1: Tensor, bboxes2: Tensor, mode: str = "iou") -> Tensor:
    """(m, n) IoU, or IoF (intersection over the area of ``bboxes1``), with 1.x's "+1" sizes."""
    if mode not in ("iou", "iof"):
        raise ValueError(f"mode must be 'iou' or 'iof', got {mode!r}")
    lt = torch.max(bboxes1[:, None, :2], bboxes2[None, :, :2])
    rb = torch.min(bboxes1[:, None, 2:4], bboxes2[None, :, 2:4])
    wh = (rb - lt + 1).clamp(min=0)
    overlap = wh[..., 0] * wh[..., 1]
    area1 = (bboxes1[:, 2] - bboxes1[:, 0] + 1) * (bboxes1[:, 3] - bboxes1[:, 1] + 1)
    if mode == "iof":
        return overlap / area1[:, None]
    area2 = (bboxes2[:, 2] - bboxes2[:, 0] + 1) * (bboxes2[:, 3] - bboxes2[:, 1] + 1)
    return overlap / (area1[:, None] + area2[None, :] - overlap)


@TASK_UTILS.register_module()
class LegacyBboxOverlaps2D:
    """mmdet's ``BboxOverlaps2D`` with 1.x's "+1" areas (an assigner's ``iou_calculator``)."""

    def __call__(self, bboxes1, bboxes2, mode: str = "iou", is_aligned: bool = False) -> Tensor:
        if is_aligned:
            raise ValueError("LegacyBboxOverlaps2D computes all pairs only (is_aligned=False)")
        return legacy_bbox_overlaps(get_box_tensor(bboxes1)[..., :4],
                                    get_box_tensor(bboxes2)[..., :4], mode)


@TRANSFORMS.register_module()
class LegacyLoadAnnotations(LoadAnnotations):
    """Training boxes as mmdet 1.1 gave them to the heads: ``x2 = x1 + w - 1`` (its CocoDataset),
    and without crowd boxes (its pipeline collected only ``gt_bboxes`` and ``gt_labels``; 3.x
    passes crowd boxes on as ignore regions, which FSAF's CenterRegionAssigner uses)."""

    def transform(self, results: dict) -> dict:
        results = super().transform(results)
        keep = ~results["gt_ignore_flags"]
        for key in ("gt_bboxes", "gt_bboxes_labels", "gt_ignore_flags"):
            if key in results:
                results[key] = results[key][keep]
        if "gt_bboxes" in results:
            results["gt_bboxes"].tensor[:, 2:] -= 1
        return results


@TRANSFORMS.register_module()
class LegacyResize(Resize):
    """mmdet's Resize clipping boxes as 1.x did: to the last pixel, ``[0, W - 1] x [0, H - 1]``."""

    def _resize_bboxes(self, results: dict) -> None:
        super()._resize_bboxes(results)
        if results.get("gt_bboxes") is not None and self.clip_object_border:
            h, w = results["img_shape"]
            results["gt_bboxes"].clip_((h - 1, w - 1))


@TRANSFORMS.register_module()
class LegacyRandomFlip(RandomFlip):
    """mmdet's RandomFlip flipping boxes in 1.x's pixel indices: ``x' = W - 1 - x`` (3.x:
    ``W - x``, right for boxes whose x2 is the right edge, one pixel off for 1.x boxes)."""

    _SHIFT = {"horizontal": (-1, 0), "vertical": (0, -1), "diagonal": (-1, -1)}

    def _flip(self, results: dict) -> None:
        super()._flip(results)
        if results.get("gt_bboxes") is not None:
            results["gt_bboxes"].translate_(self._SHIFT[results["flip_direction"]])


@MODELS.register_module()
class LegacyDetDataPreprocessor(DetDataPreprocessor):
    """mmdet's DetDataPreprocessor with its own padding multiple at test time.

    Args:
        test_pad_size_divisor: pad test batches to a multiple of this (None: as in training).
        *args, **kwargs: as mmdet's DetDataPreprocessor.
    """

    def __init__(self, *args, test_pad_size_divisor: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.test_pad_size_divisor = test_pad_size_divisor

    def forward(self, data: dict, training: bool = False) -> dict:
        if training or self.test_pad_size_divisor is None:
            return super().forward(data, training)
        train_divisor, self.pad_size_divisor = self.pad_size_divisor, self.test_pad_size_divisor
        try:
            return super().forward(data, training)
        finally:
            self.pad_size_divisor = train_divisor
