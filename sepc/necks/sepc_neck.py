"""The SEPC neck (stacked pyramid convolutions, iBN and the extra cls/loc convs) and the PConv
stack alone as a neck of its own, one output per level (``PConvNeck``)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch import Tensor

from ..ops import SEPCConv
from .ibn import bn_affine, integrated_bn


@torch.no_grad()
def _fold(conv: SEPCConv, scale: torch.Tensor, shift: torch.Tensor | None = None) -> None:
    """conv <- conv * scale (+ shift): the deformable use too, as its offsets read the input."""
    conv.weight.mul_(scale.view(-1, 1, 1, 1))
    conv.bias.mul_(scale)
    if shift is not None:
        conv.bias.add_(shift)


class PConvModule(nn.Module):
    """One pyramid convolution: y_l = conv1(x_l) + conv2_s2(x_{l-1}) + up(conv0(x_{l+1})).

    The three 3x3 convs are each shared across levels; the scale axis is zero-padded (P3 has no
    finer term, the top level no coarser one). The coarser term is bilinearly upsampled to the
    exact size of level l with ``align_corners=True`` (the original's ``F.upsample_bilinear``).
    Each conv gets the OUTPUT level index, which decides whether a SEPC conv is deformable.
    Then iBN (if on) and ReLU.
    """

    def __init__(self, in_channels: int, out_channels: int, ibn: bool = False,
                 part_deform: bool = False, norm_cfg: dict | None = None) -> None:
        super().__init__()
        self.ibn = ibn
        self.Pconv = nn.ModuleList([
            SEPCConv(in_channels, out_channels, 3, stride=1, padding=1, part_deform=part_deform),
            SEPCConv(in_channels, out_channels, 3, stride=1, padding=1, part_deform=part_deform),
            SEPCConv(in_channels, out_channels, 3, stride=2, padding=1, part_deform=part_deform),
        ])
        if ibn:
            self.bn = build_norm_layer(norm_cfg or dict(type="BN"), out_channels)[1]
        self.relu = nn.ReLU()

    def forward(self, x: Sequence[Tensor]) -> list[Tensor]:
        out = []
        last = len(x) - 1
        for level, feat in enumerate(x):
            y = self.Pconv[1](level, feat)
            if level > 0:
                y = y + self.Pconv[2](level, x[level - 1])
            if level < last:
                coarse = self.Pconv[0](level, x[level + 1])
                y = y + F.interpolate(coarse, size=y.shape[-2:], mode="bilinear",
                                      align_corners=True)
            out.append(y)
        if self.ibn:
            out = integrated_bn(out, self.bn)
        return [self.relu(y) for y in out]

    def fuse(self) -> None:
        """Fold eval-mode iBN into the three convs (in place; inference only).

        BN(sum of terms) = sum(scale * term) + shift. Every term is linear in its conv's weight
        and bias (bilinear upsampling with align_corners=True keeps constants), so each conv is
        scaled; the shift goes once per level, into ``Pconv[1]``, the only term every level has
        (P3 has no finer term, the top level no coarser one).
        """
        if not self.ibn:
            return
        scale, shift = bn_affine(self.bn)
        for i, conv in enumerate(self.Pconv):
            _fold(conv, scale, shift if i == 1 else None)
        self.ibn = False
        del self.bn


@MODELS.register_module()
class SEPC(BaseModule):
    """Scale-equalizing pyramid convolution neck (Wang et al., CVPR 2020), after an FPN.

    Returns, per level, the pair (cls_feat, loc_feat) that the SEPC heads take. Constructor
    arguments keep the authors' names so their configs port unchanged; ``lcconv_padding``,
    ``norm_cfg`` and ``start_level`` are new.

    Args:
        in_channels: channels of each input level (FPN outputs; all equal).
        out_channels: width of the PConvs and the cls/loc convs (the original hard-coded 256).
        num_outs: number of pyramid levels (5: P3-P7).
        pconv_deform: scale-equalizing (deformable) PConvs at output levels >= 1.
        lcconv_deform: deformable cls/loc convs at output levels >= 1 (SEPC-lite).
        iBN: integrated BN in each PConv and after the cls/loc convs.
        Pconv_num: number of stacked PConv modules.
        lcconv_padding: padding of the cls/loc convs. 0 reproduces the released models (their
            outputs are (H-2)x(W-2), shifting anchors by one stride: a bug the authors confirmed);
            1 is the corrected behaviour.
        norm_cfg: norm of iBN. The original is per-GPU BN; ``dict(type='SyncBN')`` is an option.
        init_cfg: mmengine init config (the convs initialise themselves as the original did).
    """

    def __init__(self, in_channels: Sequence[int] = (256,) * 5, out_channels: int = 256,
                 num_outs: int = 5, pconv_deform: bool = False, lcconv_deform: bool = False,
                 iBN: bool = False, Pconv_num: int = 4, lcconv_padding: int = 0,
                 norm_cfg: dict | None = None, init_cfg: dict | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        in_channels = _check_levels("SEPC", in_channels, num_outs)
        if lcconv_padding not in (0, 1):
            raise ValueError(f"SEPC: lcconv_padding must be 0 (faithful) or 1 (corrected), "
                             f"got {lcconv_padding}")
        self.in_channels, self.out_channels, self.num_outs = in_channels, out_channels, num_outs
        self.iBN, self.lcconv_padding = iBN, lcconv_padding
        norm_cfg = norm_cfg or dict(type="BN")
        self.Pconvs = _pconv_stack(in_channels[0], out_channels, Pconv_num, iBN, pconv_deform,
                                   norm_cfg)
        width = out_channels if Pconv_num else in_channels[0]
        self.cconv = SEPCConv(width, out_channels, 3, padding=lcconv_padding,
                              part_deform=lcconv_deform)
        self.lconv = SEPCConv(width, out_channels, 3, padding=lcconv_padding,
                              part_deform=lcconv_deform)
        if iBN:
            self.cbn = build_norm_layer(norm_cfg, out_channels)[1]
            self.lbn = build_norm_layer(norm_cfg, out_channels)[1]
        self.relu = nn.ReLU()

    def init_weights(self) -> None:
        super().init_weights()
        for m in self.modules():
            if isinstance(m, SEPCConv):
                m.init_weights()

    def forward(self, inputs: Sequence[Tensor]) -> tuple[tuple[Tensor, Tensor], ...]:
        x = _run_stack("SEPC", self.Pconvs, inputs, self.num_outs)
        cls = [self.cconv(level, f) for level, f in enumerate(x)]
        loc = [self.lconv(level, f) for level, f in enumerate(x)]
        if self.iBN:
            cls = integrated_bn(cls, self.cbn)
            loc = integrated_bn(loc, self.lbn)
        return tuple((self.relu(c), self.relu(r)) for c, r in zip(cls, loc))

    def fuse(self) -> SEPC:
        """Fold every iBN into the conv before it, for inference (in place; returns self).

        Folds the running statistics, i.e. what the eval-mode forward computes: the fused neck
        equals the eval-mode neck (to float rounding) and is refused in training mode.
        """
        if self.training:
            raise RuntimeError("SEPC.fuse(): call model.eval() first (it folds BN running "
                               "statistics, what eval mode uses)")
        for pconv in self.Pconvs:
            pconv.fuse()
        if self.iBN:
            _fold(self.cconv, *bn_affine(self.cbn))
            _fold(self.lconv, *bn_affine(self.lbn))
            self.iBN = False
            del self.cbn, self.lbn
        return self


@MODELS.register_module()
class PConvNeck(BaseModule):
    """Stacked pyramid convolutions after an FPN, one output per level: the paper's PConv as a
    stand-alone module ("also functions well as a stand-alone module in two-stage object
    detectors"), whose output feeds every head that reads the pyramid (a Faster R-CNN's RPN and
    RoI head alike).

    The SEPC neck without its cls/loc convs: their (cls, loc) pair feeds the two branches of a
    one-stage head, which an RPN + RoI head does not have. The same stacked
    :class:`PConvModule` (the same parameter names, ``Pconvs.<i>.Pconv.<j>``), for any number of
    levels from any start: level 0 is the finest input, P2 (stride 4) for Faster R-CNN's FPN, P3
    for RetinaNet's; each output level keeps its input's size. Arguments keep the SEPC neck's
    (the authors') names.

    Args:
        in_channels: channels of each input level (FPN outputs; all equal).
        out_channels: width of the PConvs.
        num_outs: number of pyramid levels (5: P2-P6 for Faster R-CNN's FPN).
        pconv_deform: scale-equalizing (deformable) PConvs at output levels >= 1.
        iBN: integrated BN in each PConv.
        Pconv_num: number of stacked PConv modules (at least one).
        norm_cfg: norm of iBN (per-GPU BN by default).
        init_cfg: mmengine init config (the convs initialise themselves as the original did).
    """

    def __init__(self, in_channels: Sequence[int] = (256,) * 5, out_channels: int = 256,
                 num_outs: int = 5, pconv_deform: bool = False, iBN: bool = False,
                 Pconv_num: int = 4, norm_cfg: dict | None = None,
                 init_cfg: dict | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        in_channels = _check_levels("PConvNeck", in_channels, num_outs)
        if Pconv_num < 1:
            raise ValueError(f"PConvNeck: Pconv_num must be at least 1, got {Pconv_num}")
        self.in_channels, self.out_channels, self.num_outs = in_channels, out_channels, num_outs
        self.iBN = iBN
        self.Pconvs = _pconv_stack(in_channels[0], out_channels, Pconv_num, iBN, pconv_deform,
                                   norm_cfg or dict(type="BN"))

    def init_weights(self) -> None:
        super().init_weights()
        for m in self.modules():
            if isinstance(m, SEPCConv):
                m.init_weights()

    def forward(self, inputs: Sequence[Tensor]) -> tuple[Tensor, ...]:
        return tuple(_run_stack("PConvNeck", self.Pconvs, inputs, self.num_outs))

    def fuse(self) -> PConvNeck:
        """Fold every iBN into the PConv convs, for inference (in place, eval mode; returns
        self): the fused neck equals the eval-mode neck to float rounding."""
        if self.training:
            raise RuntimeError("PConvNeck.fuse(): call model.eval() first (it folds BN running "
                               "statistics, what eval mode uses)")
        for pconv in self.Pconvs:
            pconv.fuse()
        self.iBN = False
        return self


def _check_levels(name: str, in_channels: Sequence[int], num_outs: int) -> list[int]:
    """``in_channels`` as a list, refused unless one width per level, the same for all."""
    in_channels = list(in_channels)
    if len(in_channels) != num_outs:
        raise ValueError(f"{name}: {len(in_channels)} in_channels for num_outs={num_outs}")
    if len(set(in_channels)) != 1:
        raise ValueError(f"{name}: all input levels must have the same width, got {in_channels}")
    return in_channels


def _pconv_stack(in_width: int, out_channels: int, n: int, ibn: bool, deform: bool,
                 norm_cfg: dict) -> nn.ModuleList:
    """``n`` stacked PConv modules, the first reading ``in_width`` channels."""
    return nn.ModuleList(
        PConvModule(in_width if i == 0 else out_channels, out_channels, ibn, deform, norm_cfg)
        for i in range(n))


def _run_stack(name: str, pconvs: nn.ModuleList, inputs: Sequence[Tensor],
               num_outs: int) -> list[Tensor]:
    """The pyramid through every PConv module, refused unless it has ``num_outs`` levels."""
    if len(inputs) != num_outs:
        raise ValueError(f"{name} expects {num_outs} levels, got {len(inputs)}")
    x = list(inputs)
    for pconv in pconvs:
        x = pconv(x)
    return x


def fuse_ibn(model: nn.Module) -> nn.Module:
    """``fuse()`` on every SEPC and PConvNeck neck of ``model`` (in eval mode); returns it."""
    for m in model.modules():
        if isinstance(m, (SEPC, PConvNeck)):
            m.fuse()
    return model
