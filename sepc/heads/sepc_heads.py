"""mmdet's RetinaNet, FSAF, FreeAnchor, ATSS and FCOS heads taking the SEPC neck's (cls, loc)
pairs.

Each head subclasses mmdet's own, so losses, assignment and post-processing are mmdet's (or
what the config names instead, e.g. the release's FSAF assigner and loss). The only change is
the input of ``forward_single``: a (cls_feat, loc_feat) pair (a plain tensor is
used for both branches) and ``stacked_convs=0`` by default, so only the final 3x3 predictors
run on top of the neck.
"""
from __future__ import annotations

from mmcv.cnn import Scale
from mmdet.models.dense_heads import (
    AnchorFreeHead,
    ATSSHead,
    FCOSHead,
    FreeAnchorRetinaHead,
    FSAFHead,
    RetinaHead,
)
from mmdet.registry import MODELS
from torch import Tensor


def split_pair(x: Tensor | tuple[Tensor, Tensor] | list[Tensor]) -> tuple[Tensor, Tensor]:
    """(cls_feat, loc_feat) from a neck output level; a tensor feeds both branches."""
    if isinstance(x, (tuple, list)):
        if len(x) != 2:
            raise ValueError(f"a SEPC head level takes (cls_feat, loc_feat), got {len(x)} items")
        return x[0], x[1]
    return x, x


@MODELS.register_module()
class SEPCRetinaHead(RetinaHead):
    """RetinaHead on SEPC features (Args as mmdet's RetinaHead; ``stacked_convs`` defaults to 0)."""

    def __init__(self, *args, stacked_convs: int = 0, **kwargs) -> None:
        super().__init__(*args, stacked_convs=stacked_convs, **kwargs)

    def forward_single(self, x: Tensor | tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        cls_feat, reg_feat = split_pair(x)
        for conv in self.cls_convs:
            cls_feat = conv(cls_feat)
        for conv in self.reg_convs:
            reg_feat = conv(reg_feat)
        return self.retina_cls(cls_feat), self.retina_reg(reg_feat)


# FSAFHead.forward_single and FreeAnchor's losses call super(): with SEPCRetinaHead placed after
# mmdet's head in the bases, that super() lands on the pair-aware forward_single above.
@MODELS.register_module()
class SEPCFSAFHead(FSAFHead, SEPCRetinaHead):
    """FSAFHead on SEPC features: mmdet's FSAF, or the SEPC release's with its assigner, loss and
    coder from sepc.legacy_fsaf / sepc.legacy (experiments/_base_/fsaf_authors.py)."""

    def __init__(self, *args, stacked_convs: int = 0, **kwargs) -> None:
        super().__init__(*args, stacked_convs=stacked_convs, **kwargs)


@MODELS.register_module()
class SEPCFreeAnchorRetinaHead(FreeAnchorRetinaHead, SEPCRetinaHead):
    """FreeAnchorRetinaHead on SEPC features (learning-to-match loss, as mmdet's)."""

    def __init__(self, *args, stacked_convs: int = 0, **kwargs) -> None:
        super().__init__(*args, stacked_convs=stacked_convs, **kwargs)


@MODELS.register_module()
class SEPCATSSHead(ATSSHead):
    """ATSSHead on SEPC features (Args as mmdet's ATSSHead; ``stacked_convs`` defaults to 0).

    Not in the paper: SEPC on ATSS as UniverseNet ported it (its ``ATSSSEPCHead``): the
    centerness branch reads the loc feature, as mmdet's reads the reg tower's output.
    """

    def __init__(self, *args, stacked_convs: int = 0, **kwargs) -> None:
        super().__init__(*args, stacked_convs=stacked_convs, **kwargs)

    def forward_single(self, x: Tensor | tuple[Tensor, Tensor],
                       scale: Scale) -> tuple[Tensor, Tensor, Tensor]:
        cls_feat, reg_feat = split_pair(x)
        for conv in self.cls_convs:
            cls_feat = conv(cls_feat)
        for conv in self.reg_convs:
            reg_feat = conv(reg_feat)
        # as mmdet's: no exp on the deltas, the learnable per-level scale only
        bbox_pred = scale(self.atss_reg(reg_feat)).float()
        return self.atss_cls(cls_feat), bbox_pred, self.atss_centerness(reg_feat)


class _PairTowers(AnchorFreeHead):
    """AnchorFreeHead's tower pass on a (cls_feat, loc_feat) pair (a tensor feeds both), for
    a subclass of an anchor-free head whose ``forward_single`` calls ``super()`` for it."""

    def forward_single(self, x: Tensor | tuple[Tensor, Tensor]) -> tuple[Tensor, ...]:
        cls_feat, reg_feat = split_pair(x)
        for conv in self.cls_convs:
            cls_feat = conv(cls_feat)
        cls_score = self.conv_cls(cls_feat)
        for conv in self.reg_convs:
            reg_feat = conv(reg_feat)
        return cls_score, self.conv_reg(reg_feat), cls_feat, reg_feat


# FCOSHead.forward_single calls super().forward_single(x): with _PairTowers after FCOSHead in the
# bases, that lands on the pair-aware tower pass above, and the rest is mmdet's own code.
@MODELS.register_module()
class SEPCFCOSHead(FCOSHead, _PairTowers):
    """FCOSHead on SEPC features (Args as mmdet's FCOSHead; ``stacked_convs`` defaults to 0).

    Not in the paper. Classification reads the cls feature, box distances the loc feature, and
    centre-ness whichever branch mmdet's FCOSHead reads it from: the classification branch by
    default (``centerness_on_reg=False``, mmdet's FCOS R-50 1x), the regression branch with
    ``centerness_on_reg=True`` (mmdet's "centeronreg" configs). Scales, ``norm_on_bbox`` and
    every loss are mmdet's.
    """

    def __init__(self, *args, stacked_convs: int = 0, **kwargs) -> None:
        super().__init__(*args, stacked_convs=stacked_convs, **kwargs)
