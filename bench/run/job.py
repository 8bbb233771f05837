"""What runs inside one job, top to bottom: train (or, for a released cell, convert the authors'
checkpoint), evaluate COCO AP, time, write the row.

``CellJob`` is a submitit ``Checkpointable``: when SLURM sends USR2 (preemption, or the time limit
approaching) it saves a checkpoint of the running training, counts the requeue and asks to be
requeued; the next start resumes from the last checkpoint in the cell's work dir. A local run
that was killed resumes the same way when the command is run again.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path

import submitit

from bench.cellstore import CellStore, now, sha256_file
from bench.plan import Plan
from bench.plan.config import config_hash, hashed_config
from bench.repo import REPO
from bench.run import ddp
from reports.schema import COCO_METRIC_ITEMS, LATENCY_PER_JOB, atomic_write, atomic_write_json


class _Tee:
    """Duplicate a stream into the cell's job.log, so a failure's last lines are in the store."""

    def __init__(self, stream, log) -> None:
        self.stream, self.log = stream, log

    def write(self, text: str) -> int:
        self.log.write(text)
        self.log.flush()
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()
        self.log.flush()

    def __getattr__(self, name):
        return getattr(self.stream, name)


def _versions() -> dict:
    import mmcv
    import mmdet
    import mmengine
    import torch

    return dict(python=sys.version.split()[0], torch=torch.__version__, mmcv=mmcv.__version__,
                mmdet=mmdet.__version__, mmengine=mmengine.__version__)


def git_commit() -> str | None:
    """The checkout's commit (worktrees and packed refs included); None outside a git checkout."""
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _merge_scalars(work_dir: Path, out: Path) -> None:
    """All runs' vis_data/scalars.json (one per start, after requeues) as one JSON-lines file."""
    files = sorted(work_dir.glob("*/vis_data/scalars.json"))
    if files:
        atomic_write(out, "".join(f.read_text() for f in files))


class CellJob(submitit.helpers.Checkpointable):
    """Runs one planned cell. Picklable: submitit sends it to the node with the Plan as argument
    (a pilot's Plan carries the full cell's, whose cost it forecasts: a local pilot of a
    multi-GPU cell runs as one process, its forecast is for the cell's real layout)."""

    def __init__(self, results: str | Path) -> None:
        self.results = str(Path(results).resolve())
        self._runner = None
        self._requeued = False
        self._t0 = time.time()

    def __getstate__(self) -> dict:
        return dict(results=self.results, _runner=None, _requeued=False, _t0=0.0)

    # -- submitit: USR2 -> save what training has done, requeue -------------------------------
    def checkpoint(self, plan: Plan) -> submitit.helpers.DelayedSubmission:
        """Called by submitit on rank 0 only; the other ranks go on until SLURM requeues the
        whole job (they block in the next gradient all-reduce meanwhile)."""
        store = CellStore(self.results, plan.cell)
        runner = self._runner
        if runner is not None and getattr(runner, "_sepc_training", False):
            name = f"iter_{runner.iter}.pth"
            runner.save_checkpoint(runner.work_dir, name, by_epoch=False, save_optimizer=True,
                                   save_param_scheduler=True)
            atomic_write(Path(runner.work_dir) / "last_checkpoint",
                              str(Path(runner.work_dir) / name))
            print(f"[sepc-bench] USR2: checkpoint at iteration {runner.iter}, requeueing",
                  flush=True)
        row = store.read() or {}
        store.write(status="requeued", requeues=int(row.get("requeues") or 0) + 1)
        self._requeued = True  # submitit now requeues and exits this process
        return submitit.helpers.DelayedSubmission(CellJob(self.results), plan)

    # -- the job ----------------------------------------------------------------------------
    def __call__(self, plan: Plan) -> dict:
        cell = plan.cell
        store = CellStore(self.results, cell)
        store.dir.mkdir(parents=True, exist_ok=True)
        os.environ["SEPC_CELL_DIR"] = str(store.dir)
        self._t0 = t0 = time.time()
        world = ddp.world()
        rank0 = world.rank == 0
        # Rank 0 alone writes the cell's folder (its log included); the other ranks' output
        # stays in submitit's per-task logs, and what they open for writing there is recorded.
        audit = None if rank0 else ddp.WriteAudit(store.dir).start()
        log = open(store.log_path, "a", buffering=1) if rank0 else None
        old = sys.stdout, sys.stderr
        if log:
            sys.stdout, sys.stderr = _Tee(sys.stdout, log), _Tee(sys.stderr, log)
        try:
            if rank0:
                store.write(status="running", error=None, log_tail=None, started_at=now(),
                            host=socket.gethostname(), pid=os.getpid(), **_job_ids(),
                            source=cell.source, world_size=world.size)
            row = self._run(plan, store, audit)
            if rank0:
                row = store.write(status="done", finished_at=now(),
                                  wall_s=round(time.time() - t0 + float(
                                      (store.read() or {}).get("wall_before_s") or 0), 2),
                                  **row)
            return row
        except BaseException as exc:
            if isinstance(exc, SystemExit) and (exc.code in (0, None) or self._requeued):
                raise
            traceback.print_exc()
            if rank0 and (store.read() or {}).get("status") == "done":
                raise  # interrupted after the cell was written done: the result stands
            if rank0:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                reason = f"{type(exc).__name__}: {first}"
                status = "cancelled" if isinstance(exc, KeyboardInterrupt) else "failed"
                sys.stdout.flush()
                store.write(status=status, error=reason[:1000], finished_at=now(),
                            log_tail=store.log_tail(40),
                            wall_before_s=round(time.time() - t0, 2))
            raise
        finally:
            sys.stdout, sys.stderr = old
            if log:
                log.close()

    def _run(self, plan: Plan, store: CellStore, audit: ddp.WriteAudit | None) -> dict:
        import torch

        import sepc  # noqa: F401  (the config's custom_imports, for a config built in code)
        from bench.run import hooks

        cell, settings = plan.cell, plan.settings
        world = ddp.world()
        expected = plan.layout
        if world.size != expected.world_size:
            raise RuntimeError(
                f"this job has {world.size} tasks but {cell.key} is planned for "
                f"{expected.world_size} ({expected.describe()}): submit it through `python -m "
                "bench run`, which asks SLURM for one task per device")
        threads = int(os.environ.get("SLURM_CPUS_PER_TASK") or settings.threads or 0)
        if threads and not torch.cuda.is_available():
            torch.set_num_threads(threads)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        cfg = plan.job_config(str(store.work_dir), str(store.dir / "detections"))
        digest = config_hash(cfg)  # what `bench plan` showed, before this job's own additions
        if world.rank == 0:  # what this cell trains, for a later request to compare with
            atomic_write_json(store.config_path, hashed_config(cfg))
        cfg.custom_hooks = [*cfg.custom_hooks, dict(type="CellProgressHook")]
        if cell.source == "released":
            runner, metrics, extra = self._evaluate_released(plan, cfg)
        else:
            runner, metrics, extra = self._train(plan, store, cfg)
        hook = next((h for h in runner.hooks if isinstance(h, hooks.CellProgressHook)), None)
        # Every rank's record of what it wrote into the cell's folder, then rank 0 goes on alone.
        writes = ddp.gather(audit.stop() if audit else [])
        ddp.teardown()
        if world.rank != 0:
            return {}
        row = {COCO_METRIC_ITEMS[k.split("bbox_", 1)[1]]: round(100 * float(v), 3)
               for k, v in metrics.items() if k.startswith("coco/bbox_")
               and k.split("bbox_", 1)[1] in COCO_METRIC_ITEMS}
        if not row:  # CocoMetric returns nothing when no box passed the score threshold
            row = dict.fromkeys(COCO_METRIC_ITEMS.values(), 0.0)
            row["note"] = "no detections above the score threshold: AP 0"
        # CocoMetric(classwise=True): coco/<class name>_precision, COCO AP of each class
        per_class = {k[len("coco/"):-len("_precision")]: round(100 * float(v), 3)
                     for k, v in metrics.items()
                     if k.startswith("coco/") and k.endswith("_precision") and v == v}
        row["class_AP"] = per_class or None
        lay = plan.layout
        row.update(world_size=world.size, ddp_backend=extra.pop("ddp_backend", None),
                   imgs_per_device=lay.imgs_per_device,
                   total_batch=lay.total_batch if cell.source == "trained" else None,
                   lr=(float(cfg.optim_wrapper.optimizer.lr) if cfg.optim_wrapper else None),
                   eval_images=hook.val_images if hook else None,
                   eval_unique_images=hook.val_unique_images if hook else None,
                   other_rank_writes=sum((w for w in writes[1:]), []))
        # A local sweep's trained cells are timed together once none trains (bench/run/timing.py);
        # a pilot times itself (its forecast needs the per-call cost).
        pilot = plan.opts.pilot_iters
        deferred = cell.source == "trained" and _job_ids()["executor"] == "local" and not pilot
        row.update(self._measure(runner, plan, time_here=not deferred))
        if pilot:
            row.update(self._forecast(plan, runner, hook, row))
        else:
            row.update(self._analyse(store, cfg.val_evaluator["ann_file"]))
        row.update(
            extra, config_hash=digest, git_commit=git_commit(),
            versions=json.dumps(_versions()), ann_file=cfg.val_evaluator["ann_file"],
            lcconv_padding=_padding(cfg), data_root=cfg.val_dataloader.dataset.data_root,
            iters_requested=plan.opts.max_iters)
        return row

    def _train(self, plan: Plan, store: CellStore, cfg) -> tuple:
        """Train (resuming from the work dir's last checkpoint) and validate the final model."""
        import torch
        from mmengine.runner import Runner

        from bench.run.hooks import CellProgressHook
        from bench.run.pretrain import fetch_pretrained

        cell = plan.cell
        pretrained = fetch_pretrained(plan.opts.pretrained or plan.settings.pretrained,
                                      cell.profile)
        if pretrained:
            cfg.model.backbone.init_cfg.checkpoint = pretrained
        backend = ddp.setup(cfg)  # several tasks: one DDP process per device
        cfg.resume = (store.work_dir / "last_checkpoint").is_file()
        if cfg.resume:
            print(f"[sepc-bench] resuming {cell.key} from "
                  f"{(store.work_dir / 'last_checkpoint').read_text().strip()}", flush=True)
        runner = Runner.from_cfg(cfg)
        self._runner = runner
        runner._sepc_training = True
        runner.train()
        runner._sepc_training = False
        train_peak = (torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available()
                      else _max_rss_mb())
        # The train loop validates the final model (and writes detections.bbox.json); a cell
        # resumed after its last iteration has not, so validate it here.
        hook = next(h for h in runner.hooks if isinstance(h, CellProgressHook))
        metrics = hook.last_metrics if hook.last_val_iter == runner.iter else runner.val()
        if ddp.rank() == 0:
            _merge_scalars(store.work_dir, store.dir / "scalars.json")
        progress = store.progress() or {}
        return runner, metrics, dict(train_iters=int(runner.iter),
                                     iters_run=int(progress.get("iters_run", runner.iter)),
                                     train_peak_mem_mb=round(train_peak, 1),
                                     ddp_backend=backend)

    def _evaluate_released(self, plan: Plan, cfg) -> tuple:
        """No training: the authors' mmdet-1.x checkpoint, converted exactly, then validated.

        The conversion runs before any data is loaded; a checkpoint whose tensors do not fit the
        cell (another variant, an unmapped key, a shape) fails the cell with the keys named.
        """
        from mmengine.runner import Runner

        from bench.plan.manifest import checkpoint_path
        from bench.run.released import load_released
        from sepc.checkpoint import read_mmdet1_checkpoint

        cell = plan.cell
        path = checkpoint_path(cell, plan.opts.checkpoints, plan.opts.manifest)
        print(f"[sepc-bench] {cell.key}: evaluating the released checkpoint {path}", flush=True)
        state = read_mmdet1_checkpoint(path)
        cfg.resume = False
        runner = Runner.from_cfg(cfg)
        self._runner = runner
        load_released(runner.model, state, cell.variant, path)
        return runner, runner.val(), dict(checkpoint=str(path),
                                          checkpoint_sha256=sha256_file(path))

    def _forecast(self, pilot: Plan, runner, hook, row: dict) -> dict:
        """The pilot's measurements, and the full cell's cost forecast from them."""
        from bench.plan import plan_cell
        from bench.run.pilot import forecast, schedule_length, steady_iteration_seconds

        full = pilot.full or plan_cell(pilot.cell, dataclasses.replace(
            pilot.opts, pilot_iters=None, val_images=None))
        plan = full.layout
        train_images = len(runner.train_dataloader.dataset)
        iters, validations = schedule_length(full.config.train_cfg, train_images,
                                             plan.total_batch, plan.world_size)
        iter_s = steady_iteration_seconds(hook.iteration_seconds())
        pilot_world = ddp.world().size
        val_per_image = hook.val_seconds * pilot_world / max(1, hook.val_images or 1)
        timing_s = full.settings.latency.seconds(row["latency_ms"], row["latency_paper_ms"])
        full_val_images = _count_images(full.config.val_evaluator["ann_file"])
        fc = forecast(iter_s=iter_s, iters=iters, validations=validations,
                      val_s_per_image=val_per_image, val_images=full_val_images,
                      devices=plan.world_size, gpus=plan.nodes * plan.gpus_per_node,
                      startup_s=hook.train_start_wall - self._t0, timing_s=timing_s)
        note = None
        if plan.gpus_per_node and str(row.get("device", "")).startswith("cpu"):
            note = (f"measured on {row['device']}; the cell trains on GPUs ({plan.describe()}): "
                    "the forecast assumes this device's speed")
        elif plan.world_size != pilot_world:
            note = (f"measured with {pilot_world} process(es); the cell runs {plan.world_size}: "
                    "the forecast assumes the same time per iteration")
        return dict(pilot=True, pilot_iters=len(hook.iter_ends),
                    pilot_iter_s=round(iter_s, 4) if iter_s is not None else None,
                    pilot_val_images=hook.val_images, pilot_val_s=round(hook.val_seconds, 3),
                    train_images=train_images, forecast_val_images=full_val_images,
                    forecast_layout=plan.describe(), forecast_note=note, **fc.row())

    @staticmethod
    def _analyse(store: CellStore, ann_file: str) -> dict:
        """What the cell's detections say beyond AP, computed once here from the ground truth and
        the detections the cell keeps: the TIDE error decomposition (columns ``tide_*``), and
        the per-image COCOeval records beside the detections, for `bench compare` (the paired
        bootstrap then resamples without evaluating again)."""
        from reports.compare import save_records
        from reports.schema import DETECTIONS_FILE, RECORDS_FILE, read_json
        from reports.stats import ALL_METRICS, evaluate_records, tide

        dets_file = store.dir / DETECTIONS_FILE
        gt = read_json(ann_file, required=True)
        dets = read_json(dets_file, required=True) if dets_file.is_file() else []
        row = tide(gt, dets).as_row()
        try:
            if dets:
                save_records(evaluate_records(gt, dets, metrics=ALL_METRICS),
                             store.dir / RECORDS_FILE)
        except Exception as exc:  # noqa: BLE001 - a cache: compare evaluates without it
            print(f"[sepc-bench] evaluation records not cached: {exc}", flush=True)
        return row

    def _measure(self, runner, plan: Plan, time_here: bool = True) -> dict:
        """Latency (both protocols; ``time_here``), parameters, FLOPs and peak memory, on this
        process alone (rank 0, after the other ranks left) and on unsharded input.

        A trained cell of a local sweep does not time itself: other cells train beside it, so
        they are timed together once training is over (bench/run/timing.py). A job on its own device
        (SLURM, or run inline), a pilot and a released cell (nothing trains) time themselves
        here: ``latency_protocol = "per-job"``."""
        import torch
        from mmengine.dataset import pseudo_collate

        from bench.run import latency

        model = runner.model.module if hasattr(runner.model, "module") else runner.model
        # a pilot's timing is short: the forecast needs its per-call cost only
        lat = plan.settings.pilot.latency if plan.opts.pilot_iters else plan.settings.latency
        dataset = runner.val_dataloader.dataset
        inputs, samples = latency.fixed_batch(model, pseudo_collate([dataset[0]]), lat.size)
        device = next(model.parameters()).device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        out: dict = {}
        if time_here:
            timed = latency.fuse_for_inference(copy.deepcopy(model))  # every variant alike
            out.update(latency.model_step(timed, inputs, samples, lat.warmup, lat.iters))
            out.update(latency.paper_protocol(
                timed, latency.paper_loader(dataset, lat.paper_batch), lat.paper_skip,
                lat.paper_iters))
            out.update(latency_protocol=LATENCY_PER_JOB, latency_world_size=1)
        out["params"] = latency.count_params(model)
        try:
            out["flops"] = latency.count_flops(model, inputs, samples)
        except Exception as exc:  # noqa: BLE001 - FLOPs are informative, not worth a failed cell
            print(f"[sepc-bench] FLOP count failed: {exc}", flush=True)
            out["flops"] = None
        out["device"] = latency.device_name(device)
        out["peak_mem_mb"] = (torch.cuda.max_memory_allocated(device) / 2**20
                              if device.type == "cuda" else _max_rss_mb())
        return out


def _count_images(ann_file: str) -> int:
    with open(ann_file) as fh:
        return len(json.load(fh)["images"])


def _padding(cfg) -> int | None:
    neck = cfg.model.neck
    return neck[1].get("lcconv_padding") if isinstance(neck, list) else None


def _max_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _job_ids() -> dict:
    """executor (local/slurm/debug) and the scheduler's job id of the running job."""
    try:
        env = submitit.JobEnvironment()
        return dict(executor=env.cluster, job_id=str(env.job_id))
    except RuntimeError:
        return dict(executor="inline", job_id=str(os.getpid()))
