"""Which profiles the published numbers (experiments/published.py) are held against, and what
each such profile's rows are."""

from __future__ import annotations

from experiments.published import (LATENCY_NOTE, NOT_PRINTED, PUBLISHED_AP,  # noqa: F401
                                   PUBLISHED_LATENCY_PCT)

#: Profiles whose numbers are comparable with the published table.
PUBLISHED_PROFILES: frozenset[str] = frozenset({"paper", "paper-modern"})

#: What a profile's rows are, for a reader holding them against the published ones.
PROFILE_NOTES: dict[str, str] = {
    "paper": "profile paper: the authors' recipe cell for cell (mmdet 1.1 box conventions, their "
             "FSAF, cls/loc padding 0); remaining differences: docs/differences-from-the-original.md",
    "paper-modern": "profile paper-modern: the same recipe with mmdet 3.x's box conventions, its "
                    "FSAF and the corrected cls/loc padding 1; the published numbers are the "
                    "original's, so ours − pub. includes what the modern conventions change",
}
