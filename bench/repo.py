"""Where the checkout is: the synthetic data (``data/``), the default result stores
(``results/<profile>``) and the sources the warm start's key hashes live under it."""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def default_results(profile: str) -> Path:
    """The result store of a profile when no ``--results`` is given."""
    return REPO / "results" / profile
