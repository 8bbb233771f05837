"""Deformable convolution (DCNv1, one deformable group) with a fast exact CPU path.

mmcv's CPU kernel is a scalar im2col loop; the path used elsewhere gathers the nine bilinear taps
of every output position with ``F.embedding_bag`` (four weighted rows of the channels-last
input per tap: one fused, vectorised gather over whole channel rows) into a "tap image" of size
(kh*Ho, kw*Wo), where pixel (kh*y + i, kw*x + j) holds tap (i, j) of output (y, x); a plain
conv with stride (kh, kw) over that image is then exactly the DCN, and runs on the same conv
kernel as a normal layer (bench/bench_deform.py measures both). On CUDA mmcv's kernel is kept.
Both compute the same function: per output position and tap k (row-major), offset channel 2k is
dy and 2k+1 is dx, bilinear sampling, zero outside the image.
"""
from __future__ import annotations

import os
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Impl = Literal["auto", "mmcv", "torch"]

#: Which implementation ``deform_conv2d`` uses; ``auto`` = mmcv on CUDA, gather+conv elsewhere.
DEFAULT_IMPL: Impl = os.environ.get("SEPC_DEFORM_IMPL", "auto")  # type: ignore[assignment]


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)  # type: ignore[return-value]


def _bilinear_taps(offset: Tensor, in_hw: tuple[int, int], kernel: tuple[int, int],
                   stride: tuple[int, int], padding: tuple[int, int], dilation: tuple[int, int],
                   tap_image: bool) -> tuple[Tensor, Tensor]:
    """Rows into the (N*H*W, C) input and weights, both (N*Ho*Wo*kh*kw, 4), of every tap.

    Rows come in tap-image order (n, y, i, x, j) or, with ``tap_image=False``, in matmul order
    (n, y, x, i, j). A corner outside the image gets weight 0 (and a clamped, valid row): zero
    padding, as mmcv. Only the weights carry the offsets' gradient.
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
    if tap_image:  # (n, y, i, x, j, 2)
        off = off.permute(0, 4, 1, 5, 2, 3)
        py = off[..., 0] + iy[None, :, :, None, None]
        px = off[..., 1] + ix[None, None, None, :, :]
    else:  # (n, y, x, i, j, 2)
        off = off.permute(0, 4, 5, 1, 2, 3)
        py = off[..., 0] + iy[None, :, None, :, None]
        px = off[..., 1] + ix[None, None, :, None, :]
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


def deform_conv2d_torch(x: Tensor, offset: Tensor, weight: Tensor,
                        stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                        dilation: int | tuple[int, int] = 1) -> Tensor:
    """DCNv1 as a bilinear gather of the taps + one strided conv (any device, differentiable).

    Returns channels-last memory when ``x`` is channels-last, contiguous NCHW otherwise.
    """
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    n, c, h, w = x.shape
    _, cin, kh, kw = weight.shape
    if cin != c:
        raise ValueError(f"weight expects {cin} input channels, input has {c}")
    ho, wo = offset.shape[-2:]
    # Inference: the strided conv over the tap image is the fastest forward on CPU. Training:
    # one matmul, whose backward is two matmuls (the strided conv's backward is 10x slower).
    tap_image = not (torch.is_grad_enabled() and (
        x.requires_grad or offset.requires_grad or weight.requires_grad))
    rows, wts = _bilinear_taps(offset, (h, w), (kh, kw), stride, padding, dilation, tap_image)
    table = x.permute(0, 2, 3, 1).reshape(n * h * w, c)  # a view when x is channels-last
    taps = F.embedding_bag(rows, table, per_sample_weights=wts.to(x.dtype), mode="sum")
    if tap_image:
        image = taps.view(n, kh * ho, kw * wo, c).permute(0, 3, 1, 2)  # channels-last
        out = F.conv2d(image, weight, stride=(kh, kw))
    else:
        wmat = weight.permute(0, 2, 3, 1).reshape(weight.shape[0], kh * kw * c)
        out = torch.mm(taps.view(n * ho * wo, kh * kw * c), wmat.t())
        out = out.view(n, ho, wo, -1).permute(0, 3, 1, 2)
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return out.contiguous(memory_format=torch.channels_last)
    return out.contiguous()


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
