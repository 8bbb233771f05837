"""SEPC (Scale-equalizing Pyramid Convolution, CVPR 2020) as an mmdet 3.x plugin.

Importing this package (``custom_imports=dict(imports=['sepc'])`` in a config) registers the
``SEPC`` neck, the stand-alone ``PConvNeck`` (one output per level, e.g. for Faster R-CNN) and
the SEPC heads (``sepc.heads``: RetinaNet, FSAF, FreeAnchor, ATSS, FCOS) in mmdet's MODELS
registry, mmdet 1.1's conventions for training and
evaluating as the authors did (``sepc.legacy``: coder, IoU, transforms, metric), the release's
own FSAF assigner and loss (``sepc.legacy_fsaf``), a channels-last training hook and
MLflow logging that MLflow accepts (``sepc.engine``), and lets torch >= 2.6 load mmengine
checkpoints.
"""
from . import heads
from .checkpoint import allow_mmengine_checkpoints
from .engine import ChannelsLastHook, MLflowNamedVisBackend
from .heads import *  # noqa: F403  (every SEPC head: a new head needs no edit here)
from .legacy import (
    LegacyBboxOverlaps2D,
    LegacyCocoMetric,
    LegacyDetDataPreprocessor,
    LegacyLoadAnnotations,
    LegacyRandomFlip,
    LegacyResize,
    LegacyTBLRBBoxCoder,
)
from .legacy_fsaf import EffectiveAreaAssigner, IoULossTBLR
from .necks import SEPC, PConvModule, PConvNeck, fuse_ibn
from .ops import SEPCConv, deform_conv2d

allow_mmengine_checkpoints()

__all__ = [
    "SEPC",
    "PConvModule",
    "PConvNeck",
    "SEPCConv",
    *heads.__all__,
    "LegacyTBLRBBoxCoder",
    "LegacyCocoMetric",
    "LegacyBboxOverlaps2D",
    "LegacyDetDataPreprocessor",
    "LegacyLoadAnnotations",
    "LegacyRandomFlip",
    "LegacyResize",
    "EffectiveAreaAssigner",
    "IoULossTBLR",
    "deform_conv2d",
    "fuse_ibn",
    "allow_mmengine_checkpoints",
    "ChannelsLastHook",
    "MLflowNamedVisBackend",
]
__version__ = "0.1.0"
