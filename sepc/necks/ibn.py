"""Integrated batch norm: one BatchNorm over all pyramid levels at once, and its inference fold."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from torch import Tensor


def integrated_bn(feats: Sequence[Tensor], bn: nn.Module) -> list[Tensor]:
    """Normalise the pyramid with statistics of all levels together (the paper's iBN).

    Each level (N, C, H_l, W_l) is flattened to (N, C, 1, H_l*W_l), the five are concatenated
    along the last axis, normalised by one ``bn`` and split back, so that every level shares the
    mean and variance of the whole pyramid (P3 holds ~75% of the pixels).
    """
    n, c = feats[0].shape[:2]
    sizes = [f.shape[-2:] for f in feats]
    flat = torch.cat([f.reshape(n, c, 1, -1) for f in feats], dim=-1)
    parts = torch.split(bn(flat), [h * w for h, w in sizes], dim=-1)
    return [p.reshape(n, c, h, w) for p, (h, w) in zip(parts, sizes)]


def bn_affine(bn: nn.Module) -> tuple[Tensor, Tensor]:
    """(scale, shift) with eval-mode ``bn(x) == x * scale + shift`` per channel.

    Eval mode normalises with the running statistics, the same for every level and image: that
    is what makes iBN foldable into the convs before it (the paper: iBN costs no inference time).
    """
    if not isinstance(bn, nn.modules.batchnorm._BatchNorm) or not bn.track_running_stats:
        raise ValueError(f"cannot fold {type(bn).__name__}: only a BatchNorm with running "
                         "statistics folds into a conv")
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.affine:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.affine:
        shift = shift + bn.bias
    return scale.detach(), shift.detach()
