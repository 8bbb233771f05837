"""The scale-equalizing conv: one weight, plain at the finest output level, deformable above."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.nn.modules.utils import _pair

from .deform_conv import deform_conv2d


class SEPCConv(nn.Module):
    """A 3x3 conv whose weight and bias serve two uses, as in the authors' ``sepc_conv``.

    ``forward(level, x)`` takes the index of the OUTPUT pyramid level the result feeds: below
    ``start_level`` (P3) or with ``part_deform=False`` it is a plain conv; otherwise a DCNv1 with
    the same weight and bias and an offset conv of its own (zero-initialised, so at init every
    deformable use equals the plain conv). Parameter names (weight, bias, conv_offset.*) match the
    released checkpoints.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: kernel size (3 in SEPC).
        stride: 2 for the PConv term that reads the finer level.
        padding: 1 keeps the size; the original cls/loc convs used 0 (see ``SEPC.lcconv_padding``).
        dilation: dilation.
        part_deform: make uses at output levels >= ``start_level`` deformable.
        start_level: first output level that is deformable.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, padding: int = 0, dilation: int = 1,
                 part_deform: bool = False, start_level: int = 1) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride, self.padding, self.dilation = _pair(stride), _pair(padding), _pair(dilation)
        self.part_deform, self.start_level = part_deform, start_level
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *self.kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        if part_deform:
            k = self.kernel_size[0] * self.kernel_size[1]
            self.conv_offset = nn.Conv2d(in_channels, 2 * k, self.kernel_size, self.stride,
                                         self.padding, self.dilation, bias=True)
        self.init_weights()

    def init_weights(self) -> None:
        """normal(0, 0.01) weight, zero bias, zero offsets: the original's initialisation."""
        nn.init.normal_(self.weight, 0, 0.01)
        nn.init.zeros_(self.bias)
        if self.part_deform:
            nn.init.zeros_(self.conv_offset.weight)
            nn.init.zeros_(self.conv_offset.bias)

    def is_deformable_at(self, level: int) -> bool:
        return self.part_deform and level >= self.start_level

    def forward(self, level: int, x: Tensor) -> Tensor:
        if not self.is_deformable_at(level):
            return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)
        offset = self.conv_offset(x)
        out = deform_conv2d(x, offset, self.weight, self.stride, self.padding, self.dilation)
        return out + self.bias.view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, part_deform={self.part_deform}")
