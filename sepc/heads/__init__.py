from .sepc_heads import (
    SEPCATSSHead,
    SEPCFCOSHead,
    SEPCFreeAnchorRetinaHead,
    SEPCFSAFHead,
    SEPCRetinaHead,
    split_pair,
)

__all__ = ["SEPCRetinaHead", "SEPCFSAFHead", "SEPCFreeAnchorRetinaHead", "SEPCATSSHead",
           "SEPCFCOSHead", "split_pair"]
