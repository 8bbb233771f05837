"""The ablation matrix as data: detectors x variants x seeds, and the cell that names one run."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

@dataclass(frozen=True)
class Detector:
    """One row of the table: a detector (its config is experiments/_base_/<name>.py) and the
    SEPC head (sepc/heads) that replaces its head on the SEPC neck."""

    name: str
    head: str
    paper: bool = True  # a row of the paper's table: in the default selection


#: Detectors in the paper's row order, then the others ("all" selects them too).
DETECTORS: dict[str, Detector] = {d.name: d for d in [
    Detector("retinanet", "SEPCRetinaHead"),
    Detector("freeanchor", "SEPCFreeAnchorRetinaHead"),
    Detector("fsaf", "SEPCFSAFHead"),
    # not in the paper: ATSS (R-50-FPN 1x), which UniverseNet ported SEPC to (docs/atss.md)
    Detector("atss", "SEPCATSSHead", paper=False),
]}


@dataclass(frozen=True)
class Variant:
    """One column of the paper's table (sepc-spec.md, "The variants of the ablation"), or one
    beyond it (``paper=False``)."""

    name: str
    label: str
    sepc: bool  # SEPC neck after the FPN (else the stock head tower)
    ibn: bool = False
    pconv_deform: bool = False
    lcconv_deform: bool = False
    imgs_per_gpu: int = 2  # the paper's: 4 with iBN (BN statistics need >= 4 images)
    paper: bool = True  # a column of the paper's table: in the default selection

    def neck_args(self) -> dict:
        return dict(iBN=self.ibn, pconv_deform=self.pconv_deform,
                    lcconv_deform=self.lcconv_deform)


VARIANTS: dict[str, Variant] = {v.name: v for v in [
    Variant("baseline", "Baseline", sepc=False),
    Variant("pconv", "PConv", sepc=True),
    Variant("ibn", "iBN+PConv", sepc=True, ibn=True, imgs_per_gpu=4),
    Variant("sepc_lite", "SEPC-lite", sepc=True, ibn=True, lcconv_deform=True, imgs_per_gpu=4),
    Variant("sepc", "SEPC", sepc=True, ibn=True, pconv_deform=True, lcconv_deform=True,
            imgs_per_gpu=4),
    # SEPC without iBN: UniverseNet's choice for ATSS (2 images per GPU, no BN statistics)
    Variant("sepc_noibn", "SEPC w/o iBN", sepc=True, pconv_deform=True, lcconv_deform=True,
            paper=False),
]}


@dataclass(frozen=True, order=True)
class Cell:
    """One run of the matrix: a detector x variant x seed under a profile."""

    profile: str
    detector: str
    variant: str
    seed: int = 0
    source: str = "trained"  # or "released": an authors' checkpoint evaluated, no training

    def __post_init__(self) -> None:
        check_names([self.detector], DETECTORS, "detector")
        check_names([self.variant], VARIANTS, "variant")
        if self.source not in ("trained", "released"):
            raise ValueError(f"unknown source {self.source!r} (trained, released)")

    @property
    def key(self) -> str:
        """Folder name of the cell in the result store."""
        suffix = "" if self.source == "trained" else f"__{self.source}"
        return f"{self.detector}__{self.variant}__s{self.seed}{suffix}"

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_key(cls, profile: str, key: str) -> "Cell":
        """The cell a store folder name (:attr:`key`) names."""
        parts = key.split("__")
        source = parts.pop() if len(parts) == 4 else "trained"
        if len(parts) != 3 or not parts[2].startswith("s") or not parts[2][1:].isdigit():
            raise MatrixError(f"not a cell key: {key!r} (detector__variant__s<seed>[__source])")
        return cls(profile, parts[0], parts[1], int(parts[2][1:]), source)


class MatrixError(ValueError):
    """Bad input naming the matrix (an unknown detector, variant, profile or seed list)."""


def check_names(names: list[str], known: dict, what: str) -> list[str]:
    unknown = [n for n in names if n not in known]
    if unknown:
        raise MatrixError(f"unknown {what} {', '.join(map(repr, unknown))} "
                          f"(known: {', '.join(known)})")
    return names


def default_names(known: dict) -> list[str]:
    """The default selection of a table (DETECTORS, VARIANTS, ...): the paper's entries, i.e.
    all but those flagged ``paper=False``."""
    return [k for k, v in known.items() if getattr(v, "paper", True)]


def parse_list(text: str | None, known: dict, what: str) -> list[str]:
    """'a,b' -> ['a', 'b'] checked against ``known``; 'all' -> all of them; None or '' -> the
    default selection (:func:`default_names`)."""
    if text is None or text.strip() == "":
        return default_names(known)
    if text.strip() == "all":
        return list(known)
    return check_names([t.strip() for t in text.split(",") if t.strip()], known, what)


def list_help(known: dict) -> str:
    """--detectors/--variants help: the names, and what the default selects."""
    extra = [k for k in known if k not in default_names(known)]
    return (f"comma list of {', '.join(known)}, or all (default: "
            f"{', '.join(default_names(known)) if extra else 'all'})")


def parse_seeds(text: str | None) -> list[int]:
    """'3' -> [0, 1, 2] (that many seeds); '0,7,42' -> those seeds."""
    if text is None or text.strip() == "":
        return [0]
    try:
        if "," not in text:
            n = int(text)
            if n < 1:
                raise MatrixError(f"--seeds {text}: need at least one seed")
            return list(range(n))
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise MatrixError(f"--seeds {text!r}: give a count (3) or a list (0,1,2)") from None
    if len(set(seeds)) != len(seeds):
        raise MatrixError(f"--seeds {text!r}: repeated seed")
    return seeds


def cells(profile: str, detectors: list[str] | None = None, variants: list[str] | None = None,
          seeds: list[int] | None = None) -> list[Cell]:
    """Cells of a profile in table order (detector rows, variant columns, then seeds); by
    default the paper's table."""
    return [Cell(profile, d, v, s) for d in (detectors or default_names(DETECTORS))
            for v in (variants or default_names(VARIANTS)) for s in (seeds or [0])]
