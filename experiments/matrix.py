"""The ablation matrix as data: the detectors (rows) and variants (columns) of the table.

The one definition of every detector and variant name, label and table order. The harness
(``bench``) builds configs from it, the reports label and order the table by it; it imports
nothing, so both may read it. A detector's config is ``_base_/<name>.py``; the SEPC variants
swap its head for ``Detector.sepc_head`` (a subclass in ``sepc/heads``).

``paper=True`` marks the table the paper published: the default selection of every command.
Adding a detector or a variant is an entry here plus its files (docs/adding-a-detector.md).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Detector:
    name: str
    label: str
    sepc_head: str  # the registered SEPC head (sepc/heads) the SEPC variants use
    paper: bool = True  # one of the paper's rows (the default selection)
    #: Variants beyond the paper's that belong to this row by default (its published numbers
    #: use them); ``--variants`` still selects exactly what it names.
    extra_variants: tuple[str, ...] = ()


@dataclass(frozen=True)
class Variant:
    """One column: which parts of SEPC the neck has (the paper's ablation)."""

    name: str
    label: str
    sepc: bool  # SEPC neck after the FPN (else the stock head tower)
    ibn: bool = False
    pconv_deform: bool = False
    lcconv_deform: bool = False
    imgs_per_gpu: int = 2  # the paper's: 4 with iBN (BN statistics need >= 4 images)
    paper: bool = True  # one of the paper's columns (the default selection)

    def neck_args(self) -> dict:
        return dict(iBN=self.ibn, pconv_deform=self.pconv_deform,
                    lcconv_deform=self.lcconv_deform)


#: Detectors in the paper's row order, then the others (``all`` selects them too).
DETECTORS: dict[str, Detector] = {d.name: d for d in [
    Detector("retinanet", "RetinaNet", "SEPCRetinaHead"),
    Detector("freeanchor", "FreeAnchor", "SEPCFreeAnchorRetinaHead"),
    Detector("fsaf", "FSAF", "SEPCFSAFHead"),
    # not in the paper: ATSS (R-50-FPN 1x), which UniverseNet ported SEPC to
    Detector("atss", "ATSS", "SEPCATSSHead", paper=False, extra_variants=("sepc_noibn",)),
]}

#: Variants in the paper's column order, then the others.
VARIANTS: dict[str, Variant] = {v.name: v for v in [
    Variant("baseline", "Baseline", sepc=False),
    Variant("pconv", "PConv", sepc=True),
    Variant("ibn", "iBN+PConv", sepc=True, ibn=True, imgs_per_gpu=4),
    Variant("sepc_lite", "SEPC-lite", sepc=True, ibn=True, lcconv_deform=True, imgs_per_gpu=4),
    Variant("sepc", "SEPC", sepc=True, ibn=True, pconv_deform=True, lcconv_deform=True,
            imgs_per_gpu=4),
    # not in the paper: SEPC without iBN, UniverseNet's choice for ATSS (2 images per GPU)
    Variant("sepc_noibn", "SEPC w/o iBN", sepc=True, pconv_deform=True, lcconv_deform=True,
            paper=False),
]}
