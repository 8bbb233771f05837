"""The report's summary (reports/summary.py): a difference is claimed only where its interval
excludes zero; otherwise "no resolvable difference at this budget" with the interval; a statistic
that cannot be computed is shown as such. Real detections, real pycocotools evaluation."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from reports.build import build_report
from reports.store import read_results
from reports.summary import NO_DIFFERENCE, Finding, headlines
from reports.table import normalise
from test_bootstrap import make_dets, make_gt


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
    return {h.variant: h for h in headlines(normalise(read_results(store)), store, "smoke")}


def test_claims_only_what_the_interval_supports(lines) -> None:
    assert set(lines) == {"pconv", "ibn", "sepc"}  # every variant against its baseline
    better = lines["pconv"]
    assert better.ap.resolved and better.ap.lo > 0 and "paired bootstrap over 60 images" in better.ap.method
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
    assert rec["latency_pct_paired"] and rec["latency_pct"] == pytest.approx(50.0)  # every round 1.5x
    sepc = fsaf.loc["sepc"]  # timed apart: ratio of the medians
    assert not sepc["latency_pct_paired"] and sepc["latency_pct"] == pytest.approx(100 * (30 / 22 - 1))
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
    gt = tmp_path / "gt.json"
    gt.write_text("{}")
    for seed, (b, v) in enumerate([(10.0, 12.1), (10.4, 12.4), (9.9, 11.8)]):
        _cell(tmp_path, gt, "baseline", seed, AP=b)
        _cell(tmp_path, gt, "sepc", seed, AP=v)
    (h,) = headlines(normalise(read_results(tmp_path)), tmp_path, "smoke")
    assert h.ap.resolved and h.ap.method == "Welch 95% interval over seeds (n=3 vs 3)"
    assert h.ap.point == pytest.approx(2.0, abs=1e-9)
    assert h.latency.error  # no latency in these rows: said, not invented


def test_finding_text() -> None:
    f = Finding("AP", point=0.4, lo=-0.8, hi=1.5, method="m")
    assert not f.resolved and f.text() == f"AP: {NO_DIFFERENCE} (+0.4 [-0.8, +1.5], m)"
    f = Finding("latency", point=-12.0, lo=-15.0, hi=-9.5, method="m")
    assert f.resolved and f.text() == "latency -12.0% [-15.0%, -9.5%] (m)"


def test_report_shows_the_summary(store: Path, capsys) -> None:
    html = build_report(store, formats=["html", "text"], echo=True)["html"].read_text()
    assert '<h2 id="summary">Summary</h2>' in html
    assert html.count('class="finding claim"') == 3  # pconv AP + latency, sepc latency
    assert html.count('class="finding nodiff"') == 2 and html.count('class="finding error"') == 1
    assert f"AP: {NO_DIFFERENCE} (" in html and "paired bootstrap over 60 images" in html
    out = capsys.readouterr().out
    assert "Summary (a difference only where its interval excludes zero" in out
    assert "- FSAF iBN+PConv: AP: no resolvable difference at this budget" in out
