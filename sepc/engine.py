"""Training aids that configs can name, registered with mmdet: not part of the method."""
from __future__ import annotations

import os
import re

import torch
from mmdet.registry import HOOKS, VISBACKENDS
from mmengine.hooks import Hook
from mmengine.visualization import MLflowVisBackend

#: oneDNN ISAs (``ONEDNN_MAX_CPU_ISA``) that keep it off its AVX-512 kernels.
_BELOW_AVX512 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2")


def channels_last_is_safe() -> str | None:
    """None when channels-last training is safe on this CPU, else why not.

    Why: oneDNN 3.12 (torch 2.13's) corrupts the heap in its AVX-512 1x1 backward-weights
    kernel for an NHWC input of 8 channels at stride 2: the smoke ResNet's first downsample conv
    (8 -> 16, 64x64). The process dies with ``double free or corruption``, or worse, does not
    (docs/performance.md, "Channels-last training and AVX-512"). NCHW never takes that kernel,
    and on AVX-512 NCHW is as fast as NHWC on AVX2, so nothing is lost by staying in it there.
    """
    isa = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").upper()
    if isa in _BELOW_AVX512 or not torch.cpu._is_avx512_supported():
        return None
    return ("this CPU has AVX-512, where oneDNN's NHWC 1x1 stride-2 backward corrupts the heap "
            "(ONEDNN_MAX_CPU_ISA=AVX2 allows it)")


@HOOKS.register_module()
class ChannelsLastHook(Hook):
    """Train (and validate) the model in channels-last memory where that is safe.

    Why: on a CPU without AVX-512, mkldnn's convolutions run 10-15% faster per training step of
    the small smoke detectors in NHWC than in NCHW (every variant alike; docs/performance.md).
    Only the memory layout changes: the numbers are the same convolutions, up to float rounding,
    and a checkpoint loads into an NCHW model as usual. Where it is not safe
    (:func:`channels_last_is_safe`) the model stays NCHW and the log says why.
    """

    priority = "VERY_HIGH"

    def before_run(self, runner) -> None:
        model = runner.model.module if hasattr(runner.model, "module") else runner.model
        if next(model.parameters()).is_cuda:
            model.to(memory_format=torch.channels_last)
            return
        why = channels_last_is_safe()
        if why:
            runner.logger.warning(f"ChannelsLastHook: training in NCHW: {why}")
            return
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
