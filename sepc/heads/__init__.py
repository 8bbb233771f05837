from .sepc_heads import (
    SEPCATSSHead,
    SEPCFreeAnchorRetinaHead,
    SEPCFSAFHead,
    SEPCRetinaHead,
    split_pair,
)

__all__ = ["SEPCRetinaHead", "SEPCFSAFHead", "SEPCFreeAnchorRetinaHead", "SEPCATSSHead",
           "split_pair"]
