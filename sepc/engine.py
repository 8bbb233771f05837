"""Training aids that configs can name, registered with mmdet: not part of the method."""
from __future__ import annotations

import re

import torch
from mmdet.registry import HOOKS, VISBACKENDS
from mmengine.hooks import Hook
from mmengine.visualization import MLflowVisBackend


@HOOKS.register_module()
class ChannelsLastHook(Hook):
    """Train (and validate) the model in channels-last memory.

    Why: on a CPU, mkldnn's convolutions run 10-15% faster per training step of the small smoke
    detectors in NHWC than in NCHW (every variant alike; docs/performance.md). Only the memory
    layout changes: the numbers are the same convolutions, up to float rounding, and a
    checkpoint loads into an NCHW model as usual.
    """

    priority = "VERY_HIGH"

    def before_run(self, runner) -> None:
        model = runner.model.module if hasattr(runner.model, "module") else runner.model
        model.to(memory_format=torch.channels_last)


@VISBACKENDS.register_module()
class MLflowNamedVisBackend(MLflowVisBackend):
    """mmengine's MLflow backend with metric names MLflow accepts: it refuses characters such as
    the ``@`` of mmdet's ``coco/bbox_AR@100`` and fails the run, so they become ``_``."""

    _BAD = re.compile(r"[^0-9A-Za-z_\-. :/]")

    def add_scalar(self, name, value, step=0, **kwargs) -> None:
        super().add_scalar(self._BAD.sub("_", name), value, step, **kwargs)

    def add_scalars(self, scalar_dict, step=0, file_path=None, **kwargs) -> None:
        super().add_scalars({self._BAD.sub("_", k): v for k, v in scalar_dict.items()}, step,
                            file_path, **kwargs)
