"""The rule that decides whether a difference between two cells may be claimed.

Why: a detector's AP moves for two reasons, the sample of evaluation images and the training's
own noise (seed, data order, floating point on another machine). A paired image bootstrap of one
pair of runs covers the first only, so on its own it claims differences that a rerun with
another seed does not repeat. Every interval here covers both:

    Var(delta) = Var_train + Var_images

- ``Var_images``: the paired image bootstrap of the difference of the seed means (every run
  of both cells on the same resample, :func:`reports.stats.paired_bootstrap`); its variance is
  used, with infinite degrees of freedom.
- ``Var_train``, by the first rule that applies:

  1. ``seeds``: both cells have two or more seeds: s_v^2/k_v + s_b^2/k_b from their own
     seed standard deviations (Welch);
  2. ``row``: one cell has two or more seeds: its seed standard deviation stands for both
     cells (the assumption: the variant trains as noisily as its baseline), unless rule 3's
     spread was measured with at least as many degrees of freedom;
  3. ``profile``: the profile states a seed spread measured for the recipe:
     sd^2 (1/k_v + 1/k_b), so that extra seeds of one cell (the noisy baselines) still narrow
     the interval (the assumption: every cell of the profile is as noisy as the pooled cells
     it was measured on);
  4. otherwise nothing is claimed: one seed per cell cannot separate a variant from training
     noise.

The interval is delta +- t * SE with SE = sqrt(Var_train + Var_images) and t taken at the
Welch-Satterthwaite degrees of freedom of the training terms alone (conservative: the image term
buys none). A
difference is claimed only where the interval excludes zero. Numbers in, numbers out: the
callers (reports.summary, reports.compare) read the store.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: The rules, in the order they are tried (module docstring).
RULES: tuple[str, ...] = ("seeds", "row", "profile")


@dataclass(frozen=True)
class Spread:
    """A seed standard deviation of one cell's metric, and the degrees of freedom it has
    (``math.inf`` for a value taken from elsewhere and treated as known)."""

    sd: float
    dof: float


@dataclass(frozen=True)
class Interval:
    """A difference (variant - baseline) with the interval the rule gives, or why there is none."""

    point: float
    lo: float = math.nan
    hi: float = math.nan
    rule: str | None = None  # one of RULES; None: no interval (``why``)
    se_train: float = math.nan
    se_images: float = math.nan
    dof: float = math.nan
    why: str | None = None

    @property
    def claimed(self) -> bool:
        return self.rule is not None and (self.lo > 0 or self.hi < 0)


def _sd(x: np.ndarray) -> float:
    return float(x.std(ddof=1)) if len(x) > 1 else math.nan


def train_terms(variant: Sequence[float], baseline: Sequence[float],
                spread: Spread | None) -> tuple[str | None, list[tuple[float, float]]]:
    """The rule that applies and its variance terms (variance, dof) of the training's noise."""
    v, b = np.asarray(variant, float), np.asarray(baseline, float)
    kv, kb = len(v), len(b)
    if kv >= 2 and kb >= 2:
        return "seeds", [(_sd(v) ** 2 / kv, kv - 1), (_sd(b) ** 2 / kb, kb - 1)]
    if kv >= 2 or kb >= 2:
        x = v if kv >= 2 else b
        own = len(x) - 1
        # A spread measured for the profile's recipe with at least as many degrees of freedom
        # estimates the noise better than the repeated cell's own few seeds; a value taken from
        # elsewhere (infinite dof: stated, not measured) never overrides a measurement.
        if spread is None or not math.isfinite(spread.dof) or spread.dof < own:
            return "row", [(_sd(x) ** 2 * (1 / kv + 1 / kb), own)]
    if spread is not None:
        return "profile", [(spread.sd ** 2 * (1 / kv + 1 / kb), spread.dof)]
    return None, []


def difference_interval(variant: Sequence[float], baseline: Sequence[float],
                        image_samples: Sequence[float] | None, spread: Spread | None = None,
                        level: float = 0.95) -> Interval:
    """The interval of mean(variant) - mean(baseline) over both noise sources (module docstring).

    ``variant``/``baseline``: the metric of each seed of the two cells; ``image_samples``: the
    paired image bootstrap of that difference (None or empty: no image term, said in ``why``
    only if nothing else is missing); ``spread``: the profile's measured seed spread, for
    rule 3.
    """
    if not 0 < level < 1:
        raise ValueError("level must be in (0, 1)")
    v, b = np.asarray(variant, float), np.asarray(baseline, float)
    if not len(v) or not len(b) or not np.isfinite(v).all() or not np.isfinite(b).all():
        raise ValueError("both cells need a finite metric for every seed")
    point = float(v.mean() - b.mean())
    rule, terms = train_terms(v, b, spread)
    if rule is None:
        return Interval(point, why="one seed per cell cannot separate the variants from "
                                   "training noise, and no seed spread is measured for this "
                                   "profile and recipe")
    img = np.asarray(image_samples if image_samples is not None else [], float)
    img = img[np.isfinite(img)]
    if len(img) < 2:
        return Interval(point, rule=None, why="no image bootstrap of the difference (the "
                                              "cells' detections or records are missing)")
    var_img = float(img.var(ddof=1))
    var_train = sum(t for t, _ in terms)
    se = math.sqrt(var_train + var_img)
    if se == 0:
        return Interval(point, point, point, rule, 0.0, 0.0, math.inf)
    # Welch-Satterthwaite over the training terms alone: with few seeds their variance is the
    # uncertain part, and the image term's variance must not buy degrees of freedom (with it,
    # two seeds of a row claimed 9% of pure-noise differences at the 95% level).
    denom = sum(t ** 2 / d for t, d in terms if t > 0 and math.isfinite(d))
    dof = var_train ** 2 / denom if denom > 0 else math.inf
    from scipy import stats as sst

    half = float(sst.t.ppf((1 + level) / 2, dof)) * se
    return Interval(point, point - half, point + half, rule, math.sqrt(var_train),
                    math.sqrt(var_img), dof)


def pooled_spread(groups: Sequence[Sequence[float]]) -> Spread:
    """The pooled within-cell seed standard deviation of cells run with several seeds each:
    sqrt(sum (k_c - 1) s_c^2 / sum (k_c - 1)), with sum (k_c - 1) degrees of freedom. Cells with
    one seed add nothing."""
    num, dof = 0.0, 0
    for g in groups:
        x = np.asarray(g, float)
        x = x[np.isfinite(x)]
        if len(x) >= 2:
            num += float(((x - x.mean()) ** 2).sum())
            dof += len(x) - 1
    if dof == 0:
        raise ValueError("no cell has two or more seeds: nothing to pool")
    return Spread(math.sqrt(num / dof), float(dof))


def detectable(spread: Spread, se_images: float = 0.0, seeds: int = 1, level: float = 0.95,
               power: float = 0.8) -> float:
    """The smallest true difference that ``seeds`` seeds per cell resolve with probability
    ``power`` under rule 3: (t_{level} + z_{power}) * SE. For a cluster user's plan: which
    published differences a one-seed table can confirm."""
    from scipy import stats as sst

    var_train = spread.sd ** 2 * 2 / seeds
    se = math.sqrt(var_train + se_images ** 2)
    dof = spread.dof
    return float((sst.t.ppf((1 + level) / 2, dof) + sst.norm.ppf(power)) * se)
