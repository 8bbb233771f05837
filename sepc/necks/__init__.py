from .ibn import integrated_bn
from .sepc_neck import SEPC, PConvModule, PConvNeck, fuse_ibn

__all__ = ["SEPC", "PConvModule", "PConvNeck", "fuse_ibn", "integrated_bn"]
