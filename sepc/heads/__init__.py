from .sepc_heads import SEPCFreeAnchorRetinaHead, SEPCFSAFHead, SEPCRetinaHead, split_pair

__all__ = ["SEPCRetinaHead", "SEPCFSAFHead", "SEPCFreeAnchorRetinaHead", "split_pair"]
