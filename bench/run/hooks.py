"""mmengine hooks the harness adds to every cell: live progress, read by ``bench status`` and the
local progress bar; the count of iterations this cell really executed (across requeues); and the
timings and image counts a pilot's forecast and the DDP checks read."""
from __future__ import annotations

import os
import time
from pathlib import Path

from mmdet.evaluation.metrics import CocoMetric
from mmdet.registry import HOOKS
from mmengine.hooks import Hook

from bench.run import ddp
from reports.schema import atomic_write_json, read_json


@HOOKS.register_module()
class CellProgressHook(Hook):
    """Writes ``<cell>/progress.json`` (rank 0 only): phase, iteration, max iterations,
    iterations run. Keeps, for the job: the end time of every training iteration, the wall time
    and image count of the last validation, and its metrics."""

    priority = "VERY_LOW"

    def __init__(self, interval: int = 5) -> None:
        self.interval = interval
        self._path: Path | None = None
        self._run_before = 0
        self._run_now = 0
        self._last = 0.0
        self.last_metrics: dict | None = None
        self.last_val_iter = -1
        self.train_start: float | None = None
        self.train_start_wall: float | None = None
        self.iter_ends: list[float] = []
        self.val_seconds: float | None = None
        self.val_images: int | None = None  # results the metric received (after DDP gathering)
        self.val_unique_images: int | None = None
        self._val_start = 0.0

    def before_run(self, runner) -> None:
        self._path = Path(os.environ.get("SEPC_CELL_DIR", runner.work_dir)) / "progress.json"
        self._run_before = int((read_json(self._path) or {}).get("iters_run", 0))

    def _write(self, runner, phase: str, force: bool = False) -> None:
        if self._path is None or ddp.rank() != 0 or (
                not force and time.monotonic() - self._last < 1.0):
            return
        self._last = time.monotonic()
        atomic_write_json(self._path, dict(
            phase=phase, iter=runner.iter, max_iters=runner.max_iters, epoch=runner.epoch,
            iters_run=self._run_before + self._run_now, time=time.time()))

    def before_train(self, runner) -> None:
        self.train_start, self.train_start_wall = time.perf_counter(), time.time()
        self._write(runner, "train", force=True)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.iter_ends.append(time.perf_counter())
        self._run_now += 1
        if self.every_n_train_iters(runner, self.interval) or runner.iter + 1 >= runner.max_iters:
            self._write(runner, "train")

    def after_train(self, runner) -> None:
        self._write(runner, "trained", force=True)

    def before_val(self, runner) -> None:
        self._write(runner, "val", force=True)
        self._count_evaluated(runner)
        self._val_start = time.perf_counter()

    def after_val(self, runner) -> None:
        self.val_seconds = time.perf_counter() - self._val_start

    def after_val_epoch(self, runner, metrics=None) -> None:
        self.last_metrics, self.last_val_iter = dict(metrics or {}), runner.iter

    def before_test(self, runner) -> None:
        self._write(runner, "test", force=True)

    def iteration_seconds(self) -> list[float]:
        """Duration of each training iteration of this run (data loading and hooks included)."""
        if self.train_start is None:
            return []
        ends = [self.train_start, *self.iter_ends]
        return [b - a for a, b in zip(ends, ends[1:])]

    def _count_evaluated(self, runner) -> None:
        """Count the images the COCO metric receives (every validation image once, after the
        ranks' shards are gathered and the sampler's padding dropped), and make it score exactly
        the images the loader visits: CocoMetric scores every image of its annotation file,
        which would count the images a pilot's subset never showed as missed."""
        loop = runner.val_loop
        dataset = loop.dataloader.dataset
        ids = [int(dataset.get_data_info(i)["img_id"]) for i in range(len(dataset))]
        for metric in loop.evaluator.metrics:
            if not isinstance(metric, CocoMetric) or getattr(metric, "_sepc_counting", False):
                continue
            if metric._coco_api is not None and len(ids) < len(metric._coco_api.get_img_ids()):
                metric.img_ids = ids
            compute = metric.compute_metrics

            def counted(results, _compute=compute):
                self.val_images = len(results)
                # CocoMetric keeps (ground truth, prediction) pairs, one per image
                self.val_unique_images = len({int(r[-1]["img_id"]) for r in results})
                return _compute(results)

            metric.compute_metrics, metric._sepc_counting = counted, True
