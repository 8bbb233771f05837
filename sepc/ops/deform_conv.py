"""Deformable convolution (DCNv1, one deformable group) with a fast exact CPU path.

mmcv's CPU kernel is a scalar im2col loop; the path used elsewhere gathers the nine bilinear taps
of every output position with ``F.embedding_bag`` (four weighted rows of the channels-last
input per tap: one fused, vectorised gather over whole channel rows) into a "tap image" of size
(kh*Ho, kw*Wo), where pixel (kh*y + i, kw*x + j) holds tap (i, j) of output (y, x); a plain
conv with stride (kh, kw) over that image is then exactly the DCN, and runs on the same conv
kernel as a normal layer (tools/benchmarks/deform.py measures both). Training samples the taps
with ``grid_sample`` instead (its backward beat the gather's at the sizes trained on a CPU here)
and multiplies them with the weight in one batched matmul. On CUDA mmcv's kernel is kept.
All compute the same function: per output position and tap k (row-major), offset channel 2k is
dy and 2k+1 is dx, bilinear sampling, zero outside the image.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Impl = Literal["auto", "mmcv", "torch", "onnx"]

#: Which implementation ``deform_conv2d`` uses; ``auto`` = mmcv on CUDA, gather+conv elsewhere,
#: ``onnx`` while exporting to ONNX.
DEFAULT_IMPL: Impl = os.environ.get("SEPC_DEFORM_IMPL", "auto")  # type: ignore[assignment]


@contextmanager
def using(impl: Impl) -> Iterator[None]:
    """``deform_conv2d`` defaults to ``impl`` inside the block (the FLOP counter traces the
    ``torch`` path: mmcv's kernel is opaque to it), and to what it was after."""
    global DEFAULT_IMPL
    saved, DEFAULT_IMPL = DEFAULT_IMPL, impl
    try:
        yield
    finally:
        DEFAULT_IMPL = saved


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)  # type: ignore[return-value]


def _bilinear_taps(offset: Tensor, in_hw: tuple[int, int], kernel: tuple[int, int],
                   stride: tuple[int, int], padding: tuple[int, int],
                   dilation: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Rows into the (N*H*W, C) input and weights, both (N*Ho*Wo*kh*kw, 4), of every tap.

    Rows come in tap-image order (n, y, i, x, j). A corner outside the image gets weight 0 (and a
    clamped, valid row): zero padding, as mmcv.
    """
    n, _, ho, wo = offset.shape
    kh, kw = kernel
    h, w = in_hw
    dev, dt = offset.device, offset.dtype
    iy = torch.arange(ho, device=dev, dtype=dt)[:, None] * stride[0] - padding[0] + (
        torch.arange(kh, device=dev, dtype=dt) * dilation[0])  # (Ho, kh)
    ix = torch.arange(wo, device=dev, dtype=dt)[:, None] * stride[1] - padding[1] + (
        torch.arange(kw, device=dev, dtype=dt) * dilation[1])  # (Wo, kw)
    off = offset.view(n, kh, kw, 2, ho, wo)
    off = off.permute(0, 4, 1, 5, 2, 3)  # (n, y, i, x, j, 2)
    py = off[..., 0] + iy[None, :, :, None, None]
    px = off[..., 1] + ix[None, None, None, :, :]
    corners, weights = [], []
    for p, size in ((py, h), (px, w)):
        p0 = p.floor()
        frac = p - p0
        lo = p0.long()
        hi = lo + 1
        weights.append(torch.stack(((1 - frac) * ((lo >= 0) & (lo < size)),
                                    frac * ((hi >= 0) & (hi < size))), -1))
        corners.append(torch.stack((lo, hi), -1).clamp_(0, size - 1))
    img = torch.arange(n, device=dev).view(n, 1, 1, 1, 1, 1) * (h * w)
    rows = (img + corners[0] * w)[..., :, None] + corners[1][..., None, :]
    wts = weights[0][..., :, None] * weights[1][..., None, :]
    return rows.reshape(-1, 4), wts.reshape(-1, 4)


@lru_cache(maxsize=32)
def _grid_base(in_hw: tuple[int, int], out_hw: tuple[int, int], kernel: tuple[int, int],
               stride: tuple[int, int], padding: tuple[int, int], dilation: tuple[int, int],
               dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    """grid_sample coordinates (K, Ho, Wo, 2), as (x, y), of every tap at zero offset, and the
    scale (2,) of an offset (dx, dy) in them.

    Built once per layer shape (in float64, rounded once) instead of with a dozen tiny arange /
    broadcast ops per call: at the smoke sizes those ops and their backward cost as much as the
    sampling. The cached tensors are only ever read.
    """
    h, w = in_hw
    ho, wo = out_hw
    kh, kw = kernel
    f64 = dict(dtype=torch.float64, device=device)
    ky = (torch.arange(kh, **f64) * dilation[0]).repeat_interleave(kw)[:, None, None]  # (K, 1, 1)
    kx = (torch.arange(kw, **f64) * dilation[1]).repeat(kh)[:, None, None]
    py = ky + (torch.arange(ho, **f64) * stride[0] - padding[0])[:, None]  # (K, Ho, 1)
    px = kx + (torch.arange(wo, **f64) * stride[1] - padding[1])  # (K, 1, Wo)
    py, px = torch.broadcast_tensors(py, px)
    # align_corners=False maps pixel p to (2p + 1) / size - 1: exact for size 1 too.
    base = torch.stack(((2 * px + 1) / w - 1, (2 * py + 1) / h - 1), dim=-1)
    scale = torch.tensor([2 / w, 2 / h], **f64)
    return base.to(dtype), scale.to(dtype)


def _sampling_grid(offset: Tensor, in_hw: tuple[int, int], kernel: tuple[int, int],
                   stride: tuple[int, int], padding: tuple[int, int],
                   dilation: tuple[int, int]) -> Tensor:
    """Normalised grid_sample coordinates (N, K*Ho, Wo, 2) of every tap of every output:
    the cached zero-offset grid plus the offsets (dy, dx flipped to grid_sample's (x, y)) times
    their scale, i.e. two kernels forward and two backward."""
    n, _, ho, wo = offset.shape
    kh, kw = kernel
    base, scale = _grid_base(in_hw, (ho, wo), kernel, stride, padding, dilation, offset.dtype,
                             offset.device)
    off = offset.view(n, kh * kw, 2, ho, wo).flip(2).permute(0, 1, 3, 4, 2)  # (N, K, Ho, Wo, 2)
    return torch.addcmul(base, off, scale).reshape(n, kh * kw * ho, wo, 2)


def _traced_sampling_grid(offset: Tensor, in_hw: tuple[int, int], kernel: tuple[int, int],
                          stride: tuple[int, int], padding: tuple[int, int],
                          dilation: tuple[int, int]) -> Tensor:
    """``_sampling_grid`` built from the offsets' shape on every call, for the ONNX export.

    The tracer records these arange ops against the input's size, so one graph serves any image
    size; the cached grid of the training path would be frozen into the graph as a constant of the
    size it was traced at (and wrong at every other size).
    """
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
    # align_corners=False maps pixel p to (2p + 1) / size - 1: exact for size 1 too.
    gx = (2 * px + 1) / w - 1
    gy = (2 * py + 1) / h - 1
    return torch.stack((gx, gy), dim=-1).view(n, kh * kw * ho, wo, 2)


def deform_conv2d_torch(x: Tensor, offset: Tensor, weight: Tensor,
                        stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                        dilation: int | tuple[int, int] = 1) -> Tensor:
    """DCNv1 in plain torch ops (any device, differentiable), in the faster form per mode.

    Inference: the taps gathered into a tap image + one strided conv (the fastest CPU forward).
    Training: the taps bilinearly sampled with ``grid_sample`` on a cached zero-offset grid + one
    bmm. At the smoke profile's sizes (width 32, maps of 2..32 px), the only CPU training here,
    ~50 small calls per step are bound by per-op overhead and memory traffic, not arithmetic:
    this form has the fewest ops and temporaries. A hand-written backward (corner rows and
    weights reused, a sorted embedding_bag scatter for the input gradient) and one call for all
    pyramid levels of a conv (on a zero-gapped canvas) were both measured slower
    (docs/performance.md); GPUs use mmcv's kernel.
    Returns channels-last memory when ``x`` is channels-last, contiguous NCHW otherwise.
    """
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    n, c, h, w = x.shape
    cout, cin, kh, kw = weight.shape
    if cin != c:
        raise ValueError(f"weight expects {cin} input channels, input has {c}")
    ho, wo = offset.shape[-2:]
    if torch.is_grad_enabled() and (x.requires_grad or offset.requires_grad
                                    or weight.requires_grad):
        grid = _sampling_grid(offset, (h, w), (kh, kw), stride, padding, dilation)
        cols = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        cols = cols.reshape(n, c * kh * kw, ho * wo)  # channel-major, tap-minor: weight's order
        # bmm with the weight broadcast over the batch: matmul(2-D, 3-D) folds the batch into
        # the rows instead, i.e. copies cols (and its gradient) into a transposed layout.
        wmat = weight.reshape(1, cout, c * kh * kw).expand(n, -1, -1)
        out = torch.bmm(wmat, cols).view(n, cout, ho, wo)
    else:
        rows, wts = _bilinear_taps(offset, (h, w), (kh, kw), stride, padding, dilation)
        table = x.permute(0, 2, 3, 1).reshape(n * h * w, c)  # a view when x is channels-last
        taps = F.embedding_bag(rows, table, per_sample_weights=wts.to(x.dtype), mode="sum")
        image = taps.view(n, kh * ho, kw * wo, c).permute(0, 3, 1, 2)  # channels-last
        out = F.conv2d(image, weight, stride=(kh, kw))
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return out.contiguous(memory_format=torch.channels_last)
    return out.contiguous()


def deform_conv2d(x: Tensor, offset: Tensor, weight: Tensor,
                  stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                  dilation: int | tuple[int, int] = 1, impl: Impl | None = None) -> Tensor:
    """DCNv1 (groups=1, deform_groups=1, no bias) through the fastest exact path for the device."""
    impl = impl or DEFAULT_IMPL
    if impl == "onnx" or impl == "auto" and torch.onnx.is_in_onnx_export():
        return deform_conv2d_onnx(x, offset, weight, stride, padding, dilation)
    if impl == "auto":
        # mmcv's kernel refuses maps smaller than the kernel (P7 of a small image): not ours.
        small = x.shape[-2] < weight.shape[-2] or x.shape[-1] < weight.shape[-1]
        impl = "mmcv" if x.is_cuda and not small else "torch"
    if impl == "torch":
        return deform_conv2d_torch(x, offset, weight, stride, padding, dilation)
    if impl != "mmcv":
        raise ValueError(f"unknown deformable conv implementation {impl!r} (auto, mmcv, torch, "
                         "onnx)")
    from mmcv.ops import deform_conv2d as mmcv_deform_conv2d

    return mmcv_deform_conv2d(x, offset.to(x.dtype), weight.to(x.dtype), _pair(stride),
                              _pair(padding), _pair(dilation), 1, 1, False,
                              _im2col_step(x.shape[0]))


def deform_conv2d_onnx(x: Tensor, offset: Tensor, weight: Tensor,
                       stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                       dilation: int | tuple[int, int] = 1) -> Tensor:
    """DCNv1 as ONNX's standard ops see it: ``grid_sample`` (GridSample, opset 16+) of the taps,
    then one matmul (MatMul) with the weight; no custom op (bench/run/onnx.py exports through
    it)."""
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    n, c, h, w = x.shape
    cout, _, kh, kw = weight.shape
    ho, wo = offset.shape[-2:]
    grid = _traced_sampling_grid(offset, (h, w), (kh, kw), stride, padding, dilation)
    cols = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    cols = cols.reshape(n, c * kh * kw, ho * wo)  # channel-major, tap-minor: weight's order
    return torch.matmul(weight.reshape(cout, c * kh * kw), cols).view(n, cout, ho, wo)


def _im2col_step(batch: int) -> int:
    # mmcv asserts that the batch is a multiple of its im2col step (default 32).
    return max(d for d in range(1, min(32, batch) + 1) if batch % d == 0)
