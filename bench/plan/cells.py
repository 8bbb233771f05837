"""Cells of the matrix: a detector x variant x seed under a profile, and the names that select
them. The detectors and variants themselves are data: ``experiments/matrix.py``."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from experiments.matrix import DETECTORS, VARIANTS, Detector, Variant
from reports.schema import SOURCES, cell_key, parse_cell_key


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
        det = DETECTORS[self.detector]
        if not det.takes(self.variant):
            raise MatrixError(f"{self.detector} has no {self.variant} cell: that variant does not "
                              f"apply to it (its variants: {', '.join(det.variants or ())})")
        if self.source not in SOURCES:
            raise ValueError(f"unknown source {self.source!r} ({', '.join(SOURCES)})")

    @property
    def key(self) -> str:
        """Folder name of the cell in the result store."""
        return cell_key(self.detector, self.variant, self.seed, self.source)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_key(cls, profile: str, key: str) -> Cell:
        """The cell a store folder name (:attr:`key`) names."""
        try:
            return cls(profile, **parse_cell_key(key))
        except ValueError as exc:
            raise MatrixError(str(exc)) from None


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
    """'a,b' -> ['a', 'b'] checked against ``known``; None -> the paper's (the default
    selection); 'all' -> all of them."""
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
    """'3' -> [0, 1, 2] (that many seeds); '0,7,42' -> those seeds; '7,' -> seed 7 alone."""
    if text is None or text.strip() == "":
        return [0]
    try:
        n = int(text) if "," not in text else None
        seeds = [int(s) for s in text.split(",") if s.strip()] if n is None else list(range(n))
    except ValueError:
        raise MatrixError(f"--seeds {text!r}: give a count (3) or a list (0,1,2)") from None
    if not seeds:
        raise MatrixError(f"--seeds {text}: need at least one seed (one seed alone: '7,')")
    if len(set(seeds)) != len(seeds):
        raise MatrixError(f"--seeds {text!r}: repeated seed")
    return seeds


def row_variants(detector: str, variants: list[str] | None = None) -> list[str]:
    """The variants of ``detector``'s row in a selection: ``variants`` (None: the paper's, then
    the row's own extras) without those that do not apply to it (``Detector.variants``)."""
    det = DETECTORS[detector]
    return [v for v in variants or [*default_names(VARIANTS), *det.extra_variants]
            if det.takes(v)]


def baseline_seed_list(seeds: list[int], per_seed: int = 1) -> list[int]:
    """The seeds a baseline trains: ``seeds`` and, for ``per_seed`` > 1, the next integers after
    them, ``per_seed`` times as many in all ([0] -> [0, 1]; [1] -> [1, 2])."""
    if per_seed < 1:
        raise MatrixError(f"baseline seeds per seed must be >= 1, not {per_seed}")
    first = max(seeds) + 1
    return [*seeds, *range(first, first + (per_seed - 1) * len(seeds))]


def cells(profile: str, detectors: list[str] | None = None, variants: list[str] | None = None,
          seeds: list[int] | None = None, baseline_seeds: int = 1) -> list[Cell]:
    """All cells of a profile in table order (detector rows, variant columns, then seeds).
    ``variants=None``: each detector's default row (the paper's columns plus its extras); a
    variant that does not apply to a row is left out of it, and a selection left empty is
    refused. ``baseline_seeds``: the baselines (the variant without SEPC, whose stock heads are
    the noisiest cells) train that many seeds for each seed named (:func:`baseline_seed_list`)."""
    detectors = detectors or default_names(DETECTORS)
    seeds = seeds or [0]
    reference = baseline_seed_list(seeds, baseline_seeds)
    chosen = [Cell(profile, d, v, s) for d in detectors for v in row_variants(d, variants)
              for s in (seeds if VARIANTS[v].sepc else reference)]
    if not chosen:
        takes = "; ".join(f"{d} takes {', '.join(DETECTORS[d].variants or VARIANTS)}"
                          for d in detectors)
        raise MatrixError(f"no cell selected: --variants {','.join(variants or ())} does not "
                          f"apply to --detectors {','.join(detectors)} ({takes})")
    return chosen


__all__ = ["Cell", "DETECTORS", "VARIANTS", "Detector", "Variant", "MatrixError",
           "baseline_seed_list", "cells", "check_names", "default_names", "list_help",
           "parse_list", "parse_seeds", "row_variants"]
