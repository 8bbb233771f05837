"""The ablation matrix as data: the detectors (rows) and variants (columns) of the table.

The one definition of every detector and variant name, label and table order. The harness
(``bench``) builds configs from it, the reports label and order the table by it; it imports
nothing, so both may read it. A detector's config is ``_base_/<name>.py``; the SEPC variants
put the SEPC neck after its FPN and swap its head for ``Detector.sepc_head`` (a subclass in
``sepc/heads``), or, for a row without one (a two-stage detector), put the stand-alone PConv
neck there (``PConvNeck``: one output per level) and keep the row's own heads.

``paper=True`` marks the table the paper published: the default selection of every command.
Adding a detector or a variant is an entry here plus its files (docs/adding-a-detector.md).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Detector:
    name: str
    label: str
    #: The registered SEPC head (sepc/heads) the SEPC variants use. None: the row keeps its own
    #: heads and its SEPC variants add the stand-alone PConv neck, one output per level, which
    #: every head reading the pyramid takes (a two-stage detector's RPN and RoI head alike).
    sepc_head: str | None
    paper: bool = True  # one of the paper's rows (the default selection)
    #: Variants beyond the paper's that belong to this row by default (its published numbers
    #: use them); ``--variants`` still selects exactly what it names.
    extra_variants: tuple[str, ...] = ()
    #: The variants that apply to this row (None: all). A selection leaves the others out of
    #: this row (the table reads n/a there); a cell of one of them is refused.
    variants: tuple[str, ...] | None = None

    def takes(self, variant: str) -> bool:
        """Whether ``variant`` applies to this row."""
        return self.variants is None or variant in self.variants


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
    # the paper's two-stage claim, not in its table: PConv as a stand-alone neck module in
    # Faster R-CNN R-50-FPN (P2-P6), feeding the RPN and the RoI head; iBN and the SEPC parts
    # (deformable convs, the cls/loc convs of a one-stage head's two branches) do not apply
    Detector("faster_rcnn", "Faster R-CNN", None, paper=False, variants=("baseline", "pconv")),
    # not in the paper: FCOS R-50-FPN 1x, anchor-free (jshilong/SEPC#23), every variant
    Detector("fcos", "FCOS", "SEPCFCOSHead", paper=False),
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


def _check() -> None:
    """Every name a row lists is a variant; a row without an SEPC head lists the variants it
    takes, none with the cls/loc convs (only an SEPC head reads the SEPC neck's pairs)."""
    for d in DETECTORS.values():
        unknown = [v for v in (*d.extra_variants, *(d.variants or ())) if v not in VARIANTS]
        if unknown:
            raise ValueError(f"matrix: {d.name} names unknown variants {unknown}")
        if d.sepc_head is None and (d.variants is None or any(
                VARIANTS[v].lcconv_deform for v in d.variants)):
            raise ValueError(f"matrix: {d.name} has no SEPC head: it must list its variants, "
                             "none with deformable cls/loc convs")


_check()
