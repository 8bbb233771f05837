"""End to end on the local executor: a real smoke cell trains, evaluates, times, and resumes."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import wait_for

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _bench(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "bench", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, **kw)


def test_killed_cell_resumes_from_its_last_checkpoint(tmp_path):
    results = tmp_path / "results"
    args = ("run", "--profile", "smoke", "--detectors", "retinanet", "--variants", "pconv",
            "--results", str(results), "--max-iters", "100", "--quiet")
    cell = results / "retinanet__pconv__s0"
    proc = _bench(*args)

    def past_checkpoint():
        p = cell / "progress.json"
        return p.exists() and json.loads(p.read_text()).get("iter", 0) >= 52
    # checkpoint_interval is 50 in the smoke profile: kill after iteration 50 was saved.
    wait_for(past_checkpoint, 400, "iteration 52")
    first = json.loads((cell / "progress.json").read_text())["iters_run"]
    row = json.loads((cell / "result.json").read_text())
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep process
    os.kill(int(row["pid"]), signal.SIGKILL)  # and the cell's own job process
    proc.wait()
    assert (cell / "work_dir" / "last_checkpoint").is_file()
    assert json.loads((cell / "result.json").read_text())["status"] == "running"

    status = subprocess.run([sys.executable, "-m", "bench", "status", "--profile", "smoke",
                             "--detectors", "retinanet", "--variants", "pconv", "--results",
                             str(results)], cwd=REPO, capture_output=True, text=True)
    assert "interrupted" in status.stdout

    again = _bench(*args)
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0, out
    row = json.loads((cell / "result.json").read_text())
    assert row["status"] == "done", row.get("error")
    log = (cell / "job.log").read_text()
    assert "resuming retinanet__pconv__s0 from" in log and "iter_50.pth" in log
    assert row["train_iters"] == 100
    # The resumed attempt ran only 50 iterations (50 -> 100); a restart would have run 100.
    assert 50 <= row["iters_run"] - first <= 65, (row["iters_run"], first)
    for key in ("AP", "AP50", "latency_ms", "latency_paper_ms", "params", "flops"):
        assert row[key] is not None, key


def test_local_sweep_times_a_detector_together_and_summarises(tmp_path):
    """Local cells do not time themselves while others train: once training is over the cells
    of a detector are timed round-robin, and the report's summary states intervals."""
    results = tmp_path / "results"
    args = [sys.executable, "-m", "bench", "table", "--profile", "smoke", "--detectors", "fsaf",
            "--variants", "baseline,pconv", "--max-iters", "10", "--results", str(results)]
    proc = subprocess.run([*args, "--run-missing"], cwd=REPO, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the smoke baselines train two seeds (the profile's baseline_seeds): three cells
    rows = [json.loads((results / f"fsaf__{k}" / "result.json").read_text())
            for k in ("baseline__s0", "pconv__s0", "baseline__s1")]
    assert {r["latency_protocol"] for r in rows} == {"interleaved"}
    assert len({r["latency_group"] for r in rows}) == 1
    for r in rows:
        assert len(r["latency_rounds_ms"]) == r["latency_iters"] == 60
        assert r["latency_p10_ms"] <= r["latency_ms"] <= r["latency_p90_ms"]
        assert r["latency_paper_ms"] > 0 and r["flops"] > 0
    assert "timed 3 fsaf cells interleaved" in proc.stderr
    summary = proc.stdout[proc.stdout.index("Summary"):]
    line = next(x for x in summary.splitlines() if x.startswith("- FSAF PConv:"))
    # a recipe (10 iterations) with no measured seed spread: the baseline's two seeds stand for
    # the training noise of both cells (rule row), and the line says so
    assert "rule row: the baseline's seed spread" in line and "both cells" in line
    assert "p10–p90 of 60 interleaved rounds" in line and "not available" not in line
    # tabulating again times nothing again: the group keeps its timing
    again = subprocess.run([*args, "--run-missing"], cwd=REPO, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0 and "interleaved in" not in again.stderr
    assert json.loads((results / "fsaf__pconv__s0" / "result.json").read_text())[
        "latency_group"] == rows[1]["latency_group"]


def test_a_watched_sweep_survives_ctrl_c(tmp_path):
    """`bench table --run-missing` says what it will take before training, rewrites the report
    after every finished cell (the rest shown pending), and Ctrl-C keeps every finished cell:
    the same command again trains only what is missing."""
    results = tmp_path / "results"
    args = ("table", "--profile", "smoke", "--detectors", "fsaf", "--variants",
            "baseline,pconv,ibn", "--baseline-seeds", "1", "--max-iters", "10", "--jobs", "1",
            "--results", str(results), "--run-missing")
    proc = _bench(*args)
    html = results / "report" / "report.html"

    def first_done_and_reported():
        done = [p for p in results.glob("*/result.json")
                if json.loads(p.read_text()).get("status") == "done"]
        return done and html.is_file() and 'class="badge pending"' in html.read_text() and done
    first = wait_for(first_done_and_reported, 600, "a finished cell in the report")
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the sweep and its job alike
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "3 cells x 10 iterations, 1 at a time: expected " in out
    assert "every finished cell stays in the store" in out
    assert "Traceback" not in out, out  # no process of the sweep prints one over the progress
    rows = {p.parent.name: json.loads(p.read_text()) for p in results.glob("*/result.json")}
    kept = {k for k, r in rows.items() if r["status"] == "done"}
    assert {p.parent.name for p in first} <= kept
    assert all(r["status"] in ("done", "cancelled") for r in rows.values()), rows  # no pending

    again = _bench(*args)
    out, _ = again.communicate(timeout=900)
    assert again.returncode == 0, out
    assert f"running {3 - len(kept)} missing cells" in out
    rows = {p.parent.name: json.loads(p.read_text()) for p in results.glob("*/result.json")}
    assert len(rows) == 3 and all(r["status"] == "done" for r in rows.values())
    page = html.read_text()
    assert 'class="badge pending"' not in page and 'class="badge done">done: 3<' in page


def test_a_background_sweep_stops_its_jobs_when_killed(tmp_path):
    """Started from a script in the background (SIGINT ignored, as a shell's `&` leaves it),
    `kill` of the sweep still stops its training job: no orphan keeps writing the store."""
    results = tmp_path / "results"
    proc = _bench("run", "--profile", "smoke", "--detectors", "fsaf", "--variants", "baseline",
                  "--max-iters", "400", "--results", str(results), "--quiet",
                  preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    cell = results / "fsaf__baseline__s0"

    def training():
        p = cell / "progress.json"
        return p.exists() and json.loads(p.read_text()).get("iter", 0) >= 5
    wait_for(training, 400, "the cell training")
    job_pid = int(json.loads((cell / "result.json").read_text())["pid"])
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)

    def job_gone():
        try:
            with open(f"/proc/{job_pid}/stat") as fh:  # a zombie has stopped too
                return fh.read().rsplit(")", 1)[-1].split()[0] == "Z"
        except FileNotFoundError:
            return True
    wait_for(job_gone, 60, "the job process to stop")
    assert json.loads((cell / "result.json").read_text())["status"] == "cancelled"
