"""mmengine hooks the harness adds to every cell: live progress, read by ``bench status`` and the
local progress bar, and the count of iterations this cell really executed (across requeues)."""
from __future__ import annotations

import os
import time
from pathlib import Path

from mmengine.hooks import Hook
from mmdet.registry import HOOKS

from .store import atomic_write_json, read_json


@HOOKS.register_module()
class CellProgressHook(Hook):
    """Writes ``<cell>/progress.json``: phase, iteration, max iterations, iterations run."""

    priority = "VERY_LOW"

    def __init__(self, interval: int = 5) -> None:
        self.interval = interval
        self._path: Path | None = None
        self._run_before = 0
        self._run_now = 0
        self._last = 0.0
        self.last_metrics: dict | None = None
        self.last_val_iter = -1

    def before_run(self, runner) -> None:
        self._path = Path(os.environ.get("SEPC_CELL_DIR", runner.work_dir)) / "progress.json"
        self._run_before = int((read_json(self._path) or {}).get("iters_run", 0))

    def _write(self, runner, phase: str, force: bool = False) -> None:
        if self._path is None or (not force and time.monotonic() - self._last < 1.0):
            return
        self._last = time.monotonic()
        atomic_write_json(self._path, dict(
            phase=phase, iter=runner.iter, max_iters=runner.max_iters, epoch=runner.epoch,
            iters_run=self._run_before + self._run_now, time=time.time()))

    def before_train(self, runner) -> None:
        self._write(runner, "train", force=True)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self._run_now += 1
        if self.every_n_train_iters(runner, self.interval) or runner.iter + 1 >= runner.max_iters:
            self._write(runner, "train")

    def after_train(self, runner) -> None:
        self._write(runner, "trained", force=True)

    def before_val(self, runner) -> None:
        self._write(runner, "val", force=True)

    def after_val_epoch(self, runner, metrics=None) -> None:
        self.last_metrics, self.last_val_iter = dict(metrics or {}), runner.iter

    def before_test(self, runner) -> None:
        self._write(runner, "test", force=True)
