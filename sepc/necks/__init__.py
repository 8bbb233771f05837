from .ibn import integrated_bn
from .sepc_neck import SEPC, PConvModule, fuse_ibn

__all__ = ["SEPC", "PConvModule", "fuse_ibn", "integrated_bn"]
