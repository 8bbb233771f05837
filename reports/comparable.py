"""Which profiles the published numbers (experiments/published.py) are held against, and what
each such profile's rows are."""

from __future__ import annotations

from experiments.published import (  # noqa: F401
    LATENCY_NOTE,
    NOT_PRINTED,
    PUBLISHED_AP,
    PUBLISHED_AP_GAIN,
)

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


def confirmable(profile: str, seeds: int = 1, se_images: float = 0.0,
                max_seeds: int = 10) -> list[dict]:
    """Which published AP differences a table of ``seeds`` seeds per cell of ``profile`` can be
    expected to confirm under the claim rule (reports/stats/claims.py), from the profile's
    stated seed spread (experiments/noise.py): one row per published variant, against the
    baseline and against the previous column of the paper's table (the ablation's own step).

    ``detectable``: the smallest true difference resolved with 80% power at the 95% level;
    ``se_images`` adds the evaluation images' sampling (0: training noise only, so the bound is
    optimistic). Empty when the profile states no spread or has no published table."""
    from experiments.matrix import VARIANTS
    from experiments.noise import seed_spread
    from reports.stats.claims import Spread, detectable

    entry = seed_spread(profile, None)
    if profile not in PUBLISHED_PROFILES or entry is None:
        return []
    spread = Spread(entry.sd["AP"], entry.dof)
    need = {k: detectable(spread, se_images, k) for k in range(1, max_seeds + 1)}
    rows = []
    order = [v for v, spec in VARIANTS.items() if spec.paper]
    for (det, var), ap in PUBLISHED_AP.items():
        if var == "baseline" or var not in order or (det, "baseline") not in PUBLISHED_AP:
            continue
        prev = order[order.index(var) - 1]
        for against in dict.fromkeys(("baseline", prev)):
            if (det, against) not in PUBLISHED_AP:
                continue
            delta = ap - PUBLISHED_AP[(det, against)]
            k = next((k for k, d in need.items() if d <= abs(delta)), None)
            rows.append(dict(detector=det, variant=var, against=against, published_delta=delta,
                             detectable=need[seeds], confirmable=abs(delta) >= need[seeds],
                             seeds_needed=k))
    return rows


def confirmable_lines(profile: str) -> list[str]:
    """:func:`confirmable` for the terminal: one line per detector, then what it rests on."""
    from experiments.noise import seed_spread
    from reports.store import DETECTOR_NAMES, VARIANT_NAMES

    rows = confirmable(profile)
    if not rows:
        return []
    out = [f"What one seed per cell can confirm of the published table (80% power at 95%, "
           f"detectable with one seed: {rows[0]['detectable']:.1f} AP, from the "
           f"{seed_spread(profile, None).describe()}; the evaluation images add to it):"]
    for det in dict.fromkeys(r["detector"] for r in rows):
        parts = []
        for r in (r for r in rows if r["detector"] == det):
            what = (VARIANT_NAMES[r["variant"]] if r["against"] == "baseline"
                    else f"{VARIANT_NAMES[r['variant']]} over {VARIANT_NAMES[r['against']]}")
            k = r["seeds_needed"]
            need = "1 seed" if k == 1 else (f"{k} seeds" if k else "more than 10 seeds")
            parts.append(f"{what} {r['published_delta']:+.1f} ({need})")
        out.append(f"  {DETECTOR_NAMES[det]}: " + "; ".join(parts))
    return out
