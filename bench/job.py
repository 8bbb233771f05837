"""What runs inside one job, top to bottom: train (or, for a released cell, convert the authors'
checkpoint), evaluate COCO AP, time, write the row.

``CellJob`` is a submitit ``Checkpointable``: when SLURM sends USR2 (preemption, or the time limit
approaching) it saves a checkpoint of the running training, counts the requeue and asks to be
requeued; the next start resumes from the last checkpoint in the cell's work dir. A local run
that was killed resumes the same way when the command is run again.
"""
from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path

import submitit

from .configs import Options, cell_profile, config_hash, resolve
from .matrix import Cell
from .store import REPO, CellStore, atomic_write_text, now

AP_KEYS = {"mAP": "AP", "mAP_50": "AP50", "mAP_75": "AP75", "mAP_s": "APs", "mAP_m": "APm",
           "mAP_l": "APl", "AR@100": "AR100"}


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


def _plain_config_text() -> None:
    """mmengine yapf-formats the whole config at start-up and again into every checkpoint (about
    2 s per smoke cell on one core); the unformatted text is the same Python, so jobs skip it."""
    import mmengine.config.config as mmengine_config

    mmengine_config.FormatCode = lambda text, **_: (text, False)


def _rank() -> int:
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")))


def _merge_scalars(work_dir: Path, out: Path) -> None:
    """All runs' vis_data/scalars.json (one per start, after requeues) as one JSON-lines file."""
    files = sorted(work_dir.glob("*/vis_data/scalars.json"))
    if files:
        atomic_write_text(out, "".join(f.read_text() for f in files))


class CellJob(submitit.helpers.Checkpointable):
    """Runs one cell. Picklable: submitit sends it to the node with the cell as argument."""

    def __init__(self, results: str | Path, opts: Options = Options()) -> None:
        self.results = str(Path(results).resolve())
        self.opts = opts
        self._runner = None
        self._requeued = False

    def __getstate__(self) -> dict:
        return dict(results=self.results, opts=self.opts, _runner=None, _requeued=False)

    # -- submitit: USR2 -> save what training has done, requeue -------------------------------
    def checkpoint(self, cell: Cell) -> submitit.helpers.DelayedSubmission:
        store = CellStore(self.results, cell)
        runner = self._runner
        if runner is not None and _rank() == 0 and getattr(runner, "_sepc_training", False):
            name = f"iter_{runner.iter}.pth"
            runner.save_checkpoint(runner.work_dir, name, by_epoch=False, save_optimizer=True,
                                   save_param_scheduler=True)
            atomic_write_text(Path(runner.work_dir) / "last_checkpoint",
                              str(Path(runner.work_dir) / name))
            print(f"[sepc-bench] USR2: checkpoint at iteration {runner.iter}, requeueing",
                  flush=True)
        if _rank() == 0:
            row = store.read() or {}
            store.write(status="requeued", requeues=int(row.get("requeues") or 0) + 1)
        self._requeued = True  # submitit now requeues and exits this process
        return submitit.helpers.DelayedSubmission(CellJob(self.results, self.opts), cell)

    # -- the job ----------------------------------------------------------------------------
    def __call__(self, cell: Cell) -> dict:
        store = CellStore(self.results, cell)
        store.dir.mkdir(parents=True, exist_ok=True)
        os.environ["SEPC_CELL_DIR"] = str(store.dir)
        rank0 = _rank() == 0
        log = open(store.log_path, "a", buffering=1)
        old = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = _Tee(sys.stdout, log), _Tee(sys.stderr, log)
        t0 = time.time()
        try:
            if rank0:
                store.write(status="running", error=None, log_tail=None, started_at=now(),
                            host=socket.gethostname(), pid=os.getpid(), **_job_ids(),
                            source=cell.source)
            row = self._run(cell, store)
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
            log.close()

    def _run(self, cell: Cell, store: CellStore) -> dict:
        import torch

        import sepc  # noqa: F401  (the config's custom_imports, for a config built in code)

        from . import hooks  # noqa: F401

        _plain_config_text()
        profile = cell_profile(cell)
        threads = int(os.environ.get("SLURM_CPUS_PER_TASK") or profile.settings.get("threads", 0))
        if threads and not torch.cuda.is_available():
            torch.set_num_threads(threads)
        cfg = resolve(cell, self.opts, work_dir=str(store.work_dir),
                      results_prefix=str(store.dir / "detections"))
        if cell.source == "released":
            runner, metrics, extra = self._evaluate_released(cell, cfg)
        else:
            runner, metrics, extra = self._train(cell, store, cfg, profile)
        if _rank() != 0:
            return {}
        row = {AP_KEYS[k.split("bbox_", 1)[1]]: round(100 * float(v), 3)
               for k, v in metrics.items() if k.startswith("coco/bbox_")
               and k.split("bbox_", 1)[1] in AP_KEYS}
        if not row:  # CocoMetric returns nothing when no box passed the score threshold
            row = dict.fromkeys(AP_KEYS.values(), 0.0)
            row["note"] = "no detections above the score threshold: AP 0"
        # A local sweep's trained cells are timed together once none trains (bench/timing.py).
        deferred = cell.source == "trained" and _job_ids()["executor"] == "local"
        row.update(self._measure(runner, profile, time_here=not deferred))
        self._cache_eval_records(store, cfg.val_evaluator["ann_file"])
        row.update(
            extra, config_hash=config_hash(cfg), git_commit=git_commit(),
            versions=json.dumps(_versions()), ann_file=cfg.val_evaluator["ann_file"],
            lcconv_padding=_padding(cfg), data_root=cfg.val_dataloader.dataset.data_root)
        return row

    def _train(self, cell: Cell, store: CellStore, cfg, profile) -> tuple:
        """Train (resuming from the work dir's last checkpoint) and validate the final model."""
        from mmengine.runner import Runner

        from .pretrained import fetch_pretrained

        pretrained = fetch_pretrained(self.opts.pretrained or profile.settings.get("pretrained"),
                                      cell.profile)
        if pretrained:
            cfg.model.backbone.init_cfg.checkpoint = pretrained
        if int(os.environ.get("SLURM_NTASKS", "1")) > 1:  # one task per GPU: DDP
            cfg.launcher = "slurm"
            # Array tasks sharing a node must not share mmengine's default port 29500.
            os.environ.setdefault("MASTER_PORT", str(20000 + int(os.environ.get(
                "SLURM_JOB_ID", "0")) % 20000))
        cfg.resume = (store.work_dir / "last_checkpoint").is_file()
        if cfg.resume:
            print(f"[sepc-bench] resuming {cell.key} from "
                  f"{(store.work_dir / 'last_checkpoint').read_text().strip()}", flush=True)
        runner = Runner.from_cfg(cfg)
        self._runner = runner
        runner._sepc_training = True
        runner.train()
        runner._sepc_training = False
        # The train loop validates the final model (and writes detections.bbox.json); a cell
        # resumed after its last iteration has not, so validate it here.
        hook = next(h for h in runner.hooks if type(h).__name__ == "CellProgressHook")
        metrics = hook.last_metrics if hook.last_val_iter == runner.iter else runner.val()
        _merge_scalars(store.work_dir, store.dir / "scalars.json")
        progress = store.progress() or {}
        return runner, metrics, dict(train_iters=int(runner.iter),
                                     iters_run=int(progress.get("iters_run", runner.iter)))

    def _evaluate_released(self, cell: Cell, cfg) -> tuple:
        """No training: the authors' mmdet-1.x checkpoint, converted exactly, then validated.

        The conversion runs before any data is loaded; a checkpoint whose tensors do not fit the
        cell (another variant, an unmapped key, a shape) fails the cell with the keys named.
        """
        from mmengine.runner import Runner

        from sepc.checkpoint import read_mmdet1_checkpoint

        from .released import checkpoint_path, load_released

        path = checkpoint_path(cell, self.opts.checkpoints, self.opts.manifest)
        print(f"[sepc-bench] {cell.key}: evaluating the released checkpoint {path}", flush=True)
        state = read_mmdet1_checkpoint(path)
        cfg.resume = False
        runner = Runner.from_cfg(cfg)
        self._runner = runner
        load_released(runner.model, state, cell.variant, path)
        return runner, runner.val(), dict(checkpoint=str(path),
                                          checkpoint_sha256=_sha256(path))

    @staticmethod
    def _cache_eval_records(store: CellStore, ann_file: str) -> None:
        """Per-image COCOeval records beside the detections, for `bench compare` (the paired
        bootstrap then resamples without evaluating again)."""
        from reports.bootstrap import (ALL_METRICS, RECORDS_FILE, evaluate_records,
                                       save_records)

        dets = store.dir / "detections.bbox.json"
        try:
            if dets.is_file():
                save_records(evaluate_records(ann_file, dets, metrics=ALL_METRICS),
                             store.dir / RECORDS_FILE)
        except Exception as exc:  # noqa: BLE001 - a cache: compare evaluates without it
            print(f"[sepc-bench] evaluation records not cached: {exc}", flush=True)

    def _measure(self, runner, profile, time_here: bool = True) -> dict:
        """Latency (both protocols; ``time_here``), parameters, FLOPs and peak memory.

        A trained cell of a local sweep does not time itself: other cells train beside it, so
        they are timed together once training is over (bench/timing.py). A job on its own device
        (SLURM, or run inline) and a released cell (nothing trains) time themselves here:
        ``latency_protocol = "per-job"``."""
        import torch
        from mmengine.dataset import pseudo_collate

        from . import latency

        model = runner.model.module if hasattr(runner.model, "module") else runner.model
        lat = profile.settings.get("latency", {})
        size = tuple(lat.get("size", (800, 1344)))
        dataset = runner.val_dataloader.dataset
        inputs, samples = latency.fixed_batch(model, pseudo_collate([dataset[0]]), size)
        device = next(model.parameters()).device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        out: dict = {}
        if time_here:
            timed = latency.fuse_for_inference(copy.deepcopy(model))  # every variant alike
            out.update(latency.model_step(timed, inputs, samples, int(lat.get("warmup", 20)),
                                          int(lat.get("iters", 100))))
            out.update(latency.paper_protocol(
                timed, latency.paper_loader(dataset, int(lat.get("paper_batch", 8))),
                int(lat.get("paper_skip", 100)), int(lat.get("paper_iters", 200))))
            out["latency_protocol"] = "per-job"
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


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
