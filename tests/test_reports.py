"""The report, checked as a reader would: the numbers in the table, what an
unfinished cell says, the published comparison, each renderer read back, and
that nothing from a result file can become markup in the HTML report."""

from __future__ import annotations

import csv
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments.matrix import DETECTORS
from fixtures.results import (
    FAILED_ERROR,
    result_row,
    write_cell,
    write_smoke_results,
    write_sweep,
    write_synthetic_results,
)
from reports.build import build_report, main
from reports.comparable import PUBLISHED_AP
from reports.store import COLUMNS, read_results
from reports.table import (
    INAPPLICABLE,
    NOT_RUN,
    Entry,
    build_table,
    build_tables,
    entry_text,
    latex_escape,
    render_csv,
    render_latex,
    render_markdown,
    render_text,
)

VARIANT_COLS = ["Baseline", "PConv", "iBN+PConv", "SEPC-lite", "SEPC"]
VARIANT_KEYS = ["baseline", "pconv", "ibn", "sepc_lite", "sepc"]


@pytest.fixture(scope="module")
def smoke_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_smoke_results(tmp_path_factory.mktemp("smoke"))


@pytest.fixture(scope="module")
def smoke_df(smoke_dir: Path) -> pd.DataFrame:
    return read_results(smoke_dir)


@pytest.fixture(scope="module")
def smoke(smoke_df: pd.DataFrame):
    return build_table(smoke_df)


@pytest.fixture(scope="module")
def paper_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_results(
        tmp_path_factory.mktemp("paper"), profiles=("paper",), seeds=1, released=True
    )


@pytest.fixture(scope="module")
def smoke_report(smoke_dir: Path) -> dict[str, Path]:
    paths = build_report(smoke_dir)  # default: RESULTS_DIR/report
    assert paths["html"] == smoke_dir / "report" / "report.html"
    return paths


def _num(model, det: str, var: str) -> pd.Series:
    n = model.numeric
    return n[(n["detector"] == det) & (n["variant"] == var)].iloc[0]


def _ap(df: pd.DataFrame, det: str, var: str) -> np.ndarray:
    return df[(df["detector"] == det) & (df["variant"] == var) & (df["status"] == "done")][
        "AP"
    ].to_numpy()


# ----------------------------------------------------------------------------- store


def test_read_results_follows_the_schema(smoke_df: pd.DataFrame, smoke_dir: Path) -> None:
    # every value a row's result.json holds reads back as written, in its schema column
    raw = json.loads((smoke_dir / "fsaf__sepc__s0" / "result.json").read_text())
    got = smoke_df[smoke_df["cell_key"] == "fsaf__sepc__s0"].iloc[0]
    for col in COLUMNS:
        if raw.get(col) is not None:
            want = raw[col] if isinstance(raw[col], (str, int, float)) else json.dumps(raw[col])
            assert got[col] == want, col
    assert len(smoke_df) == 18  # 12 done cells + 4 extra seeds + pending + failed
    # paper order of detectors and variants, then seed
    order = list(zip(smoke_df["detector"], smoke_df["variant"], smoke_df["seed"]))
    assert order[:3] == [
        ("retinanet", "baseline", 0),
        ("retinanet", "baseline", 1),
        ("retinanet", "baseline", 2),
    ]
    assert smoke_df["detector"].drop_duplicates().tolist() == ["retinanet", "freeanchor", "fsaf"]
    pending = smoke_df[smoke_df["status"] == "pending"].iloc[0]
    assert np.isnan(pending["AP"]) and pd.isna(pending["params"])
    assert smoke_df["latency_paper_ms"].isna().all()  # a key no smoke row has
    assert smoke_df["AP"].dtype == float and str(smoke_df["seed"].dtype) == "Int64"


def test_read_results_reports_unreadable_files_and_keeps_extra_keys(tmp_path: Path) -> None:
    write_cell(tmp_path, result_row("smoke", "retinanet", "baseline", extra_metric=1.5))
    bad = tmp_path / "fsaf__sepc__s0"
    bad.mkdir()
    (bad / "result.json").write_text('{"cell_key": "fsaf__sepc__s0", "status": ')
    with pytest.warns(UserWarning, match="unreadable"):
        df = read_results(tmp_path)
    assert len(df) == 1 and df["extra_metric"].iloc[0] == 1.5
    assert df.attrs["unreadable"] == [str(bad / "result.json")]


# ----------------------------------------------------------------------------- table model


def test_table_shape_is_the_papers(smoke) -> None:
    ap = smoke.block("ap").display
    assert list(ap.columns) == VARIANT_COLS
    assert [d for d, _ in ap.index] == ["RetinaNet", "FreeAnchor", "FSAF"]
    assert len(smoke.numeric) == 15
    assert {b.key for b in smoke.blocks} == {"ap", "latency", "cost"}


def test_delta_is_difference_to_the_detectors_baseline(smoke, smoke_df) -> None:
    rec = _num(smoke, "fsaf", "pconv")
    expected = _ap(smoke_df, "fsaf", "pconv").mean() - _ap(smoke_df, "fsaf", "baseline").mean()
    assert rec["AP_delta"] == pytest.approx(expected)
    cell = smoke.block("ap").display.loc[("FSAF", "ours"), "PConv"]
    assert cell == f"{rec['AP']:.1f} ({expected:+.1f})"
    assert (
        smoke.block("ap").display.loc[("FSAF", "ours"), "Baseline"] == f"{rec['AP'] - expected:.1f}"
    )


def test_several_seeds_show_mean_std_n_and_delta_of_means(smoke, smoke_df) -> None:
    sepc, base = _ap(smoke_df, "retinanet", "sepc"), _ap(smoke_df, "retinanet", "baseline")
    assert len(sepc) == len(base) == 3
    rec = _num(smoke, "retinanet", "sepc")
    assert rec["n_seeds"] == 3
    assert rec["AP"] == pytest.approx(sepc.mean())
    assert rec["AP_std"] == pytest.approx(sepc.std(ddof=1))
    assert rec["AP_delta"] == pytest.approx(sepc.mean() - base.mean())
    cell = smoke.block("ap").display.loc[("RetinaNet", "ours"), "SEPC"]
    assert cell.startswith(
        f"{sepc.mean():.1f} ± {sepc.std(ddof=1):.2f} ({sepc.mean() - base.mean():+.1f}"
    )
    assert cell.endswith("n=3")
    # single-seed cells carry no ± and no n
    assert "±" not in smoke.block("ap").display.loc[("RetinaNet", "ours"), "PConv"]


@pytest.mark.parametrize("block", ["ap", "latency", "cost"])
def test_unfinished_cells_say_why_and_are_never_zero(smoke, block: str) -> None:
    b = smoke.block(block)
    first_row = {"ap": "ours", "latency": "model step", "cost": "params (M)"}[block]
    assert b.display.loc[("FSAF", first_row), "SEPC-lite"] == NOT_RUN
    assert b.display.loc[("FSAF", first_row), "SEPC"] == "FAILED"
    assert b.display.loc[("FreeAnchor", first_row), "SEPC"] == "pending"
    assert b.states.loc[("FSAF", first_row), "SEPC"] == "failed"
    for det, var in (("fsaf", "sepc_lite"), ("fsaf", "sepc"), ("freeanchor", "sepc")):
        rec = _num(smoke, det, var)
        for col in ("AP", "AP_delta", "latency_ms", "latency_pct", "params_M", "flops_G"):
            assert np.isnan(rec[col]), (det, var, col)
    assert _num(smoke, "fsaf", "sepc_lite")["status"] == "not run"
    assert _num(smoke, "fsaf", "sepc")["status"] == "failed"


def _rows(*specs) -> pd.DataFrame:
    return pd.DataFrame([result_row("smoke", d, v, seed=s, status=st) for d, v, s, st in specs])


def test_running_cancelled_and_partial_cells() -> None:
    df = _rows(
        ("retinanet", "baseline", 0, "done"),
        ("retinanet", "pconv", 0, "running"),
        ("retinanet", "ibn", 0, "cancelled"),
        ("retinanet", "sepc", 0, "done"),
        ("retinanet", "sepc", 1, "done"),
        ("retinanet", "sepc", 2, "failed"),
    )
    m = build_table(df)
    ap = m.block("ap").display
    assert ap.loc[("RetinaNet", "ours"), "PConv"] == "running"
    assert ap.loc[("RetinaNet", "ours"), "iBN+PConv"] == "cancelled"
    sepc = ap.loc[("RetinaNet", "ours"), "SEPC"]
    assert (
        "n=2" in sepc
        and "[1 failed]" in sepc
        and m.block("ap").states.loc[("RetinaNet", "ours"), "SEPC"] == "partial"
    )
    rec = _num(m, "retinanet", "sepc")
    assert rec["status"] == "partial" and rec["n_seeds"] == 2 and rec["n_failed"] == 1
    # a whole detector that never ran is a row of "—", not of zeros
    assert (ap.loc[("FSAF", "ours")] == NOT_RUN).all()


def test_done_cell_without_latency_reads_na() -> None:
    df = _rows(("retinanet", "baseline", 0, "done"), ("retinanet", "pconv", 0, "done"))
    df.loc[1, "latency_ms"] = np.nan
    m = build_table(df)
    assert m.block("latency").display.loc[("RetinaNet", "model step"), "PConv"] == "n/a"
    assert not np.isnan(_num(m, "retinanet", "pconv")["AP"])


def test_latency_is_median_and_percent_over_baseline(smoke, smoke_df) -> None:
    lat = smoke_df[(smoke_df["detector"] == "retinanet") & (smoke_df["variant"] == "sepc")][
        "latency_ms"
    ]
    base = smoke_df[(smoke_df["detector"] == "retinanet") & (smoke_df["variant"] == "baseline")][
        "latency_ms"
    ]
    rec = _num(smoke, "retinanet", "sepc")
    assert rec["latency_ms"] == pytest.approx(lat.median())
    assert rec["latency_pct"] == pytest.approx((lat.median() / base.median() - 1) * 100)
    cell = smoke.block("latency").display.loc[("RetinaNet", "model step"), "SEPC"]
    assert cell == f"{lat.median():.1f} ms ({rec['latency_pct']:+.1f}%)"
    base_params = rec["params_M"] - rec["params_M_delta"]
    assert (
        smoke.block("cost").display.loc[("RetinaNet", "params (M)"), "Baseline"]
        == f"{base_params:.2f}"
    )


def test_paper_profile_shows_published_released_and_difference(paper_dir: Path) -> None:
    df = read_results(paper_dir)
    m = build_table(df)
    assert m.profile == "paper"
    ap = m.block("ap").display
    rows = [r for d, r in ap.index if d == "RetinaNet"]
    assert rows == ["ours", "released", "published", "ours − pub.", "released − pub."]
    # the values the authors did not print are marked, with a footnote
    assert ap.loc[("RetinaNet", "published"), "Baseline"] == "35.6*"
    assert ap.loc[("FreeAnchor", "published"), "Baseline"] == "38.5**"
    assert ap.loc[("FSAF", "published"), "Baseline"] == "36.8"
    assert ap.loc[("RetinaNet", "published"), "SEPC"] == "39.6 (+4.0)"
    assert any(f.startswith("* ") and "not printed" in f for f in m.footnotes)
    assert any(f.startswith("** ") and "derived" in f for f in m.footnotes)
    for (det, var), pub in PUBLISHED_AP.items():
        if not DETECTORS[det].paper:  # not in this store (the paper's table)
            continue
        rec = _num(m, det, var)
        assert rec["published_AP"] == pub
        assert rec["AP_minus_published"] == pytest.approx(rec["AP"] - pub)
        assert not np.isnan(rec["released_AP"])
    rec = _num(m, "fsaf", "sepc")
    assert ap.loc[("FSAF", "ours − pub."), "SEPC"] == f"{rec['AP'] - 41.6:+.1f}"
    assert ap.loc[("FSAF", "released"), "SEPC"].startswith(f"{rec['released_AP']:.1f} (")
    assert ap.loc[("FSAF", "released − pub."), "SEPC"] == f"{rec['released_AP'] - 41.6:+.1f}"
    assert rec["released_AP_minus_published"] == pytest.approx(rec["released_AP"] - 41.6)
    # the paper protocol's latency gets its own row
    assert ("RetinaNet", "paper protocol") in m.block("latency").display.index


def test_released_rows_sit_beside_ours_and_missing_ones_are_not_zero(tmp_path: Path) -> None:
    """A paper store with trained cells and some released checkpoints (the authors released no
    RetinaNet baseline; one checkpoint failed to convert): the released row follows ours, a cell
    without a checkpoint reads "—", a failed one FAILED, each has latency rows of its own, and the
    HTML shades the released rows."""
    for d in ("retinanet", "freeanchor", "fsaf"):
        for v in VARIANT_KEYS:
            write_cell(tmp_path, result_row("paper", d, v))
    for v in VARIANT_KEYS[1:]:
        write_cell(tmp_path, result_row("paper", "retinanet", v, source="released"))
    write_cell(tmp_path, result_row("paper", "fsaf", "sepc", source="released", status="failed",
                                    error="CheckpointConversionError: sepc_fsaf.pth: ..."))
    m = build_table(read_results(tmp_path))
    ap, lat = m.block("ap").display, m.block("latency").display
    assert [r for d, r in ap.index if d == "RetinaNet"] == [
        "ours", "released", "published", "ours − pub.", "released − pub."]
    assert "released" not in {r for d, r in ap.index if d == "FreeAnchor"}
    assert ap.loc[("RetinaNet", "released"), "Baseline"] == NOT_RUN
    assert ap.loc[("RetinaNet", "released − pub."), "Baseline"] == NOT_RUN
    rec = _num(m, "retinanet", "sepc")
    assert (
        ap.loc[("RetinaNet", "released"), "SEPC"] == f"{rec['released_AP']:.1f}"
    )  # no released baseline
    assert ap.loc[("RetinaNet", "released − pub."), "SEPC"] == f"{rec['released_AP'] - 39.6:+.1f}"
    assert ap.loc[("FSAF", "released"), "SEPC"] == "FAILED"
    assert ap.loc[("FSAF", "released"), "PConv"] == NOT_RUN
    assert [r for d, r in lat.index if d == "RetinaNet"] == [
        "model step", "paper protocol", "released: model step", "released: paper protocol"]
    assert (
        lat.loc[("RetinaNet", "released: model step"), "SEPC"]
        == f"{rec['released_latency_ms']:.1f} ms"
    )
    assert lat.loc[("RetinaNet", "released: model step"), "Baseline"] == NOT_RUN
    assert lat.loc[("FSAF", "released: paper protocol"), "SEPC"] == "FAILED"
    assert any(f.startswith("released: the authors' mmdet-1.1 checkpoints") for f in m.footnotes)

    page = (build_report(tmp_path, formats=("html",))["html"]).read_text()
    rows = re.findall(r'<tr class="([^"]*)" data-detector="retinanet" data-row="([^"]*)"', page)
    assert ("released", "released") in rows and ("released", "released − pub.") in rows
    assert ("released", "released: model step") in rows
    assert not any("released" in c for c, r in rows if not r.startswith("released"))


def test_smoke_profile_has_no_published_column(smoke) -> None:
    assert {r for _d, r in smoke.block("ap").display.index} == {"ours"}
    assert smoke.numeric["published_AP"].isna().all()


def test_one_table_per_profile(tmp_path: Path) -> None:
    write_synthetic_results(tmp_path, profile_names=["paper", "smoke", "cpu_fast"], curves=False)
    models = build_tables(read_results(tmp_path))
    assert [m.profile for m in models] == ["paper", "smoke", "cpu_fast"]
    assert all(len(m.numeric) == 15 for m in models)


def test_every_row_names_its_profile(tmp_path: Path) -> None:
    """paper and paper-modern in one store: a table each, in that order, each naming its profile
    in every renderer and in every CSV row; both are held against the published numbers."""
    write_synthetic_results(tmp_path, profiles=("paper",), curves=False,
                            profile_names=["smoke", "paper-modern", "paper"])
    models = build_tables(read_results(tmp_path))
    assert [m.profile for m in models] == ["paper", "paper-modern", "smoke"]
    modern = models[1]
    assert {r for _d, r in modern.block("ap").display.index} >= {"ours", "published", "ours − pub."}
    assert modern.footnotes[0].startswith("profile paper-modern: ")
    assert models[0].footnotes[0].startswith("profile paper: ")
    assert "SEPC ablation — profile `paper-modern`" in render_markdown(modern)
    assert render_text(modern).startswith("SEPC ablation — profile paper-modern\n")
    assert "profile paper-modern" in render_latex(modern)
    rows = list(csv.DictReader(io.StringIO(render_csv(models))))
    assert [r["profile"] for r in rows] == ["paper"] * 15 + ["paper-modern"] * 15 + ["smoke"] * 15
    page = build_report(tmp_path, tmp_path / "out", ["html"])["html"].read_text(encoding="utf-8")
    for name in ("paper", "paper-modern", "smoke"):
        assert f'<h2 id="profile-{name}">Profile <code>{name}</code></h2>' in page
        assert (
            page.count(f'data-profile="{name}"') == 5
        )  # summary, AP, latency, cost, the size|error chart pair


def test_the_table_marks_what_the_summary_claims(smoke_df: pd.DataFrame) -> None:
    """The table has no rule of its own: its intervals and marks are the summary's findings
    (reports/summary.py); a cell the rule makes no claim for gets none, and a failed statistic
    is named in a footnote, never silently dropped."""
    from reports.summary import Finding

    claims = {("retinanet", "sepc"): Finding("AP", point=1.8, lo=0.4, hi=3.1, method="rule seeds"),
              ("retinanet", "ibn"): Finding("AP", point=0.9, lo=-0.2, hi=2.0, method="rule seeds"),
              ("retinanet", "pconv"): Finding("AP", point=0.5, unclaimed="one seed per cell ..."),
              ("fsaf", "sepc"): Finding("AP", error="ZeroDivisionError: division by zero")}
    m = build_table(smoke_df, claims=claims)
    rec = _num(m, "retinanet", "sepc")
    assert (rec["AP_delta_low"], rec["AP_delta_high"], rec["AP_delta_significant"]) == (
        0.4,
        3.1,
        True,
    )
    assert "†" in m.block("ap").display.loc[("RetinaNet", "ours"), "SEPC"]
    assert _num(m, "retinanet", "ibn")["AP_delta_significant"] is False
    assert "†" not in m.block("ap").display.loc[("RetinaNet", "ours"), "iBN+PConv"]
    assert np.isnan(_num(m, "retinanet", "pconv")["AP_delta_low"])  # no claim: no interval
    assert np.isnan(_num(m, "fsaf", "sepc")["AP_delta_low"])
    assert any("could not be computed for FSAF SEPC (ZeroDivisionError: division by zero)" in f
               for f in m.footnotes)
    assert not any("could not be computed" in f for f in build_table(smoke_df).footnotes)
    assert np.isnan(_num(build_table(smoke_df), "retinanet", "sepc")["AP_delta_low"])


def test_entries_carry_the_numbers(smoke, smoke_df) -> None:
    """Each cell is an Entry with the numbers of the numeric frame: nothing to parse back."""
    from reports.summary import Finding

    claims = {
        ("retinanet", "sepc"): Finding("AP", 2.1, lo=0.4, hi=3.9, method="rule seeds"),
        ("retinanet", "pconv"): Finding("AP", 0.5, lo=-0.2, hi=1.3, method="rule seeds"),
    }
    claimed = build_table(smoke_df, claims=claims)
    rec = _num(claimed, "retinanet", "sepc")
    e = claimed.block("ap").entries.loc[("RetinaNet", "ours"), "SEPC"]
    assert (
        e.state == "value"
        and e.value == rec["AP"]
        and e.n == 3
        and e.std == pytest.approx(rec["AP_std"])
    )
    assert e.delta == rec["AP_delta"] and (e.delta_lo, e.delta_hi) == (
        rec["AP_delta_low"],
        rec["AP_delta_high"],
    ) == (0.4, 3.9)
    assert e.significant is bool(rec["AP_delta_significant"]) is True
    unresolved = claimed.block("ap").entries.loc[("RetinaNet", "ours"), "PConv"]
    assert (unresolved.delta_lo, unresolved.significant) == (-0.2, False)
    # where the summary gave no interval, the table states none (NaN in the frame)
    plain = smoke.block("ap").entries.loc[("RetinaNet", "ours"), "SEPC"]
    assert (plain.delta_lo, plain.delta_hi, plain.significant) == (None, None, False)
    assert np.isnan(_num(smoke, "retinanet", "sepc")["AP_delta_low"])
    lat = smoke.block("latency").entries.loc[("RetinaNet", "model step"), "SEPC"]
    assert (lat.value, lat.unit, lat.delta, lat.delta_unit) == (
        rec["latency_ms"],
        "ms",
        rec["latency_pct"],
        "%",
    )
    base = smoke.block("latency").entries.loc[("RetinaNet", "model step"), "Baseline"]
    assert base.delta is None  # the baseline has no difference to itself
    failed = smoke.block("cost").entries.loc[("FSAF", "FLOPs (G)"), "SEPC"]
    assert failed.state == "failed" and failed.value is None and entry_text(failed) == "FAILED"


def test_html_spans_come_from_the_entry() -> None:
    from reports.html import entry_html

    e = Entry("partial", 37.14, std=0.123, n=2, delta=-1.26, significant=True, note="1 failed <x>")
    assert entry_text(e) == "37.1 ± 0.12 (-1.3†) n=2 [1 failed <x>]"
    assert entry_html(e) == (
        '37.1 ± 0.12 <span class="delta neg">(-1.3†)</span> <span class="n">n=2</span> '
        '<span class="partialnote">[1 failed &lt;x&gt;]</span>'
    )
    # a fall that rounds to zero prints as +0.0, and is styled as what it prints
    assert entry_html(Entry("value", 41.31, unit="ms", delta=-0.04, delta_unit="%")) == (
        '41.3 ms <span class="delta pos">(+0.0%)</span>')
    assert entry_html(Entry("value", 0.2, signed=True)) == "+0.2"  # ours − pub.: no brackets
    assert entry_html(Entry("reference", 35.6, mark="*")) == "35.6*"


# ----------------------------------------------------------------------------- renderers


def _md_unescape(s: str) -> str:
    return re.sub(r"\\(.)", r"\1", s)


def _md_tables(text: str) -> list[list[list[str]]]:
    tables, cur = [], []
    for line in text.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            cur.append([_md_unescape(c) for c in cells])
        elif cur:
            tables.append(cur)
            cur = []
    if cur:
        tables.append(cur)
    return tables


def _expected_rows(block) -> list[list[str]]:
    out, last = [], None
    for (det, row), vals in block.display.iterrows():
        out.append([det if det != last else "", row, *vals])
        last = det
    return out


@pytest.mark.parametrize("which", ["smoke", "paper"])
def test_markdown_parses_back(which: str, smoke, paper_dir: Path) -> None:
    m = smoke if which == "smoke" else build_table(read_results(paper_dir))
    tables = _md_tables(render_markdown(m))
    assert len(tables) == len(m.blocks)
    for t, b in zip(tables, m.blocks):
        assert t[0] == ["Detector", "", *VARIANT_COLS]
        assert set(t[1][0]) <= set(":-")
        assert t[2:] == _expected_rows(b)


def test_csv_is_tidy_and_numeric(smoke) -> None:
    back = pd.read_csv(io.StringIO(render_csv(smoke)))
    assert len(back) == 15
    assert back[["detector", "variant"]].drop_duplicates().shape[0] == 15
    for col in ("AP", "AP_delta", "latency_ms", "latency_pct", "params_M", "flops_G", "n_seeds"):
        assert pd.api.types.is_numeric_dtype(back[col]), col
    np.testing.assert_allclose(back["AP"], smoke.numeric["AP"], rtol=1e-5)
    failed = back[(back["detector"] == "fsaf") & (back["variant"] == "sepc")].iloc[0]
    assert np.isnan(failed["AP"]) and failed["status"] == "failed"  # empty, not 0


def _tex_unescape(s: str) -> str:
    for a, b in ((r"$\pm$", "±"), ("---", "—"), ("$-$", "−"), (r"$^\dagger$", "†"), (r"\%", "%"),
                 (r"\_", "_"), (r"\&", "&"), (r"\#", "#"), (r"\$", "$")):
        s = s.replace(a, b)
    return s


def test_latex_is_booktabs_and_parses_back(smoke) -> None:
    tex = render_latex(smoke)
    assert (
        r"\toprule" in tex
        and r"\bottomrule" in tex
        and tex.count(r"\midrule") == 2 * len(smoke.blocks)
    )
    body = [ln for ln in tex.splitlines() if ln.endswith(r"\\") and "multicolumn" not in ln]
    rows = [[_tex_unescape(c.strip()) for c in ln[: -2].split(" & ")] for ln in body]
    assert rows[0] == ["Detector", "", *VARIANT_COLS]
    assert rows[1:] == [r for b in smoke.blocks for r in _expected_rows(b)]
    # every row has the same number of columns as the tabular spec
    ncols = len(re.search(r"\\begin\{tabular\}\{(\w+)\}", tex).group(1))
    assert all(len(r) == ncols for r in rows)


def test_latex_escapes_strings() -> None:
    assert latex_escape("a_b & 50% #1 {x} $y ~^\\") == (
        r"a\_b \& 50\% \#1 \{x\} \$y \textasciitilde{}\textasciicircum{}\textbackslash{}")
    df = pd.DataFrame([result_row("smoke", "retinanet", "baseline", profile="my_profile&co")])
    tex = render_latex(build_table(df))
    assert r"my\_profile\&co" in tex and "my_profile&co" not in tex


def test_text_table_is_aligned(smoke) -> None:
    text = render_text(smoke)
    lines = text.splitlines()
    header = next(ln for ln in lines if ln.startswith("Detector"))
    row = next(ln for ln in lines if ln.startswith("FSAF"))
    # right-aligned columns: each variant header ends where its values end
    assert header.rstrip().endswith("SEPC") and row.rstrip().endswith("FAILED")
    assert len(header.rstrip()) == len(row.rstrip())
    assert "pending" in text and NOT_RUN in text


# ----------------------------------------------------------------------------- HTML


class _Dom(HTMLParser):
    """Just enough DOM for the checks: tags with attributes, and the text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data):
        self.text.append(data)


def _dom(html_text: str) -> _Dom:
    d = _Dom()
    d.feed(html_text)
    return d


def test_html_escapes_everything_from_results(smoke_report: dict[str, Path]) -> None:
    page = smoke_report["html"].read_text(encoding="utf-8")
    assert "<script" not in page.lower()  # the report needs no script, and the error's stays text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in page
    assert "<b>not bold</b>" not in page and "&lt;b&gt;not bold&lt;/b&gt;" in page
    dom = _dom(page)
    assert FAILED_ERROR in "".join(dom.text)  # a reader sees the error as written
    assert not [t for t, _a in dom.tags if t in ("script", "iframe", "object", "embed")]


def test_html_escapes_hostile_profile_and_fields(tmp_path: Path) -> None:
    evil = '<img src=x onerror="alert(1)">'
    write_cell(
        tmp_path,
        result_row(
            "smoke",
            "retinanet",
            "baseline",
            profile=evil,
            device=evil,
            config_hash=evil,
            versions=json.dumps({"torch": evil}),
        ),
    )
    write_cell(tmp_path, result_row("smoke", "retinanet", "pconv", status="cancelled", profile=evil,
                                    error="cancelled by <user> & 'co'"), log="<iframe src=//x>\n")
    page = build_report(tmp_path, tmp_path / "out", ["html"])["html"].read_text(encoding="utf-8")
    assert "<img src=x" not in page and "<iframe" not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
    assert "cancelled by &lt;user&gt; &amp; &#x27;co&#x27;" in page


def test_html_is_self_contained_with_the_table_plots_and_status(
    smoke_report: dict[str, Path], smoke_dir: Path
) -> None:
    html_path = smoke_report["html"]
    dom = _dom(html_path.read_text(encoding="utf-8"))
    # no network: every src is a data URI, links are relative or in-page
    for tag, a in dom.tags:
        for attr in ("src", "href"):
            if attr in a:
                assert not re.match(r"^(https?:)?//", a[attr]), (tag, a[attr])
        if tag == "img":
            assert a["src"].startswith("data:image/png;base64,")
        assert tag != "link"
    imgs = [a for t, a in dom.tags if t == "img"]
    assert len(imgs) == 4  # AP vs latency, AP by size beside the error deltas, training curves
    # the AP table: 3 detector rows x 5 variant columns
    text = html_path.read_text(encoding="utf-8")
    start = text.index('<table class="ablation" data-block="ap"')
    ap = text[start: text.index("</table>", start)]
    ours = re.findall(r'<tr[^>]*data-detector="(\w+)" data-row="ours">(.*?)</tr>', ap, re.S)
    assert [d for d, _ in ours] == ["retinanet", "freeanchor", "fsaf"]
    for _d, row in ours:
        assert re.findall(r'data-variant="(\w+)"', row) == [
            "baseline",
            "pconv",
            "ibn",
            "sepc_lite",
            "sepc",
        ]
    # the job.log links resolve from where the report is
    hrefs = [a["href"] for t, a in dom.tags if t == "a" and a.get("href", "").endswith("job.log")]
    assert hrefs and all((html_path.parent / h).resolve().is_file() for h in hrefs)
    assert "../fsaf__sepc__s0/job.log" in hrefs
    # the sweep status: counts, and the failed/pending cells with reason and log tail
    body = "".join(dom.text)
    for s in ("done: 16", "failed: 1", "pending: 1", "not run: 1"):
        assert s in body
    assert "FSAF SEPC-lite" in body  # the missing cell is named
    cells = [a["data-cell"] for t, a in dom.tags if t == "div" and "data-cell" in a]
    assert cells == ["fsaf__sepc__s0", "freeanchor__sepc__s0"]
    assert "runner.train()" in body  # the failed cell's log tail


# ----------------------------------------------------------------------------- build / CLI


def test_build_report_writes_all_outputs_atomically(
    smoke_dir: Path, smoke_report: dict[str, Path]
) -> None:
    assert {
        "md",
        "csv",
        "tex",
        "html",
        "ap_vs_latency",
        "ap_gain_by_size",
        "training_curves",
    } <= set(smoke_report)
    out = smoke_report["html"].parent
    assert sorted(p.name for p in out.iterdir()) == sorted(
        p.name for p in smoke_report.values()
    )  # no temp files
    for p in smoke_report.values():
        assert p.stat().st_size > 0
    png = smoke_report["training_curves"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_default_out_dir_and_cli(
    smoke_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0 and "--out" in capsys.readouterr().out
    assert main([str(smoke_dir), "--format", "md,csv", "--format", "text"]) == 0
    out = capsys.readouterr().out
    assert "COCO box AP" in out and "FAILED" in out
    assert (smoke_dir / "report" / "table.md").is_file() and (
        smoke_dir / "report" / "table.csv"
    ).is_file()
    assert main([str(tmp_path / "nope"), "-q"]) == 2
    with pytest.raises(SystemExit):
        main([str(smoke_dir), "--format", "pdf"])


def test_sweep_json_cells_without_result_are_named(tmp_path: Path) -> None:
    write_cell(tmp_path, result_row("smoke", "retinanet", "baseline"))
    write_sweep(
        tmp_path,
        "slurm",
        extra={
            "fsaf__sepc__s0": {
                "executor": "slurm",
                "job_id": "77_3<x>",
                "submitted_at": "2025-11-26T04:00:00Z",
            }
        },
    )
    page = build_report(tmp_path, tmp_path / "out", ["html"])["html"].read_text(encoding="utf-8")
    assert "2 cells submitted (2 via slurm)" in page
    assert (
        "Submitted but no result.json (1)" in page and "fsaf__sepc__s0 (job 77_3&lt;x&gt;" in page
    )


def test_empty_and_all_failed_stores_do_not_crash(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    paths = build_report(empty, tmp_path / "o1")
    assert (paths["md"].read_text().count(NOT_RUN)) >= 15
    failed = tmp_path / "failed"
    for d in ("retinanet", "fsaf"):
        write_cell(
            failed, result_row("smoke", d, "sepc", status="failed", error="OOM"), curve=False
        )
    paths = build_report(failed, tmp_path / "o2")
    assert "FAILED" in paths["md"].read_text()
    assert paths["html"].read_text(encoding="utf-8").count("OOM") >= 2


def test_csv_reads_with_the_stdlib(smoke_report: dict[str, Path]) -> None:
    rows = list(csv.DictReader(smoke_report["csv"].open(encoding="utf-8")))
    assert (
        len(rows) == 15 and rows[0]["detector"] == "retinanet" and rows[0]["variant"] == "baseline"
    )
    assert float(rows[0]["AP"]) > 0


def test_a_fourth_detector_is_a_row_with_its_own_published_figures(tmp_path: Path) -> None:
    """ATSS (a matrix entry, not the paper's) beside the paper's table: its row comes after
    FSAF, its extra variant after SEPC, its published figures carry their not-the-paper's marks,
    and the report shows the row."""
    root = write_synthetic_results(tmp_path, profiles=("paper",), curves=False)
    for var, ap in (("baseline", 38.9), ("sepc_noibn", 41.7)):
        row = result_row("paper", "retinanet", "baseline", AP=ap)
        row.update(detector="atss", variant=var, cell_key=f"atss__{var}__s0")
        write_cell(root, row, curve=False)
    m = build_table(read_results(root))
    ap = m.block("ap").display
    assert [d for d in dict.fromkeys(d for d, _r in ap.index)] == [
        "RetinaNet",
        "FreeAnchor",
        "FSAF",
        "ATSS",
    ]
    assert list(ap.columns)[-2:] == ["SEPC", "SEPC w/o iBN"]
    assert ap.loc[("ATSS", "published"), "Baseline"] == "39.4†"
    assert ap.loc[("ATSS", "published"), "SEPC w/o iBN"].startswith("42.1‡")
    assert ap.loc[("ATSS", "ours"), "SEPC w/o iBN"] == "41.7 (+2.8)"
    assert (
        ap.loc[("ATSS", "ours"), "PConv"] == "—"
        and ap.loc[("RetinaNet", "ours"), "SEPC w/o iBN"] == "—"
    )
    assert any(f.startswith("† ATSS Baseline, published: not the paper's") for f in m.footnotes)
    page = build_report(root, tmp_path / "out", ["html"])["html"].read_text(encoding="utf-8")
    assert '<tr class="group-start" data-detector="atss" data-row="ours">' in page


def test_the_two_stage_and_anchor_free_rows_with_their_published_figures(tmp_path: Path) -> None:
    """Faster R-CNN and FCOS (matrix entries, not the paper's) after the paper's rows: the
    variants that do not apply to Faster R-CNN read n/a (never "not run"), its PConv's
    published figure is the abstract's approximate gain (no AP made of it, no ours − pub.), the
    baselines carry their not-the-paper's marks, and every renderer and the report show it."""
    root = write_synthetic_results(tmp_path, profiles=("paper",), curves=False)
    for det, var, ap in (("faster_rcnn", "baseline", 36.9), ("faster_rcnn", "pconv", 38.1),
                         ("fcos", "baseline", 36.2), ("fcos", "sepc", 39.0)):
        row = result_row("paper", "retinanet", "baseline", AP=ap)
        row.update(detector=det, variant=var, cell_key=f"{det}__{var}__s0")
        write_cell(root, row, curve=False)
    m = build_table(read_results(root))
    ap = m.block("ap").display
    assert list(dict.fromkeys(d for d, _r in ap.index))[-2:] == ["Faster R-CNN", "FCOS"]
    faster = ap.loc[("Faster R-CNN", "ours")]
    assert faster["Baseline"] == "36.9" and faster["PConv"] == "38.1 (+1.2)"
    assert (faster[["iBN+PConv", "SEPC-lite", "SEPC"]] == "n/a").all()
    assert ap.loc[("FCOS", "ours"), "iBN+PConv"] == NOT_RUN  # applies, not run
    assert ap.loc[("Faster R-CNN", "published"), "Baseline"] == "36.4§"
    assert ap.loc[("Faster R-CNN", "published"), "PConv"] == "~+2¶"
    assert ap.loc[("Faster R-CNN", "ours − pub."), "PConv"] == NOT_RUN
    assert ap.loc[("Faster R-CNN", "ours − pub."), "Baseline"] == "+0.5"
    assert ap.loc[("FCOS", "published"), "Baseline"] == "36.6#"
    assert ap.loc[("Faster R-CNN", "published"), "SEPC"] == "n/a"
    for block in ("latency", "cost"):
        assert (m.block(block).states.loc["Faster R-CNN", "SEPC"] == "inapplicable").all()
    rec = _num(m, "faster_rcnn", "pconv")
    assert np.isnan(rec["published_AP"]) and rec["published_AP_delta"] == 2.0
    assert rec["published_approx"] and np.isnan(rec["AP_minus_published"])
    assert _num(m, "faster_rcnn", "sepc")["status"] == INAPPLICABLE
    notes = " ".join(m.footnotes)
    assert "n/a: the variant does not apply to the detector (Faster R-CNN: iBN+PConv, " \
           "SEPC-lite, SEPC" in notes
    assert "¶ Faster R-CNN PConv, published: the paper's abstract only" in notes
    assert "§ Faster R-CNN Baseline, published: not printed by the authors; mmdet 1.1" in notes
    assert "# FCOS Baseline, published: not the paper's: mmdet 3.x model zoo" in notes
    assert "~: a gain over the baseline published without an AP" in notes
    assert r"\textasciitilde{}+2\P{}" in render_latex(m)
    assert "| ~+2¶ |" in render_markdown(m)
    page = build_report(root, tmp_path / "out", ["html"])["html"].read_text(encoding="utf-8")
    assert 'data-detector="faster_rcnn" data-row="ours"' in page
    assert '<td class="cell inapplicable" data-variant="sepc">n/a</td>' in page
    assert '<td class="cell reference" data-variant="pconv">~+2¶</td>' in page


def test_a_local_sweep_still_training_says_what_is_to_be_timed(smoke_df: pd.DataFrame) -> None:
    """A watched local sweep's report: the cells not started read "pending", and a finished cell
    of a local sweep whose interleaved timing comes after training reads "to be timed" (a
    finished SLURM cell without a latency is "n/a": nothing will time it)."""
    df = smoke_df.copy()
    sel = (df["detector"] == "fsaf") & (df["seed"] == 0)
    df.loc[sel & (df["variant"] == "pconv"), ["latency_ms", "executor"]] = [np.nan, "local"]
    df.loc[sel & (df["variant"] == "ibn"), ["latency_ms", "executor"]] = [np.nan, "slurm"]
    df.loc[sel & (df["variant"] == "sepc"), ["status", "AP", "latency_ms"]] = [
        "pending", np.nan, np.nan]
    df = df[~((df["detector"] == "fsaf") & (df["variant"] == "sepc") & (df["seed"] != 0))]
    lat = build_table(df).block("latency").display.loc[("FSAF", "model step")]
    assert lat["PConv"].startswith("to be timed") and lat["iBN+PConv"].startswith("n/a")
    assert lat["SEPC"].startswith("pending")
    assert any("to be timed: a local sweep times" in f for f in build_table(df).footnotes)
