"""The SEPC release's own FSAF (written by the authors on mmdet 1.1, which had none), on mmdet 3.x.

mmdet 3.x's ``FSAFHead`` computes the same online feature selection (per ground truth, the level
whose anchors have the lowest mean loss is the only one trained on it); what the release did
differently is here, selected by config (``experiments/_base_/fsaf_authors.py``):

- ``EffectiveAreaAssigner``: a location is positive for a box when its anchor centre lies inside
  the box and its anchor overlaps the box's central 0.2 region (IoF > 0.01, "+1" sizes), ignored
  when it overlaps the region only by area; where boxes compete, a priority decides. The priority
  was meant to be the box's rank by area (smaller wins), but the release used the SORT INDICES
  as priorities: box ``j`` gets ``argsort(areas, descending)[j]``, not its rank. The two agree
  for two boxes (a permutation of two is its own inverse); with three or more overlapping boxes
  the wrong box can win. Reproduced as is.
  mmdet 3.x's ``CenterRegionAssigner`` ranks correctly, ignores "shadowed" class labels of
  overlapped boxes and treats crowd boxes as ignore regions; the release did none of that.
- ``IoULossTBLR``: -log IoU computed on the encoded (b, t, l, r) distances, in units of the
  anchor size, with the union clamped to at least 1 (one anchor area): for a box smaller than
  its anchor even a perfect prediction keeps a loss. mmdet 3.x decodes to boxes and uses
  ``IoULoss`` on them.
- the box coder (``sepc.legacy.LegacyTBLRBBoxCoder``) and the regression bias initialised to 1
  (3.x: 0.25) are config values.
"""
from __future__ import annotations

import torch
from mmdet.models.losses.utils import weight_reduce_loss
from mmdet.models.task_modules.assigners import AssignResult, BaseAssigner
from mmdet.registry import MODELS, TASK_UTILS
from mmengine.structures import InstanceData
from torch import Tensor, nn

from .legacy import legacy_bbox_overlaps


def scale_boxes(bboxes: Tensor, scale: float) -> Tensor:
    """Boxes scaled about their centre, in 1.x's "+1" convention (the release's formula)."""
    w_half = (bboxes[:, 2] - bboxes[:, 0] + 1) * 0.5 * scale
    h_half = (bboxes[:, 3] - bboxes[:, 1] + 1) * 0.5 * scale
    x_c = (bboxes[:, 2] + bboxes[:, 0] + 1) * 0.5
    y_c = (bboxes[:, 3] + bboxes[:, 1] + 1) * 0.5
    return torch.stack([x_c - w_half, y_c - h_half, x_c + w_half - 1, y_c + h_half - 1], dim=1)


@TASK_UTILS.register_module()
class EffectiveAreaAssigner(BaseAssigner):
    """The release's FSAF assigner (see the module docstring), on mmdet 3.x's assigner interface.

    ``gt_inds`` of the result: 0 negative, -1 ignored, ``j + 1`` positive for box ``j``.

    Args:
        pos_area_thr: scale of the effective (positive) region of a box (the release: 0.2).
        neg_area_thr: scale of the region whose other locations are ignored (the release: 0.2,
            the same, so only locations overlapping the effective region without their anchor
            centre inside the box are ignored).
        min_pos_iof: minimum IoF of an anchor with a region to count as overlapping it.
    """

    def __init__(self, pos_area_thr: float, neg_area_thr: float, min_pos_iof: float = 1e-2):
        self.pos_area_thr = pos_area_thr
        self.neg_area_thr = neg_area_thr
        self.min_pos_iof = min_pos_iof

    def assign(self, pred_instances: InstanceData, gt_instances: InstanceData,
               gt_instances_ignore: InstanceData | None = None, **kwargs) -> AssignResult:
        """Crowd boxes (``gt_instances_ignore``) play no part, as in the release."""
        priors = pred_instances.priors[:, :4]
        gt_bboxes, gt_labels = gt_instances.bboxes, gt_instances.labels
        num_priors, num_gts = priors.size(0), gt_bboxes.size(0)
        gt_inds = priors.new_zeros((num_priors,), dtype=torch.long)
        labels = priors.new_full((num_priors,), -1, dtype=torch.long)
        if num_gts == 0:  # the release raised here; mmdet 3.x trains such an image as background
            return AssignResult(num_gts, gt_inds, None, labels=labels)

        centers = (priors[:, :2] + priors[:, 2:4] + 1) / 2
        in_gt = ((centers[:, None, 0] > gt_bboxes[None, :, 0])
                 & (centers[:, None, 0] < gt_bboxes[None, :, 2])
                 & (centers[:, None, 1] > gt_bboxes[None, :, 1])
                 & (centers[:, None, 1] < gt_bboxes[None, :, 3]))
        effective = legacy_bbox_overlaps(priors, scale_boxes(gt_bboxes, self.pos_area_thr), "iof")
        in_eff = in_gt & (effective > self.min_pos_iof)  # (priors, gts)
        ignore_region = legacy_bbox_overlaps(priors, scale_boxes(gt_bboxes, self.neg_area_thr),
                                             "iof")
        in_ignore = (ignore_region > self.min_pos_iof) & ~in_eff

        gt_inds[in_ignore.any(dim=1)] = -1
        matched = in_eff.any(dim=1)
        if matched.any():
            areas = (gt_bboxes[:, 2] - gt_bboxes[:, 0] + 1) * (
                gt_bboxes[:, 3] - gt_bboxes[:, 1] + 1
            )
            # The release's priorities: the sort indices themselves, not the ranks they encode.
            _, sort_idx = areas.sort(descending=True)
            priority = torch.where(in_eff, sort_idx[None, :], sort_idx.new_tensor(-1))
            gt_inds[matched] = priority[matched].argmax(dim=1) + 1
            labels[matched] = gt_labels[gt_inds[matched] - 1]
        return AssignResult(num_gts, gt_inds, None, labels=labels)


def iou_loss_tblr(pred: Tensor, target: Tensor, eps: float = 1e-6) -> Tensor:
    """-log IoU of boxes given as distances (t, b, l, r) from one point, per row: the release's
    formula, union clamped to at least 1 (the order of t and b does not matter)."""
    pt, pb, pl, pr = pred.unbind(dim=-1)
    tt, tb, tl, tr = target.unbind(dim=-1)
    pred_area = (pt + pb) * (pl + pr)
    target_area = (tt + tb) * (tl + tr)
    inter = (torch.min(pt, tt) + torch.min(pb, tb)) * (torch.min(pl, tl) + torch.min(pr, tr))
    union = (pred_area + target_area - inter).clamp(min=1)
    return -(inter / union).clamp(min=eps).log()


@MODELS.register_module()
class IoULossTBLR(nn.Module):
    """The release's FSAF regression loss: IoU loss on encoded TBLR distances (see above).

    Args:
        eps: IoU floor before the log.
        reduction: 'none', 'mean' or 'sum' (FSAF uses 'none': the head reduces per level).
        loss_weight: factor on the loss.
    """

    def __init__(self, eps: float = 1e-6, reduction: str = "mean", loss_weight: float = 1.0):
        super().__init__()
        self.eps, self.reduction, self.loss_weight = eps, reduction, loss_weight

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None,
                avg_factor: float | None = None, reduction_override: str | None = None,
                **kwargs) -> Tensor:
        """``weight`` is per coordinate (n, 4), as the head gives it; its row mean weighs a row."""
        if weight is not None and not torch.any(weight > 0):
            return (pred * weight).sum()  # no positive at all: a zero that keeps the graph
        reduction = reduction_override or self.reduction
        if weight is not None:
            weight = weight.sum(dim=-1) / 4
        loss = weight_reduce_loss(iou_loss_tblr(pred, target, self.eps), weight, reduction,
                                  avg_factor)
        return self.loss_weight * loss
