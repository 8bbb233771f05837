"""What evaluating the authors' mmdet-1.1 models needs beyond mmdet's own ``Legacy*`` classes.

mmdet 3.x ships ``LegacyAnchorGenerator`` and ``LegacyDeltaXYWHBBoxCoder`` for 1.x models
(RetinaNet, FreeAnchor). Two pieces of the 1.x conventions it does not ship are here:

- ``LegacyTBLRBBoxCoder``: the FSAF box coder of the SEPC release (mmdet 1.1 had no FSAF; the
  authors wrote their own). It differs from mmdet 3.x's ``TBLRBBoxCoder`` in three ways: no
  normalizer (3.x divides by 4), the 1.x "+1" pixel convention (prior centres
  ``(x1 + x2 + 1) / 2``, sizes ``x2 - x1 + 1``, ``x2 = cx + r - 1``), and its channel order
  (bottom, top, left, right): the authors swapped top and bottom in both encode and decode.
- ``LegacyCocoMetric``: mmdet 1.x wrote COCO boxes as ``w = x2 - x1 + 1`` (x2 is the last pixel
  inside the box); 3.x writes ``x2 - x1``, one pixel less for a 1.x model's boxes.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from mmdet.evaluation.metrics import CocoMetric
from mmdet.models.task_modules.coders.base_bbox_coder import BaseBBoxCoder
from mmdet.registry import METRICS, TASK_UTILS
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
