"""Operators of SEPC: the scale-equalizing conv and the deformable conv behind it."""
from .deform_conv import deform_conv2d, deform_conv2d_torch
from .sepc_conv import SEPCConv

__all__ = ["SEPCConv", "deform_conv2d", "deform_conv2d_torch"]
