"""Deformable convolution (DCNv1, one deformable group) with a fast exact CPU path.

mmcv's CPU kernel is an im2col loop that is 10-15x slower than sampling the nine taps with
``F.grid_sample`` and doing one matmul (bench/bench_deform.py measures it); on CUDA mmcv's
kernel is kept. Both compute the same function: per output position and tap k (row-major),
offset channel 2k is dy and 2k+1 is dx, bilinear sampling, zero outside the image.
"""
from __future__ import annotations

import os
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Impl = Literal["auto", "mmcv", "torch"]

#: Which implementation ``deform_conv2d`` uses; ``auto`` = mmcv on CUDA, sampling+matmul elsewhere.
DEFAULT_IMPL: Impl = os.environ.get("SEPC_DEFORM_IMPL", "auto")  # type: ignore[assignment]


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)  # type: ignore[return-value]


def _sampling_grid(offset: Tensor, in_hw: tuple[int, int], kernel: tuple[int, int],
                   stride: tuple[int, int], padding: tuple[int, int],
                   dilation: tuple[int, int]) -> Tensor:
    """Normalised grid_sample coordinates (N, K*Ho, Wo, 2) of every tap of every output."""
    n, _, ho, wo = offset.shape
    kh, kw = kernel
    h, w = in_hw
    dev, dt = offset.device, offset.dtype
    ki = torch.arange(kh, device=dev, dtype=dt).repeat_interleave(kw) * dilation[0]  # (K,)
    kj = torch.arange(kw, device=dev, dtype=dt).repeat(kh) * dilation[1]
    oy = torch.arange(ho, device=dev, dtype=dt) * stride[0] - padding[0]
    ox = torch.arange(wo, device=dev, dtype=dt) * stride[1] - padding[1]
    off = offset.view(n, kh * kw, 2, ho, wo)
    py = off[:, :, 0] + (ki[:, None, None] + oy[None, :, None])  # (N, K, Ho, Wo)
    px = off[:, :, 1] + (kj[:, None, None] + ox[None, None, :])
    # align_corners=False normalisation maps pixel p to (2p + 1) / size - 1: exact for size 1 too.
    gx = (2 * px + 1) / w - 1
    gy = (2 * py + 1) / h - 1
    return torch.stack((gx, gy), dim=-1).view(n, kh * kw * ho, wo, 2)


def deform_conv2d_torch(x: Tensor, offset: Tensor, weight: Tensor,
                        stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                        dilation: int | tuple[int, int] = 1) -> Tensor:
    """DCNv1 as bilinear sampling of the taps + one matmul (any device, differentiable)."""
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    n, c, h, w = x.shape
    cout, cin, kh, kw = weight.shape
    if cin != c:
        raise ValueError(f"weight expects {cin} input channels, input has {c}")
    ho, wo = offset.shape[-2:]
    grid = _sampling_grid(offset, (h, w), (kh, kw), stride, padding, dilation)
    cols = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    cols = cols.view(n, c * kh * kw, ho * wo)  # channel-major, tap-minor: weight's own order
    out = torch.matmul(weight.reshape(cout, c * kh * kw), cols)
    return out.view(n, cout, ho, wo)


def deform_conv2d(x: Tensor, offset: Tensor, weight: Tensor,
                  stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                  dilation: int | tuple[int, int] = 1, impl: Impl | None = None) -> Tensor:
    """DCNv1 (groups=1, deform_groups=1, no bias) through the fastest exact path for the device."""
    impl = impl or DEFAULT_IMPL
    if impl == "auto":
        # mmcv's kernel refuses maps smaller than the kernel (P7 of a small image): not ours.
        small = x.shape[-2] < weight.shape[-2] or x.shape[-1] < weight.shape[-1]
        impl = "mmcv" if x.is_cuda and not small else "torch"
    if impl == "torch":
        return deform_conv2d_torch(x, offset, weight, stride, padding, dilation)
    if impl != "mmcv":
        raise ValueError(f"unknown deformable conv implementation {impl!r} (auto, mmcv, torch)")
    from mmcv.ops import deform_conv2d as mmcv_deform_conv2d

    return mmcv_deform_conv2d(x, offset.to(x.dtype), weight.to(x.dtype), _pair(stride),
                              _pair(padding), _pair(dilation), 1, 1, False,
                              _im2col_step(x.shape[0]))


def _im2col_step(batch: int) -> int:
    # mmcv asserts that the batch is a multiple of its im2col step (default 32).
    return max(d for d in range(1, min(32, batch) + 1) if batch % d == 0)
