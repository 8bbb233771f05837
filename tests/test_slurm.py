"""The SLURM path against a real slurmctld (tools/slurm/up.sh starts a local cluster)."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import wait_for

REPO = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slurm, pytest.mark.slow]


@pytest.fixture(scope="module", autouse=True)
def cluster():
    if os.geteuid() != 0 and not shutil.which("sbatch"):
        pytest.skip("the local SLURM cluster needs root to start (make slurm-up)")
    proc = subprocess.run(["bash", str(REPO / "tools/slurm/up.sh")], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr


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
    return ("--profile", "smoke", "--detectors", "retinanet", "--variants", variants,
            "--results", str(results), *extra)


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
