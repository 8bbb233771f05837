"""What a cluster sweep is planned as, before anything runs: layout, total batch and lr,
iteration budgets on epoch schedules, pilots' forecasts, statuses, rank-0 writes (no training)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cellstore import CellStore
from bench.plan import plan
from bench.plan.cells import Cell, MatrixError
from bench.plan.config import config_hash
from bench.plan.layout import layout
from bench.plan.options import Options
from bench.plan.resolve import resolve
from bench.run.pilot import forecast, schedule_length, steady_iteration_seconds, suggested_time_min

REPO = Path(__file__).resolve().parent.parent


def bench_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env=env)


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    from bench.data.synthetic import generate

    return generate(tmp_path_factory.mktemp("coco") / "coco", n_train=4, n_val=2,
                    image_size=(96, 64))


# -- layout, total batch, lr ------------------------------------------------------------------
def test_paper_layout_total_batch_and_lr_are_in_the_plan_and_the_hash(coco):
    o = Options(data_root=str(coco))
    base, ibn = plan([Cell("paper", "retinanet", "baseline"), Cell("paper", "retinanet", "ibn")], o)
    assert (base.layout.tasks_per_node, base.layout.imgs_per_device, base.gpus) == (8, 2, 8)
    assert (ibn.layout.tasks_per_node, ibn.layout.imgs_per_device, ibn.gpus) == (4, 4, 4)
    for p in (base, ibn):
        row = p.row()
        assert row["total_batch"] == 16 and row["lr"] == 0.01 and p.lr_note is None
        assert p.config.auto_scale_lr.base_batch_size == 16
    # Half the GPUs: total batch 8, lr halved, said so, and another config hash.
    half = Options(data_root=str(coco), gpus_per_node=4)
    (p,) = plan([Cell("paper", "retinanet", "baseline")], half)
    assert p.row()["total_batch"] == 8 and p.lr == pytest.approx(0.005)
    assert p.layout.tasks_per_node == 4  # one task per GPU
    assert "total batch 8" in p.lr_note and "0.01 -> 0.005" in p.lr_note
    assert p.config.auto_scale_lr.base_batch_size == 8
    assert p.config_hash != base.config_hash
    # Two nodes of 4 GPUs: the paper's 16 again, the same training as 1 x 8.
    (two,) = plan([Cell("paper", "retinanet", "baseline")],
                  Options(data_root=str(coco), nodes=2, gpus_per_node=4))
    assert two.row()["total_batch"] == 16 and two.lr_note is None
    assert two.config_hash == base.config_hash


def test_cpu_ddp_of_a_smoke_cell_doubles_the_batch_and_says_so():
    (p,) = plan([Cell("smoke", "retinanet", "baseline")], Options(tasks_per_node=2))
    assert (p.layout.world_size, p.layout.gpus_per_node, p.row()["total_batch"]) == (2, 0, 8)
    assert p.lr == pytest.approx(0.004) and "lr scaled linearly 0.002 -> 0.004" in p.lr_note


@pytest.mark.parametrize("opts,message", [
    (dict(tasks_per_node=2, gpus_per_node=8), "one task per GPU"),
    (dict(nodes=0), "--nodes 0: must be at least 1"),
    (dict(tasks_per_node=0), "--tasks-per-node 0"),
])
def test_impossible_layouts_are_refused(opts, message):
    with pytest.raises(MatrixError, match=message):
        layout(Cell("smoke", "retinanet", "baseline"), Options(**opts))


def test_released_cells_run_on_one_device():
    with pytest.raises(MatrixError, match="evaluated on one device"):
        layout(Cell("paper", "retinanet", "sepc", source="released"), Options(tasks_per_node=2))


def test_local_executor_refuses_a_multi_device_cell(coco, tmp_path):
    proc = bench_cli("run", "--profile", "paper", "--data-root", str(coco), "--detectors",
                     "retinanet", "--variants", "baseline", "--results", str(tmp_path / "r"))
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: ") and "local executor runs one process" in line
    assert "--tasks-per-node 1" in line
    assert not (tmp_path / "r").exists()


def test_pilot_needs_the_data_root_like_run(tmp_path):
    proc = bench_cli("pilot", "--profile", "paper", "--results", str(tmp_path / "r"))
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "needs --data-root" in line and not (tmp_path / "r").exists()
    proc = bench_cli("pilot", "--profile", "smoke", "--pretrained", "/nonexistent/r50.pth",
                     "--results", str(tmp_path / "r"))
    assert proc.returncode == 2 and "pretrained checkpoint not found" in proc.stderr
    assert not (tmp_path / "r").exists()


# -- --max-iters on an epoch schedule ---------------------------------------------------------
def test_max_iters_on_an_epoch_schedule_is_a_real_override(coco):
    o = Options(data_root=str(coco))
    full = resolve(Cell("paper", "fsaf", "sepc"), o)
    short = resolve(Cell("paper", "fsaf", "sepc"), Options(data_root=str(coco), max_iters=1200))
    assert full.train_cfg.type == "EpochBasedTrainLoop" and full.train_cfg.max_epochs == 12
    assert short.train_cfg == dict(type="IterBasedTrainLoop", max_iters=1200, val_interval=1200)
    warm, steps = short.param_scheduler
    assert warm.end == 500 and warm.by_epoch is False
    # steps at the epoch schedule's fractions, 8/12 and 11/12 of the budget
    assert steps.by_epoch is False and steps.milestones == [800, 1100] and steps.end == 1200
    assert short.train_dataloader.sampler.type == "InfiniteSampler"
    assert config_hash(short) != config_hash(full)
    tiny = resolve(Cell("paper", "fsaf", "sepc"), Options(data_root=str(coco), max_iters=2))
    assert tiny.param_scheduler[0].end == 2 and tiny.param_scheduler[1].milestones == [1, 2]
    proc = bench_cli("plan", "--profile", "paper", "--data-root", str(coco), "--detectors",
                     "fsaf", "--variants", "sepc", "--max-iters", "2", "--json")
    (row,) = json.loads(proc.stdout)
    assert row["max_iters"] == 2 and row["max_epochs"] is None


# -- forecast ---------------------------------------------------------------------------------
def test_schedule_length_of_the_paper_recipe_on_coco():
    # COCO train2017 after the empty-image filter: 117,266 images. 8 GPUs x 2: the DefaultSampler
    # gives each rank ceil(117266 / 8) = 14,659 images, i.e. 7,330 batches of 2 per epoch.
    epochs = dict(type="EpochBasedTrainLoop", max_epochs=12, val_interval=1)
    assert schedule_length(epochs, 117266, 16, 8) == (12 * 7330, 12)
    # 4 GPUs x 4: ceil(117266 / 4) = 29,317 images per rank, 7,330 batches of 4.
    assert schedule_length(epochs, 117266, 16, 4) == (12 * 7330, 12)
    iters = dict(type="IterBasedTrainLoop", max_iters=200, val_interval=200)
    assert schedule_length(iters, 400, 4, 1) == (200, 1)
    assert schedule_length(dict(iters, val_interval=50), 400, 4, 1) == (200, 4)


def test_forecast_from_measured_pilot_numbers():
    # 0.5 s per iteration after warm-up (the 3 s first iteration is dropped)
    assert steady_iteration_seconds([3.0, 0.5, 0.5, 0.6, 0.4]) == 0.5
    assert steady_iteration_seconds([9.0, 2.0]) == 2.0 and steady_iteration_seconds([]) is None
    f = forecast(iter_s=0.5, iters=87960, validations=12, val_s_per_image=0.08,
                 val_images=5000, devices=8, gpus=8, startup_s=120.0, timing_s=180.0)
    # train 43,980 s; validation 12 x 5000 x 0.08 / 8 = 600 s; + 120 + 180 = 44,880 s
    assert f.train_s == 43980 and f.val_s == 600 and f.wall_s == 44880
    assert f.gpu_hours == pytest.approx(44880 / 3600 * 8)
    # 748 min x 1.25 + 10 = 945 min, a multiple of 15 already
    assert f.suggested_time_min == 945
    assert suggested_time_min(60) == 15 and suggested_time_min(3600) == 90


# -- the result store's statuses and writers ---------------------------------------------------
def test_the_writer_knows_the_schema_statuses(tmp_path):
    store = CellStore(tmp_path, Cell("smoke", "retinanet", "ibn"))
    store.write(status="requeued", requeues=1)
    with pytest.raises(ValueError, match="unknown cell status 'preempted'"):
        store.write(status="preempted")
    assert json.loads(store.result_path.read_text())["status"] == "requeued"


def test_a_requeued_cell_reads_requeued_in_the_table(tmp_path):
    from reports.store import read_results
    from reports.table import build_table

    CellStore(tmp_path, Cell("smoke", "retinanet", "baseline")).write(status="done", AP=20.0)
    CellStore(tmp_path, Cell("smoke", "retinanet", "ibn")).write(status="requeued", requeues=2)
    ap = build_table(read_results(tmp_path)).block("ap")
    assert (ap.display.loc[("RetinaNet", "ours"), "iBN+PConv"]) == "requeued"
    assert ap.states.loc[("RetinaNet", "ours"), "iBN+PConv"] == "requeued"


def test_only_rank_0_writes_the_store(tmp_path, monkeypatch):
    store = CellStore(tmp_path, Cell("smoke", "retinanet", "baseline"))
    monkeypatch.setenv("SLURM_NTASKS", "2")
    monkeypatch.setenv("SLURM_PROCID", "1")
    with pytest.raises(RuntimeError, match="only rank 0 writes"):
        store.write(status="running")
    assert not store.result_path.exists()
    monkeypatch.setenv("SLURM_PROCID", "0")
    store.write(status="running")
    assert store.result_path.exists()


def test_write_audit_sees_writes_in_the_cell_folder_only(tmp_path):
    code = f"""
import json, os, tempfile
from bench.run.ddp import WriteAudit
a = WriteAudit({str(tmp_path / 'cell')!r}).start()
os.makedirs({str(tmp_path / 'cell' / 'w')!r})
open({str(tmp_path / 'cell' / 'w' / 'ckpt.pth')!r}, 'wb').close()
fd, _ = tempfile.mkstemp(dir={str(tmp_path / 'cell')!r}); os.close(fd)
open({str(tmp_path / 'elsewhere.txt')!r}, 'w').close()
open({str(tmp_path / 'cell' / 'w' / 'ckpt.pth')!r}, 'rb').close()
print(json.dumps(a.stop()))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True)
    seen = json.loads(out.stdout)
    assert str(tmp_path / "cell" / "w" / "ckpt.pth") in seen and len(seen) == 2
    assert not any("elsewhere" in p for p in seen)


# -- which cells a command shows ----------------------------------------------------------------
def test_status_shows_the_sweeps_cells_by_default(tmp_path):
    results = tmp_path / "r"
    for var in ("baseline", "sepc"):
        CellStore(results, Cell("smoke", "fsaf", var)).write(status="done", AP=1.0)
    (results / "sweep.json").write_text(
        json.dumps(
            {
                "cells": {
                    k: {"executor": "local", "job_id": "1"}
                    for k in ("fsaf__baseline__s0", "fsaf__sepc__s0")
                }
            }
        )
    )
    proc = bench_cli("status", "--results", str(results), "--json")
    assert [r["cell"] for r in json.loads(proc.stdout)] == ["fsaf__baseline__s0", "fsaf__sepc__s0"]
    proc = bench_cli("status", "--results", str(results), "--json", "--detectors", "fsaf")
    assert len(json.loads(proc.stdout)) == 6  # a selection on the command line wins (the
    # smoke baseline's two seeds and the four variants)


def test_cell_keys_parse_back():
    for cell in (Cell("paper", "fsaf", "sepc_lite", 7), Cell("paper", "retinanet", "ibn",
                                                              source="released")):
        assert Cell.from_key("paper", cell.key) == cell
    with pytest.raises(MatrixError, match="not a cell key"):
        Cell.from_key("paper", "report")
