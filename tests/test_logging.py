"""`--log tensorboard,mlflow`: a cell's training curves in TensorBoard and MLflow, offline, in
the cell's folder, read back with each tool's own reader; off by default."""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def test_curves_reach_tensorboard_and_mlflow(tmp_path):
    # RetinaNet: after 20 iterations FSAF's baseline keeps no box above the score threshold, so
    # its validation has nothing to evaluate and logs no COCO metric.
    results = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "bench", "run", "--profile", "smoke",
                           "--detectors", "retinanet", "--variants", "baseline",
                           "--max-iters", "20",
                           "--log", "tensorboard,mlflow", "--results", str(results), "--quiet"],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cell = results / "retinanet__baseline__s0"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = cell.glob("work_dir/*/vis_data/events.out.tfevents.*")
    acc = EventAccumulator(str(events))
    acc.Reload()
    loss = acc.Scalars("loss")
    assert [e.step for e in loss] == [10, 20] and all(e.value > 0 for e in loss)
    assert "coco/bbox_mAP" in acc.Tags()["scalars"]

    import mlflow

    client = mlflow.tracking.MlflowClient(f"sqlite:///{cell / 'work_dir' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("sepc-bench-smoke").experiment_id])
    assert run.info.run_name == "retinanet__baseline__s0"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [10, 20]
    assert (cell / "work_dir" / "mlruns").is_dir() and not (REPO / "mlruns").exists()


def test_log_is_off_by_default_and_checked(tmp_path):
    from bench.plan.cells import Cell
    from bench.plan.config import config_hash
    from bench.plan.options import Options
    from bench.plan.resolve import resolve

    cell = Cell("smoke", "fsaf", "baseline")
    plain, logged = resolve(cell), resolve(cell, Options(log=("tensorboard",)))
    assert [b["type"] for b in plain.visualizer.vis_backends] == ["LocalVisBackend"]
    assert [b["type"] for b in logged.visualizer.vis_backends] == ["LocalVisBackend",
                                                                  "TensorboardVisBackend"]
    assert config_hash(plain) == config_hash(logged)  # where curves go is not what trains
    bad = subprocess.run([sys.executable, "-m", "bench", "plan", "--log", "wandb"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1] == (
        "error: unknown --log backend 'wandb' (known: tensorboard, mlflow)")
