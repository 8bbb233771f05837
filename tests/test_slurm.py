"""The SLURM path against a real slurmctld (tools/slurm/up.sh starts a local cluster)."""
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import require, wait_for

REPO = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def _cluster_up() -> bool:
    if shutil.which("sbatch") is None:
        return False
    try:
        out = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return "UP" in out.stdout


require("the local SLURM cluster", _cluster_up(), "slurm-up (root: installs and starts it)")


def bench(*args, check=True, timeout=300):
    proc = subprocess.run([sys.executable, "-m", "bench", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def row(results, key):
    p = Path(results) / key / "result.json"
    return json.loads(p.read_text()) if p.exists() else {}


def smoke(results, variants, *extra):
    """The smoke profile's cells of RetinaNet, one seed of each (these tests are about SLURM)."""
    return ("--profile", "smoke", "--detectors", "retinanet", "--variants", variants,
            "--baseline-seeds", "1", "--results", str(results), *extra)


def test_dry_run_prints_sbatch_parameters(tmp_path):
    out = bench("run", "--executor", "slurm", "--dry-run", "--partition", "debug",
                "--time", "7", "--sbatch-arg", "comment=a b;c", *smoke(tmp_path, "baseline,sepc"))
    plan = json.loads(out.stdout[out.stdout.index("{"):])
    assert plan["sbatch"]["slurm_partition"] == "debug" and plan["sbatch"]["timeout_min"] == 7
    assert plan["sbatch"]["slurm_additional_parameters"] == {"comment": "a b;c"}
    assert sorted(plan["cells"]) == ["retinanet__baseline__s0", "retinanet__sepc__s0"]
    assert not list(tmp_path.glob("*/result.json"))  # nothing submitted


@pytest.mark.parametrize("flag,message", [
    (("--partition", "nosuchpartition"), "SLURM rejects the request"),
    (("--account", "nosuchaccount"), "SLURM rejects the request"),
])
def test_rejected_options_fail_at_submit_time(tmp_path, flag, message):
    proc = bench("run", "--executor", "slurm", *flag, *smoke(tmp_path, "baseline"), check=False)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*/result.json"))


def test_sbatch_missing_is_a_clear_error(tmp_path):
    env = dict(os.environ, PATH=str(Path(sys.executable).parent))
    proc = subprocess.run([sys.executable, "-m", "bench", "run", "--executor", "slurm",
                           *smoke(tmp_path, "baseline")], cwd=REPO, capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 2 and "sbatch is not on PATH" in proc.stderr


def test_submit_status_results_and_failure(tmp_path):
    """Two cells as one array: one trains to a result, one fails with its error on record; the
    submit command returns at once; --retry-failed resubmits only the failed one."""
    results = tmp_path / "results"
    # A corrupt checkpoint in one cell's work dir makes that cell fail for a real reason.
    broken = results / "retinanet__pconv__s0" / "work_dir"
    broken.mkdir(parents=True)
    (broken / "iter_10.pth").write_bytes(b"not a checkpoint")
    (broken / "last_checkpoint").write_text(str(broken / "iter_10.pth"))
    t0 = time.time()
    out = bench("run", "--executor", "slurm", "--max-iters", "20",
                *smoke(results, "baseline,pconv"))
    assert time.time() - t0 < 60
    assert out.stdout.count("submitted retinanet__") == 2
    sweep = json.loads((results / "sweep.json").read_text())
    ids = {k: v["job_id"] for k, v in sweep["cells"].items()}
    assert ids["retinanet__baseline__s0"].split("_")[0] == ids["retinanet__pconv__s0"].split("_")[0]

    st = bench("status", *smoke(results, "baseline,pconv"))
    assert "retinanet__baseline__s0" in st.stdout

    wait_for(lambda: row(results, "retinanet__baseline__s0").get("status") == "done"
         and row(results, "retinanet__pconv__s0").get("status") == "failed", 400, "both cells")
    failed = row(results, "retinanet__pconv__s0")
    assert "iter_10.pth" in failed["log_tail"] or "checkpoint" in failed["error"].lower()
    assert failed["error"]

    from bench import load

    df = load(results).set_index("variant")
    assert df.loc["baseline", "status"] == "done" and df.loc["baseline", "AP50"] >= 0
    assert df.loc["baseline", "job_id"] == ids["retinanet__baseline__s0"]
    def states():
        st = bench("status", "--json", *smoke(results, "baseline,pconv"))
        by = {r["cell"]: r for r in json.loads(st.stdout)}
        # the row is written before the job process exits: sacct follows a moment later
        return by if by["retinanet__baseline__s0"]["scheduler"] == "COMPLETED" else None
    by = wait_for(states, 60, "sacct to show COMPLETED")
    assert by["retinanet__pconv__s0"]["status"] == "failed"
    assert by["retinanet__pconv__s0"]["scheduler"] == "FAILED"

    shutil.rmtree(broken)
    out = bench("run", "--executor", "slurm", "--retry-failed", "--max-iters", "20",
                *smoke(results, "baseline,pconv"))
    assert "submitted retinanet__pconv__s0" in out.stdout
    assert "submitted retinanet__baseline__s0" not in out.stdout
    wait_for(lambda: row(results, "retinanet__pconv__s0").get("status") == "done", 400, "retry")


def test_cancelled_cell_shows_cancelled_and_does_not_hang(tmp_path):
    results = tmp_path / "results"
    bench("run", "--executor", "slurm", "--max-iters", "2000", *smoke(results, "ibn"))
    wait_for(lambda: row(results, "retinanet__ibn__s0").get("status") == "running", 120, "start")
    bench("cancel", *smoke(results, "ibn"))
    t0 = time.time()

    def cancelled():
        st = bench("status", "--json", *smoke(results, "ibn"))
        return json.loads(st.stdout)[0]["status"] == "cancelled"
    wait_for(cancelled, 60, "cancelled in status")
    assert time.time() - t0 < 60
    from bench import load

    assert load(results).loc[0, "status"] in ("running", "cancelled")  # the store never hangs


def test_usr2_checkpoints_requeues_and_resumes(tmp_path):
    results = tmp_path / "results"
    bench("run", "--executor", "slurm", "--max-iters", "150", *smoke(results, "baseline"))
    key = "retinanet__baseline__s0"
    progress = results / key / "progress.json"
    wait_for(lambda: progress.exists() and json.loads(progress.read_text()).get("iter", 0) >= 40,
         300, "iteration 40")
    job_id = row(results, key)["job_id"]
    subprocess.run(["scancel", "--signal", "USR2", job_id], check=True)
    wait_for(lambda: row(results, key).get("status") == "done", 500, "requeued cell to finish")
    r = row(results, key)
    assert r["requeues"] == 1
    log = (results / key / "job.log").read_text()
    assert "USR2: checkpoint at iteration" in log and "resuming" in log
    # Resumed from the USR2 checkpoint (>= 40), not from zero: about 150 iterations in total
    # instead of the >= 190 a restart would have run.
    assert r["train_iters"] == 150 and r["iters_run"] < 150 + 20, r["iters_run"]


def _submitit_logs(results, task):
    return sorted(Path(results).glob(f".submitit/*/*/*_{task}_log.out"))


def _sweep_job(results, key):
    return json.loads((Path(results) / "sweep.json").read_text())["cells"][key]["job_id"]


def _squeue_ids():
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i"], capture_output=True, text=True)
    return set(out.stdout.split())


def test_ddp_cell_as_two_tasks_on_cpus_resumes_after_usr2(tmp_path):
    """One smoke cell as 2 SLURM tasks (DDP over gloo): it finishes; evaluation saw every
    validation image once; only rank 0 wrote into the cell's folder; latency was timed on one
    process over unsharded input; USR2 in mid-training checkpoints, requeues and resumes."""
    from bench.plan.settings import load_profile

    results = tmp_path / "results"
    out = bench("run", "--executor", "slurm", "--tasks-per-node", "2", "--max-iters", "120",
                *smoke(results, "baseline"))
    assert "total batch 8" in out.stdout and "0.002 -> 0.004" in out.stdout  # said, not silent
    key = "retinanet__baseline__s0"
    progress = results / key / "progress.json"
    wait_for(lambda: progress.exists() and json.loads(progress.read_text()).get("iter", 0) >= 40,
             400, "iteration 40")
    subprocess.run(["scancel", "--signal", "USR2", row(results, key)["job_id"]], check=True)
    wait_for(lambda: row(results, key).get("status") == "done", 600, "the DDP cell to finish")
    r = row(results, key)
    assert r["world_size"] == 2 and r["ddp_backend"] == "gloo" and r["total_batch"] == 8
    assert any("global_rank=1(2)" in p.read_text() for p in _submitit_logs(results, 1))
    n_val = len(json.loads(Path(r["ann_file"]).read_text())["images"])
    assert r["eval_images"] == r["eval_unique_images"] == n_val == 100  # not each rank's half
    assert r["other_rank_writes"] == []  # rank 1 opened nothing for writing in the cell folder
    lat = dataclasses.asdict(load_profile("smoke").settings.latency)
    assert r["latency_world_size"] == 1
    assert r["latency_paper_images"] == min(
        n_val, (lat["paper_skip"] + lat["paper_iters"]) * lat["paper_batch"])
    assert r["requeues"] == 1
    log = (results / key / "job.log").read_text()
    assert "USR2: checkpoint at iteration" in log and "resuming" in log
    assert r["train_iters"] == 120 and r["iters_run"] < 120 + 20, r["iters_run"]


def test_submitting_again_never_duplicates_a_queued_cell(tmp_path):
    results = tmp_path / "results"
    key = "retinanet__pconv__s0"
    bench("run", "--executor", "slurm", "--max-iters", "3000", *smoke(results, "pconv"))
    first = _sweep_job(results, key)
    wait_for(lambda: row(results, key).get("status") == "running", 120, "start")
    try:
        again = bench("run", "--executor", "slurm", "--max-iters", "3000",
                      *smoke(results, "pconv"))
        assert f"skip {key}: queued on SLURM as job {first} (RUNNING)" in again.stdout
        assert "submitted" not in again.stdout and _sweep_job(results, key) == first
        # the table of that folder never starts a local run of a cell SLURM still holds
        table = bench("table", "--run-missing", "--max-iters", "3000", *smoke(results, "pconv"))
        assert f"not run here: {key}: queued on SLURM" in table.stderr
        assert "running 1 missing" not in table.stderr and row(results, key)["job_id"] == first
        # `status` shows the sweep's cells, not the profile's 15
        st = bench("status", "--json", "--profile", "smoke", "--results", str(results))
        assert [r["cell"] for r in json.loads(st.stdout)] == [key]
        # --force is the explicit way: the old job is cancelled before the new one is queued
        forced = bench("run", "--executor", "slurm", "--force", "--max-iters", "3000",
                       *smoke(results, "pconv"))
        assert f"cancelled 1 queued SLURM jobs first: {first}" in forced.stdout
        second = _sweep_job(results, key)
        assert second != first and first not in _squeue_ids()
    finally:
        bench("cancel", *smoke(results, "pconv"), check=False)


def test_paper_cell_is_scheduled_with_its_gpus(tmp_path, coco_1333):
    """The local cluster advertises 8 GPUs (generic resources backed by no device): a paper
    baseline cell asks for 8 GPUs and 8 tasks, and the real slurmctld accepts and schedules it
    (held back by --begin here: it is the request that is checked, not a training)."""
    import re

    results = tmp_path / "results"
    args = ("--profile", "paper", "--data-root", str(coco_1333), "--detectors", "retinanet",
            "--variants", "baseline", "--pretrained", "none", "--results", str(results),
            "--cpus-per-task", "1", "--mem-gb", "1")
    bad = bench("run", "--executor", "slurm", "--gpus-per-node", "9", *args, check=False)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "Requested node configuration is not available" in bad.stderr
    assert "--gpus-per-node=9" in bad.stderr and not (results / "sweep.json").exists()
    bench("run", "--executor", "slurm", "--sbatch-arg", "begin=now+1hour", *args)
    job = _sweep_job(results, "retinanet__baseline__s0")
    try:
        info = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True,
                              check=True).stdout
        assert re.search(r"TresPerNode=gres[:/]gpu:8\b", info), info
        assert re.search(r"\bNumTasks=8\b", info) and "JobState=PENDING" in info, info
        assert "Reason=BeginTime" in info, info  # scheduled, waiting for its start time only
    finally:
        subprocess.run(["scancel", job], check=False)


def test_pilot_through_slurm_with_two_tasks_per_cell(tmp_path):
    from bench.plan.settings import load_profile

    smoke_iters = int(load_profile("smoke").settings.max_iters)
    results = tmp_path / "results"
    out = bench("pilot", "--executor", "slurm", "--tasks-per-node", "2", "--iters", "6",
                "--val-images", "10", *smoke(results, "baseline,sepc"), timeout=900)
    for key in ("retinanet__baseline__s0", "retinanet__sepc__s0"):
        r = row(results / "pilot", key)
        assert r["status"] == "done" and r["pilot"] is True, r.get("error")
        assert r["world_size"] == 2 and r["eval_images"] == 10 and r["forecast_wall_s"] > 0
        assert r["forecast_devices"] == 2 and r["forecast_iters"] == smoke_iters  # the profile's
        assert r["executor"] == "slurm" and key in out.stdout
        assert not (results / key).exists()  # pilots never enter the table's store
