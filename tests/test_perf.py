"""`python -m bench perf`: option checks, the interleaved timer, BN folding on whole detectors,
and (slow) one real smoke-size run written as JSON + Markdown and shown in the report."""
from __future__ import annotations

import json
import statistics

import pytest
import torch
import torch.nn as nn

from bench.cli import build_parser, main
from bench.plan.cells import MatrixError
from bench.run import benchmark as perf
from bench.run import latency
from fixtures.weights import perturb


def _args(*argv: str):
    return build_parser().parse_args(["perf", *argv])


def test_options_are_checked_before_anything_is_built():
    for argv, msg in [(["--dtype", "fp16", "--device", "cpu"], "fp16 needs a CUDA"),
                      (["--sizes", "huge"], "unknown size 'huge'"),
                      (["--variants", "sepc,nope"], "unknown variant 'nope'"),
                      (["--reps", "0"], "--reps 0"),
                      (["--device", "tpu"], "only cpu and cuda")]:
        with pytest.raises(MatrixError, match=msg):
            perf.settings_from(_args(*argv))
    assert main(["perf", "--detectors", "yolo"]) == 2  # a one-line error, exit status 2


def test_defaults_per_device_and_baseline_always_timed():
    s, detectors, variants, sizes = perf.settings_from(_args("--variants", "sepc_lite",
                                                             "--device", "cpu"))
    assert variants == ["baseline", "sepc_lite"] and sizes == ["paper", "smoke"]
    assert (s.warmup, s.reps, s.batch, s.batch_sizes) == (2, 7, 8, ("smoke",))
    assert s.fuse and not s.channels_last and detectors == ["retinanet", "freeanchor", "fsaf"]
    s, *_ = perf.settings_from(_args("--device", "cpu", "--batch-sizes", "none", "--no-fuse"))
    assert s.batch_sizes == () and not s.fuse


def test_interleaved_runs_round_robin_and_drops_warmup():
    calls = []
    fns = {k: (lambda k=k: calls.append(k)) for k in "ABC"}
    times = perf.interleaved(fns, warmup=1, reps=2, device=torch.device("cpu"))
    assert calls == list("ABC") * 3
    assert {k: len(v) for k, v in times.items()} == {"A": 2, "B": 2, "C": 2}
    s = latency.summarise([5.0, 1.0, 3.0, 2.0, 4.0])
    assert s["median_ms"] == 3.0 and s["p10_ms"] == pytest.approx(1.4)
    assert s["p90_ms"] == pytest.approx(4.6) and s["n"] == 5
    # the result row of a cell's model step keeps its rounds, summarised the same way
    row = latency.step_row([5.0, 1.0, 3.0, 2.0, 4.0], torch.zeros(1, 3, 8, 8))
    assert (row["latency_ms"], row["latency_p10_ms"], row["latency_iters"]) == (3.0, s["p10_ms"], 5)
    assert (
        row["latency_rounds_ms"] == [5.0, 1.0, 3.0, 2.0, 4.0] and row["latency_input"] == "1x3x8x8"
    )


def test_ratios_to_the_baseline_by_hand():
    rows = {"baseline": dict(step_median_ms=20.0, step_times_ms=[10.0, 20.0, 30.0]),
            "sepc": dict(step_median_ms=22.0, step_times_ms=[12.0, 22.0, 36.0])}
    perf.add_ratios(rows)
    assert rows["sepc"]["step_ratio"] == pytest.approx(1.1)         # 22 / 20
    assert rows["sepc"]["step_ratio_paired"] == pytest.approx(1.2)  # median of 1.2, 1.1, 1.2
    assert "batch_ratio" not in rows["sepc"]  # no batch protocol timed: no ratio invented


@pytest.mark.parametrize("variant", ["baseline", "sepc"])
def test_fuse_for_inference_keeps_detector_outputs(variant):
    """Backbone conv+BN and SEPC's iBN folded: head outputs equal to 1e-5, no BN left."""
    model = perf.build_detector(perf.SIZES["smoke"], "retinanet", variant, torch.device("cpu"))
    perturb(model)
    data = model.data_preprocessor(perf.make_batch(model, (96, 128), 2), False)
    with torch.no_grad():
        ref = model._forward(data["inputs"])
        latency.fuse_for_inference(model)
        out = model._forward(data["inputs"])
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    for r, o in zip(sum(map(list, ref), []), sum(map(list, out), [])):
        torch.testing.assert_close(o, r, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_smoke_size_run_writes_json_markdown_and_report(tmp_path):
    from fixtures.results import write_smoke_results
    from reports.build import build_report

    results = write_smoke_results(tmp_path / "results")
    rc = main(["perf", "--sizes", "smoke", "--detectors", "retinanet", "--variants",
               "sepc_lite", "--device", "cpu", "--warmup", "0", "--reps", "2", "--batch", "2",
               "--batch-warmup", "0", "--batch-reps", "1", "--out", str(results), "--quiet"])
    assert rc == 0
    doc = json.loads((results / "perf.json").read_text())
    base, lite = doc["rows"]
    assert (base["variant"], lite["variant"]) == ("baseline", "sepc_lite")
    # each ratio is of this run's own rounds: medians, and the median of the per-round ratios
    assert lite["step_ratio"] == pytest.approx(lite["step_median_ms"] / base["step_median_ms"])
    assert lite["step_ratio_paired"] == pytest.approx(statistics.median(
        t / b for t, b in zip(lite["step_times_ms"], base["step_times_ms"])))
    assert lite["batch_ratio"] == pytest.approx(lite["batch_median_ms"] / base["batch_median_ms"])
    assert len(lite["step_times_ms"]) == 2
    assert lite["params"] > base["params"] > 0 and lite["flops"] > 0
    assert base["input"] == "1x3x256x256" and lite["step_n"] == 2 and "peak_mem_mb" in lite
    assert doc["meta"]["fused_bn"] is True and doc["meta"]["device"].startswith("cpu")
    md = (results / "perf.md").read_text()
    assert "| retinanet | SEPC-lite |" in md and "not counted" in md
    html = build_report(results, formats=("html",))["html"].read_text()
    perf_at = html.index('id="perf"')
    assert html.index('data-block="latency"') < perf_at < html.index('data-block="cost"')
    assert html.count('<tr data-detector="retinanet" data-variant=') == 2
