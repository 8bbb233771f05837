"""The report's error analysis and per-class view (reports/breakdown.py), on stores whose answer is
known by hand; the TIDE decomposition itself is tested in test_tide.py."""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest

from fixtures.results import result_row, write_cell
from reports.breakdown import (
    ERRORS,
    UnknownClassError,
    check_classes,
    class_gains,
    error_deltas,
    extremes,
)
from reports.build import build_report
from reports.build import main as reports_main
from reports.store import read_results

TIDE_BASE = {"AP": 40.0, "Cls": 3.0, "Loc": 10.0, "Both": 1.0, "Dupe": 0.5, "Bkg": 4.0, "Miss": 6.0,
             "FP": 12.0, "FN": 9.0}


def _tide(**change: float) -> dict[str, float]:
    return {f"tide_{k}": v for k, v in {**TIDE_BASE, **change}.items()}


def _store(root: Path, cells: dict[tuple[str, str], dict]) -> Path:
    for (det, var), extra in cells.items():
        write_cell(root, result_row("smoke", det, var, **extra))
    return root


@pytest.fixture()
def store(tmp_path: Path) -> Path:
    """RetinaNet: SEPC removes 6 points of localisation error and gains on class a; its PConv
    cell kept no detections (NaN + note). FSAF's baseline has no error analysis at all."""
    return _store(
        tmp_path,
        {
            ("retinanet", "baseline"): dict(
                **_tide(), class_AP=json.dumps({"a": 10.0, "b": 20.0, "c": 30.0})
            ),
            ("retinanet", "sepc"): dict(
                **_tide(Loc=4.0, Miss=7.0), tide_n_Loc=3, class_AP={"a": 15.0, "b": 18.0, "c": 30.0}
            ),
            ("retinanet", "pconv"): dict(
                **{f"tide_{k}": None for k in TIDE_BASE},
                tide_note="no detections in detections.bbox.json",
                class_AP=None,
            ),
            ("fsaf", "baseline"): {},
            ("fsaf", "sepc"): dict(**_tide()),
        },
    )


def test_error_deltas_by_hand(store: Path) -> None:
    deltas, missing = error_deltas(read_results(store), "smoke")
    sepc = deltas[(deltas["detector"] == "retinanet") & (deltas["variant"] == "sepc")].set_index(
        "error"
    )["delta"]
    assert (
        list(sepc.index)
        == list(ERRORS)
        == ["Cls", "Loc", "Both", "Dupe", "Bkg", "Miss", "FP", "FN"]
    )
    assert sepc["Loc"] == pytest.approx(-6.0) and sepc["Miss"] == pytest.approx(1.0)
    assert (sepc.drop(["Loc", "Miss"]) == 0).all()
    # a cell without detections, and a baseline without the columns: left out, with the reason
    assert missing == ["retinanet/pconv (no detections in detections.bbox.json)",
                       "fsaf/baseline (no error analysis in the row)"]
    assert set(deltas["detector"]) == {"retinanet"}


def test_class_gains_by_hand(store: Path) -> None:
    gains, missing = class_gains(read_results(store), "smoke")
    g = gains[gains["variant"] == "sepc"].set_index("cls")
    assert g["delta"].to_dict() == {"a": 5.0, "b": -2.0, "c": 0.0}
    assert g.loc["a", "baseline_AP"] == 10.0 and g.loc["a", "AP"] == 15.0
    top, bottom = extremes(gains[gains["variant"] == "sepc"])
    assert list(top["cls"]) == ["a", "c", "b"] and bottom.empty  # few classes: all, by gain
    assert "retinanet/pconv (no per-class AP in the row)" in missing
    only_b, _ = class_gains(read_results(store), "smoke", classes=["b"])
    assert list(only_b["cls"]) == ["b"]


def test_many_classes_show_the_top_and_bottom_three() -> None:
    import pandas as pd

    g = pd.DataFrame(
        {"cls": [f"c{i:02d}" for i in range(80)], "delta": [float(i - 40) for i in range(80)]}
    )
    top, bottom = extremes(g)
    assert list(top["cls"]) == ["c79", "c78", "c77"] and list(bottom["cls"]) == [
        "c00",
        "c01",
        "c02",
    ]


def test_unknown_class_is_a_one_line_error(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    df = read_results(store)
    assert check_classes(df, ["a", "c"]) == ["a", "c"]
    with pytest.raises(
        UnknownClassError, match=r"unknown class 'person' in the class filter \(known: a, b, c\)"
    ):
        check_classes(df, ["a", "person"])
    out = store / "out"
    assert reports_main([str(store), "--out", str(out), "--classes", "a,person", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown class 'person'") and err.count("\n") == 1
    assert not out.exists()  # nothing written


def test_report_shows_both_views(store: Path) -> None:
    paths = build_report(store, store / "report", ["html", "csv"], classes=["a", "b"])
    page = paths["html"].read_text(encoding="utf-8")
    # the error-delta chart beside the size chart, in one row
    pair = page.split('<div class="pair" data-profile="smoke">', 1)[1].split("</div>", 1)[0]
    assert pair.count("<figure>") == 2 and "by object size" in pair and "TIDE error deltas" in pair
    classes = page.split('<table class="ablation classes" data-profile="smoke">', 1)[1].split(
        "</table>", 1
    )[0]
    row = classes.split('data-detector="retinanet" data-variant="sepc"', 1)[1].split("</tr>", 1)[0]
    assert row.index('data-class="a"') < row.index('data-class="b"') and 'data-class="c"' not in row
    assert (
        '<span class="delta pos">+5.0</span>' in row
        and '<span class="delta neg">-2.0</span>' in row
    )
    assert "retinanet/pconv (no per-class AP in the row)" in page
    rows = list(csv.DictReader(io.StringIO(paths["class_ap"].read_text(encoding="utf-8"))))
    assert [(r["detector"], r["variant"], r["class"], float(r["delta"])) for r in rows] == [
        ("retinanet", "sepc", "a", 5.0), ("retinanet", "sepc", "b", -2.0)]


def test_load_carries_the_columns(store: Path) -> None:
    import bench

    df = bench.load(store)
    row = df[(df["detector"] == "retinanet") & (df["variant"] == "sepc")].iloc[0]
    assert (
        row["tide_Loc"] == 4.0
        and row["tide_n_Loc"] == 3
        and json.loads(row["class_AP"]) == {"a": 15.0, "b": 18.0, "c": 30.0}
    )
    pconv = df[(df["detector"] == "retinanet") & (df["variant"] == "pconv")].iloc[0]
    assert math.isnan(pconv["tide_Loc"]) and pconv["tide_note"].startswith("no detections")


def test_bench_table_refuses_an_unknown_class(
    store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.cli import main

    assert main(["table", "--profile", "smoke", "--results", str(store), "--classes", "b,nope",
                 "--run-missing"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: unknown class 'nope' in the class filter (known: ")
    assert not any(line.startswith("running") for line in err)  # refused before any cell ran
