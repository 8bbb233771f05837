"""The report's summary (reports/summary.py): a difference is claimed only where its interval
(training noise and image sampling, reports/stats/claims.py) excludes zero; otherwise "no
resolvable difference at this budget" with the interval; a statistic that cannot be computed is
shown as such. Real detections, real pycocotools evaluation. The rule's behaviour on noise of a
known size is tests/test_claims.py."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_bootstrap import coco_stats, make_dets, make_gt

from experiments.noise import SeedSpread
from reports.build import build_report
from reports.store import read_results
from reports.summary import NO_DIFFERENCE, Finding, headlines
from reports.table import normalise

#: A seed spread for the one-seed cells below (rule "profile"), as experiments/noise.py states one.
SPREAD = SeedSpread("smoke", None, {"AP": 0.5}, 30.0, "2026-12-04", "python -m bench spread",
                    "a test")


def _cell(root: Path, gt: Path, variant: str, seed: int = 0, dets=None, **row) -> None:
    d = root / f"fsaf__{variant}__s{seed}"
    d.mkdir(parents=True)
    if dets is not None:
        (d / "detections.bbox.json").write_text(json.dumps(dets))
    (d / "result.json").write_text(json.dumps(dict(
        schema=1, cell_key=d.name, profile="smoke", detector="fsaf", variant=variant, seed=seed,
        source="trained", status="done", ann_file=str(gt), AP=row.pop("AP", 10.0), **row)))


def _interleaved(ms: list[float]) -> dict:
    s = sorted(ms)
    return dict(latency_ms=s[len(s) // 2], latency_p10_ms=s[1], latency_p90_ms=s[-2],
                latency_rounds_ms=ms, latency_protocol="interleaved", latency_group="g1")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("store")
    gt = make_gt(60, seed=0)
    gt_path = root / "gt.json"
    gt_path.write_text(json.dumps(gt))
    base_ms = [20.0 + (i % 5) for i in range(30)]  # a noisy machine: 20-24 ms
    _cell(root, gt_path, "baseline", dets=make_dets(gt, 1, sigma=0.2), **_interleaved(base_ms))
    # much better boxes, 1.5x slower in every round: both differences resolved
    _cell(root, gt_path, "pconv", dets=make_dets(gt, 2, sigma=0.02),
          **_interleaved([1.5 * t for t in base_ms]))
    # same quality, same speed up to noise: neither resolved
    _cell(root, gt_path, "ibn", dets=make_dets(gt, 3, sigma=0.2),
          **_interleaved([t * (0.9 if i % 2 else 1.1) for i, t in enumerate(base_ms)]))
    # no detections kept: the AP interval cannot be had, and says so; timed apart from the rest
    _cell(root, gt_path, "sepc", latency_ms=30.0, latency_p10_ms=29.0, latency_p90_ms=31.0,
          latency_protocol="per-job")
    return root


@pytest.fixture(scope="module")
def lines(store: Path) -> dict:
    return {h.variant: h for h in headlines(normalise(read_results(store)), store, "smoke",
                                            spread=SPREAD)}


def test_claims_only_what_the_interval_supports(lines) -> None:
    assert set(lines) == {"pconv", "ibn", "sepc"}  # every variant against its baseline
    better = lines["pconv"]
    assert (
        better.ap.resolved
        and better.ap.lo > 0
        and "paired bootstrap over 60 images" in better.ap.method
    )
    assert better.ap.method.startswith("rule profile: the profile's seed spread (0.50 AP)")
    assert better.spread == SPREAD
    assert better.latency.resolved and better.latency.point == pytest.approx(50.0)
    assert better.latency.method == "p10–p90 of 30 interleaved rounds"
    assert NO_DIFFERENCE not in better.text() and better.text().startswith("FSAF PConv: AP +")

    same = lines["ibn"]
    assert not same.ap.resolved and same.ap.lo < 0 < same.ap.hi
    assert not same.latency.resolved and same.latency.lo < 0 < same.latency.hi
    text = same.text()
    assert text.count(NO_DIFFERENCE) == 2 and f"[{same.ap.lo:+.1f}, {same.ap.hi:+.1f}]" in text


def test_table_latency_is_the_paired_ratio_when_timed_together(store: Path) -> None:
    from reports.table import build_table

    m = build_table(read_results(store))
    fsaf = m.numeric[m.numeric["detector"] == "fsaf"].set_index("variant")
    rec = fsaf.loc["pconv"]
    assert rec["latency_pct_paired"] and rec["latency_pct"] == pytest.approx(
        50.0
    )  # every round 1.5x
    sepc = fsaf.loc["sepc"]  # timed apart: ratio of the medians
    assert not sepc["latency_pct_paired"] and sepc["latency_pct"] == pytest.approx(
        100 * (30 / 22 - 1)
    )
    assert any(f.startswith("Latency (interleaved)") for f in m.footnotes)
    assert any(f.startswith("Latency (per-job)") for f in m.footnotes)


def test_a_failed_statistic_is_shown_not_swallowed(lines) -> None:
    missing = lines["sepc"]
    assert missing.ap.error and "detections.bbox.json missing" in missing.ap.error
    assert not missing.ap.resolved and "interval not available (FileNotFoundError" in missing.text()
    # timed apart: the ratio of medians with the widest interval their own spreads allow
    lat = missing.latency
    assert "timed apart" in lat.method and lat.lo == pytest.approx(100 * (29 / 24 - 1))
    assert lat.resolved  # 29-31 ms against 20-24 ms


def test_several_seeds_use_the_interval_over_seeds(tmp_path: Path) -> None:
    gt = make_gt(40, seed=1)
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(gt))
    ap = {}
    for seed in range(3):
        for variant, sigma, off in (("baseline", 0.2, 10), ("sepc", 0.02, 20)):
            dets = make_dets(gt, off + seed, sigma=sigma)
            ap.setdefault(variant, []).append(100 * coco_stats(gt, dets)[0])
            _cell(tmp_path, gt_path, variant, seed, AP=ap[variant][-1], dets=dets)
    (h,) = headlines(normalise(read_results(tmp_path)), tmp_path, "smoke", spread=None)
    assert h.ap.resolved and h.ap.method == ("rule seeds: Welch over seeds (3 vs 3) + paired "
                                             "bootstrap over 40 images, 95%")
    # the seed means of what pycocotools says of each run's detections
    assert h.ap.point == pytest.approx(np.mean(ap["sepc"]) - np.mean(ap["baseline"]), abs=1e-9)
    assert h.spread is None
    assert h.latency.error  # no latency in these rows: said, not invented


def test_finding_text() -> None:
    f = Finding("AP", point=0.4, lo=-0.8, hi=1.5, method="m")
    assert not f.resolved and f.text() == f"AP: {NO_DIFFERENCE} (+0.4 [-0.8, +1.5], m)"
    f = Finding("latency", point=-12.0, lo=-15.0, hi=-9.5, method="m")
    assert f.resolved and f.text() == "latency -12.0% [-15.0%, -9.5%] (m)"


def test_report_shows_the_summary(store: Path, capsys) -> None:
    """These rows record no recipe (experiments/noise.py has no spread for it): one seed per
    cell, so the report claims no AP difference and says why; latency claims stand."""
    html = build_report(store, formats=["html", "text"], echo=True)["html"].read_text()
    assert '<h2 id="summary">Summary</h2>' in html
    assert html.count('class="finding claim"') == 2  # pconv latency, sepc latency
    assert html.count('class="finding nodiff"') == 3 and html.count('class="finding error"') == 1
    assert html.count("AP: no claim (") == 2 and "one seed per cell cannot separate" in html
    out = capsys.readouterr().out
    assert (
        "Summary (a difference only where its interval, training noise and image sampling both"
        in out
    )
    assert "- FSAF iBN+PConv: AP: no claim (" in out


def test_report_says_which_rule_and_which_spread(tmp_path: Path) -> None:
    """A store trained with a recipe experiments/noise.py has a spread for: the one-seed claims
    use it, each says its rule, and the report prints the spread with its command and date."""
    from bench.plan.settings import load_profile
    from experiments import noise

    iters = load_profile("smoke").settings.max_iters  # the default `make table`'s recipe
    gt = make_gt(60, seed=0)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    _cell(
        tmp_path,
        tmp_path / "gt.json",
        "baseline",
        dets=make_dets(gt, 1, sigma=0.2),
        train_iters=iters,
    )
    _cell(
        tmp_path,
        tmp_path / "gt.json",
        "pconv",
        dets=make_dets(gt, 2, sigma=0.02),
        train_iters=iters,
    )
    entry = noise.seed_spread("smoke", iters)
    assert entry is not None, "experiments/noise.py states the smoke profile's spread"
    html = build_report(tmp_path, formats=["html"])["html"].read_text()
    assert '<span class="rule">rule profile</span>' in html
    assert "Training noise of one seed (rule profile)" in html and entry.command in html
    assert entry.measured in html
    # the same cells asked with --max-iters on a profile whose spread is for its own schedule
    assert noise.seed_spread("paper", None) is not None
    from reports.compare import recipe_spread

    assert recipe_spread([dict(profile="paper", train_iters=500, iters_requested=500)]) is None
    assert recipe_spread([dict(profile="paper", train_iters=87_900)]) is noise.seed_spread(
        "paper", None
    )
