from .ibn import integrated_bn
from .sepc_neck import SEPC, PConvModule

__all__ = ["SEPC", "PConvModule", "integrated_bn"]
