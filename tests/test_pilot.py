"""`bench pilot` on this CPU: the paper profile's real cell code path (R-50 at 1333x800, the
variant's batch per device) for a few iterations, with a forecast of the full schedule."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def test_paper_pilot_on_the_cpu_forecasts_the_full_cell(tmp_path, coco_1333, r50_file):
    results = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "pilot", "--profile", "paper", "--data-root",
         str(coco_1333), "--pretrained", str(r50_file), "--iters", "2", "--val-images", "4",
         "--detectors", "retinanet", "--variants", "sepc_lite", "--results", str(results),
         "--quiet"], cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    key = "retinanet__sepc_lite__s0"
    row = json.loads((results / "pilot" / key / "result.json").read_text())
    assert row["status"] == "done" and row["pilot"] is True, row.get("error")
    assert row["pilot_iters"] == 2 and row["train_iters"] == 2
    assert row["imgs_per_device"] == 4  # SEPC-lite's batch per device, as the paper trains it
    assert row["latency_input"] == "1x3x800x1344"
    assert row["eval_images"] == row["eval_unique_images"] == 4
    assert row["train_peak_mem_mb"] > 1000  # R-50 at 1333x800, 4 images: GBs, not MBs
    # the full cell: 4 GPUs x 4 images, 12 epochs of the 8 training images, 12 validations
    assert row["forecast_devices"] == row["forecast_gpus"] == 4
    assert row["forecast_iters"] == 12 and row["forecast_validations"] == 12
    assert row["forecast_wall_s"] > row["forecast_train_s"] > 0
    # the wall time is its parts, and the parts are the pilot's measurements scaled up
    parts = ("startup_s", "train_s", "val_s", "timing_s")
    assert row["forecast_wall_s"] == pytest.approx(sum(row[f"forecast_{p}"] for p in parts),
                                                   abs=0.01)
    assert row["forecast_train_s"] == pytest.approx(row["pilot_iter_s"] * 12, rel=1e-3)
    assert "measured on cpu" in row["forecast_note"]
    log = (results / "pilot" / key / "job.log").read_text()
    assert f"load model from: {r50_file}" in log  # the backbone weights were loaded ...
    assert "do not match exactly" not in log      # ... every one of them
    # the pilot never enters the table's store; the terminal and the report show the forecast
    assert not (results / key).exists()
    assert key in proc.stdout and "GPU-h" in proc.stdout
    from reports.build import build_report

    (results / "retinanet__baseline__s0").mkdir(parents=True)  # one real cell for the table
    (results / "retinanet__baseline__s0" / "result.json").write_text(json.dumps(dict(
        cell_key="retinanet__baseline__s0", profile="paper", detector="retinanet",
        variant="baseline", seed=0, source="trained", status="pending")))
    paths = build_report(results, formats=("md", "html"))
    assert "retinanet__sepc_lite__s0" in paths["forecast"].read_text()
    page = paths["html"].read_text()
    assert 'id="forecast"' in page and "Sweep forecast" in page


def test_gpu_check_dry_run_writes_its_json(tmp_path):
    """tools/gpu-check.sh on the CPU (--dry-run): every step runs and lands in one JSON file;
    the deformable step compares mmcv's CPU kernel with the exact path for real."""
    proc = subprocess.run(["bash", str(REPO / "tools/gpu-check.sh"), "--dry-run", "--out",
                           str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                          timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((tmp_path / "gpu-check.json").read_text())
    assert doc["dry_run"] is True and doc["device"] == "cpu"
    assert {doc[k]["status"] for k in ("deform", "perf", "pilot")} == {"ok"}
    assert doc["deform"]["max_rel_err"] < 1e-3 and len(doc["deform"]["cases"]) == 2
    rows = doc["perf"]["perf"]["fp32"]["rows"]
    assert {r["variant"] for r in rows} == {"baseline", "pconv", "ibn", "sepc_lite", "sepc"}
    assert [c["status"] for c in doc["pilot"]["cells"]] == ["done", "done"]
