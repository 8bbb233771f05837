"""Seed-level statistics: with several seeds per cell, the Welch interval of the difference of
seed means (variant minus baseline)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def seed_deltas(
    df: Any,
    metric: str = "AP",
    *,
    baseline: str = "baseline",
    level: float = 0.95,
    keys: Sequence[str] | None = None,
    variant_col: str = "variant",
) -> Any:
    """Per (detector, variant): seeds, mean, std and a Welch t-interval of mean - baseline mean.

    Why: with several seeds per cell, the difference of seed means with its Welch interval
    (unequal variances, Satterthwaite df) is the table's honest delta. Rows with
    status != "done" or a missing metric are dropped. `keys` (default: detector, and
    source if present) say which rows share a baseline. delta/CI are NaN with < 2 seeds
    on either side; with zero spread on both sides the interval collapses to the delta.
    """
    import pandas as pd
    from scipy import stats as sst

    d = df.copy()
    if "status" in d.columns:
        d = d[d["status"] == "done"]
    d = d[d[metric].notna()]
    if keys is None:
        keys = [k for k in ("detector", "source") if k in d.columns]
    keys = list(keys)
    cols = keys + [variant_col, "n", "mean", "std", "delta", "delta_lo", "delta_hi",
                   "df", "p_value", "excludes_zero"]
    rows = []
    for gkey, g in d.groupby(keys, dropna=False, sort=True) if keys else [((), d)]:
        gkey = gkey if isinstance(gkey, tuple) else (gkey,)
        base = g.loc[g[variant_col] == baseline, metric].to_numpy(float)
        for var, gv in g.groupby(variant_col, sort=False):
            x = gv[metric].to_numpy(float)
            n, mean = len(x), float(x.mean())
            std = float(x.std(ddof=1)) if n > 1 else math.nan
            delta = lo = hi = dof = pval = math.nan
            if len(base):
                delta = mean - float(base.mean())
            if var != baseline and n > 1 and len(base) > 1:
                va, vb = x.var(ddof=1) / n, base.var(ddof=1) / len(base)
                se = math.sqrt(va + vb)
                if se > 0:
                    dof = (va + vb) ** 2 / (va**2 / (n - 1) + vb**2 / (len(base) - 1))
                    half = float(sst.t.ppf((1 + level) / 2, dof)) * se
                    lo, hi = delta - half, delta + half
                    pval = float(2 * sst.t.sf(abs(delta) / se, dof))
                else:
                    lo = hi = delta
                    pval = 0.0 if delta != 0 else 1.0
            rows.append(dict(zip(keys, gkey), **{
                variant_col: var, "n": n, "mean": mean, "std": std, "delta": delta,
                "delta_lo": lo, "delta_hi": hi, "df": dof, "p_value": pval,
                "excludes_zero": bool(lo > 0 or hi < 0)}))
    return pd.DataFrame(rows, columns=cols)
