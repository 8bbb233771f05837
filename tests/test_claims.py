"""The claim rule (reports/stats/claims.py, docs/statistics.md), on cases whose answer is known by
construction: differences that are only seed noise of a known size must not be claimed (at the
rate the level allows), real ones must; the image-only interval the summary used before fails
the same check. Then two result stores that differ only by training noise, through the summary
and `bench compare`, which must decide alike."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_bootstrap import make_dets, make_gt

from experiments.noise import SeedSpread
from reports.stats.claims import Spread, detectable, difference_interval, pooled_spread

REPO = Path(__file__).resolve().parent.parent
SIGMA_TRAIN, SIGMA_IMG = 1.0, 0.5  # AP points: seed noise of one run, image-sampling noise


def _experiment(rng, delta: float, kv: int, kb: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One sweep: seeds of both cells (shared image-set error), and the image bootstrap of the
    difference (its spread is the image-sampling noise)."""
    e_img = rng.normal(0, SIGMA_IMG)  # the evaluation set drawn once: it moves the difference
    v = 30 + delta + e_img + rng.normal(0, SIGMA_TRAIN, kv)
    b = 30 + rng.normal(0, SIGMA_TRAIN, kb)
    return v, b, rng.normal(0, SIGMA_IMG, 300)


def _measured_spread(rng, dof: int = 30) -> Spread:
    """A profile spread as `bench spread` would measure it: a noisy estimate of SIGMA_TRAIN."""
    return Spread(SIGMA_TRAIN * math.sqrt(rng.chisquare(dof) / dof), dof)


def _claim_rate(delta: float, kv: int, kb: int, n: int = 2000, seed: int = 0,
                with_spread: bool = True) -> tuple[float, set[str]]:
    rng = np.random.default_rng(seed)
    claims, rules = 0, set()
    for _ in range(n):
        v, b, img = _experiment(rng, delta, kv, kb)
        iv = difference_interval(v, b, img, _measured_spread(rng) if with_spread else None)
        rules.add(iv.rule)
        claims += iv.claimed and np.sign(iv.point) == np.sign(delta or 1)
    return claims / n, rules


#: The spread a case gets: one measured for the profile (30 dof), one stated elsewhere and taken
#: as known (infinite dof), or none.
SPREADS = {"measured": lambda rng: _measured_spread(rng), "stated": lambda rng: Spread(
    SIGMA_TRAIN, math.inf), "none": lambda rng: None}


@pytest.mark.parametrize("kv,kb,spread,rule", [
    (1, 1, "measured", "profile"), (1, 1, "stated", "profile"),
    # extra seeds of one cell: a measured spread with more dof stands for both cells and the
    # seeds narrow the mean; a stated one never overrides the cell's own measurement
    (1, 2, "measured", "profile"), (1, 3, "measured", "profile"), (1, 3, "stated", "row"),
    (1, 3, "none", "row"), (3, 1, "none", "row"),
    (3, 3, "measured", "seeds"), (2, 2, "measured", "seeds")])
def test_seed_noise_alone_is_claimed_at_most_at_the_level(kv, kb, spread, rule) -> None:
    rng = np.random.default_rng(1)
    false = 0
    for _ in range(2000):
        v, b, img = _experiment(rng, 0.0, kv, kb)
        iv = difference_interval(v, b, img, SPREADS[spread](rng))
        assert iv.rule == rule
        false += iv.claimed
    assert false / 2000 <= 0.07  # 95% intervals: about 5% by chance (+- 0.5% of Monte Carlo)


def test_a_spread_with_fewer_dof_than_the_repeated_cell_leaves_the_row_rule() -> None:
    img = np.random.default_rng(0).normal(0, 0.5, 200)
    v, b = [31.0], [30.0, 29.0, 31.5, 30.2, 29.4]  # the baseline's own 4 dof
    assert difference_interval(v, b, img, Spread(1.0, 3)).rule == "row"
    assert difference_interval(v, b, img, Spread(1.0, 4)).rule == "profile"


def test_extra_baseline_seeds_narrow_the_profile_interval() -> None:
    """Why the smoke profile trains two baseline seeds: with the same spread, k_b = 2 gives
    sd * sqrt(1 + 1/2) instead of sd * sqrt(2) for the training term."""
    img = np.random.default_rng(0).normal(0, 0.5, 200)
    one = difference_interval([31.0], [30.0], img, Spread(2.0, 18))
    two = difference_interval([31.0], [30.0, 30.0], img, Spread(2.0, 18))
    assert one.se_train == pytest.approx(2.0 * math.sqrt(2))
    assert two.se_train == pytest.approx(2.0 * math.sqrt(1.5))
    assert two.hi - two.lo < one.hi - one.lo


def test_the_image_only_interval_claims_seed_noise() -> None:
    """The check above can fail: the paired image bootstrap alone (the old summary) claims
    about half of these differences, which are nothing but training noise."""
    rng = np.random.default_rng(2)
    false = 0
    for _ in range(2000):
        v, b, img = _experiment(rng, 0.0, 1, 1)
        lo, hi = (v.mean() - b.mean()) + np.percentile(img, [2.5, 97.5])
        false += lo > 0 or hi < 0
    assert false / 2000 > 0.4


def test_a_real_difference_is_claimed_with_its_sign() -> None:
    rate, rules = _claim_rate(5.0, 1, 1)
    assert rules == {"profile"} and rate > 0.9
    rate, _ = _claim_rate(-5.0, 3, 3, seed=3)
    assert rate > 0.85
    # the rule's own power statement: a difference of `detectable` is resolved ~80% of the time
    d = detectable(Spread(SIGMA_TRAIN, math.inf), se_images=SIGMA_IMG)
    rate, _ = _claim_rate(d, 1, 1, seed=4)
    assert 0.72 < rate < 0.88


def test_one_seed_without_a_spread_claims_nothing() -> None:
    iv = difference_interval([38.0], [30.0], np.random.default_rng(0).normal(0, 0.5, 200), None)
    assert iv.rule is None and not iv.claimed and iv.point == pytest.approx(8.0)
    assert "one seed per cell cannot separate" in iv.why
    rate, rules = _claim_rate(5.0, 1, 1, with_spread=False)
    assert rate == 0 and rules == {None}


def test_pooled_spread_by_hand() -> None:
    sp = pooled_spread([[1.0, 3.0], [10.0, 10.0, 13.0], [7.0]])  # the single seed adds nothing
    assert sp.dof == 3
    assert sp.sd == pytest.approx(math.sqrt((2.0 + 6.0) / 3))
    with pytest.raises(ValueError, match="no cell has two or more seeds"):
        pooled_spread([[1.0], [2.0]])


# -- two stores that differ only by training noise ---------------------------------------------
#: Box jitter of each training run: the "seed" changes the model's quality, as training noise
#: does; both cells draw from the same distribution (no true difference).
JITTER = {("baseline", 0): 0.10, ("baseline", 1): 0.16, ("baseline", 2): 0.13,
          ("sepc", 0): 0.16, ("sepc", 1): 0.10, ("sepc", 2): 0.12,
          ("pconv", 0): 0.01, ("pconv", 1): 0.012, ("pconv", 2): 0.011}  # pconv: truly better


@pytest.fixture(scope="module")
def noisy_store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("noisy")
    gt = make_gt(80, seed=5)
    (root / "gt.json").write_text(json.dumps(gt))
    for (variant, seed), jitter in JITTER.items():
        d = root / f"fsaf__{variant}__s{seed}"
        d.mkdir()
        dets = make_dets(gt, 1000 + 10 * seed + len(variant), sigma=jitter)
        (d / "detections.bbox.json").write_text(json.dumps(dets))
        from test_bootstrap import coco_stats

        ap, ap50, ap75 = (100 * coco_stats(gt, dets)[:3]).tolist()
        (d / "result.json").write_text(json.dumps(dict(
            schema=1, cell_key=d.name, profile="smoke", detector="fsaf", variant=variant,
            seed=seed, source="trained", status="done", ann_file=str(root / "gt.json"),
            AP=ap, AP50=ap50, AP75=ap75, AR100=ap, train_iters=999)))
    return root


def _headlines(root: Path, seeds: list[int], spread=True) -> dict:
    from reports.store import read_results
    from reports.summary import headlines
    from reports.table import normalise

    df = normalise(read_results(root))
    return {h.variant: h for h in headlines(df[df["seed"].isin(seeds)], root, "smoke", spread)}


def test_seed_noise_between_stores_is_not_claimed(noisy_store: Path) -> None:
    from reports.compare import bootstrap_cells, measured_spread
    from reports.store import read_results

    # What the old summary did: the image bootstrap of seed 0 alone "resolves" a difference
    # that seed 1 reverses. Only training noise differs between the two cells.
    b0 = bootstrap_cells(noisy_store / "fsaf__sepc__s0", noisy_store / "fsaf__baseline__s0",
                         metrics=("AP",)).deltas["AP"]
    b1 = bootstrap_cells(noisy_store / "fsaf__sepc__s1", noisy_store / "fsaf__baseline__s1",
                         metrics=("AP",)).deltas["AP"]
    assert b0.excludes_zero and b1.excludes_zero and np.sign(b0.point) != np.sign(b1.point)

    # The rule, with the three seeds of both cells: nothing claimed for sepc, pconv claimed.
    three = _headlines(noisy_store, [0, 1, 2])
    assert not three["sepc"].ap.resolved and three["sepc"].ap.method.startswith("rule seeds")
    assert three["pconv"].ap.resolved and three["pconv"].ap.lo > 0

    # One seed with the spread measured from these stores (as `bench spread` does).
    df = read_results(noisy_store)
    _, spreads, worst = measured_spread(df[df["variant"].isin(["baseline", "sepc"])])
    entry = SeedSpread("smoke", 999, {"AP": spreads["AP"].sd}, spreads["AP"].dof, "today",
                       "python -m bench spread", "test", {"AP": worst["AP"]})
    for seed in (0, 1):
        one = _headlines(noisy_store, [seed], spread=entry)
        assert not one["sepc"].ap.resolved and one["sepc"].ap.method.startswith("rule profile")
        assert one["sepc"].spread == entry
        assert one["pconv"].ap.resolved
    # One seed and no spread for the recipe: no claim, and the line says why.
    none = _headlines(noisy_store, [0], spread=None)
    assert none["pconv"].ap.unclaimed and "one seed per cell" in none["pconv"].ap.text()
    assert not none["pconv"].ap.resolved


def test_compare_and_the_summary_decide_alike(noisy_store: Path) -> None:
    lines = _headlines(noisy_store, [0, 1, 2])
    for variant in ("sepc", "pconv"):
        proc = subprocess.run([sys.executable, "-m", "bench", "compare", f"fsaf/{variant}",
                               "fsaf/baseline", "--results", str(noisy_store), "--json"],
                              cwd=REPO, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
        ap, h = out["metrics"]["AP"], lines[variant].ap
        assert out["a"] == [f"fsaf__{variant}__s{s}" for s in range(3)]
        assert (ap["lo"], ap["hi"]) == pytest.approx((h.lo, h.hi))
        assert ap["claimed"] == h.resolved and ap["rule"] == "seeds"
    proc = subprocess.run([sys.executable, "-m", "bench", "compare", "fsaf/pconv/0",
                           "fsaf/baseline/0", "--results", str(noisy_store)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "no claim: one seed per cell cannot separate" in proc.stdout
