"""Latency of a local sweep's trained cells, timed together after training.

While a local sweep trains, every core is busy: a cell that timed itself then measured its
neighbour's training as much as its own model (the same model step read 35 and 12 ms in two
sweeps). So local jobs skip timing (bench/run/job.py), and once no cell trains any more, the done
cells of each (profile, detector) are rebuilt from their final checkpoints and timed round-robin
(A B C ... A B C ...) with ``bench.run.benchmark.interleaved``, the machinery of ``bench perf``:
a load change hits every variant alike, and round i of a variant pairs with round i of its
baseline.
Rows get ``latency_protocol = "interleaved"`` and the ``latency_group`` they were timed in; a
SLURM job still times itself on its own device (``"per-job"``).
"""
from __future__ import annotations

import contextlib
import io
import statistics
import sys
import time
from itertools import cycle
from pathlib import Path

from bench.cellstore import CellStore, now
from bench.plan.cells import Cell
from bench.plan.settings import load_profile
from reports.schema import LATENCY_INTERLEAVED, read_json


def _local_done(results: Path, profile: str, detector: str) -> list[tuple[Cell, dict]]:
    """Done, locally trained cells of one detector in the store (every variant and seed), with
    their rows."""
    out = []
    for path in sorted(results.glob(f"{detector}__*/result.json")):
        row = read_json(path) or {}
        if (row.get("status") == "done" and row.get("profile") == profile
                and row.get("detector") == detector and row.get("source") == "trained"
                and row.get("executor") == "local"):
            out.append((Cell(profile, detector, row["variant"], int(row["seed"])), row))
    return out


def untimed_groups(results: Path, cells: list[Cell]) -> list[tuple[str, str]]:
    """(profile, detector) of ``cells`` with a done local cell that has no interleaved timing."""
    return [(profile, detector)
            for profile, detector in dict.fromkeys((c.profile, c.detector) for c in cells)
            if any(row.get("latency_protocol") != LATENCY_INTERLEAVED
                   or row.get("latency_ms") is None
                   for _cell, row in _local_done(results, profile, detector))]


def _load(store: CellStore):
    """(fused model, validation dataset) of a cell, from the checkpoint its training ended with
    (its config included), quietly: the sweep's terminal shows progress, not loader chatter."""
    import logging

    from mmdet.registry import DATASETS, MODELS
    from mmengine.config import Config
    from mmengine.logging import MMLogger
    from mmengine.runner.checkpoint import CheckpointLoader

    from bench.run import latency

    pointer = store.work_dir / "last_checkpoint"
    if not pointer.is_file():
        raise FileNotFoundError(f"{store.cell.key}: no checkpoint in {store.work_dir} to time")
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints while indexing
            ckpt = CheckpointLoader.load_checkpoint(pointer.read_text().strip(),
                                                    map_location="cpu")
            cfg = Config.fromstring(ckpt["meta"]["cfg"], ".py")
            model = MODELS.build(cfg.model)
            model.load_state_dict(ckpt["state_dict"], strict=True)
            dataset = DATASETS.build(cfg.val_dataloader.dataset)
    finally:
        logger.setLevel(level)
    return latency.fuse_for_inference(model), dataset


def time_group(results: Path, profile_name: str, detector: str, progress=None) -> list[str]:
    """Time the group's done local cells interleaved; write their latency fields. Returns keys."""
    import torch
    from mmdet.utils import register_all_modules
    from mmengine.dataset import pseudo_collate

    import sepc  # noqa: F401  (registers the SEPC neck and heads)
    from bench.run import latency
    from bench.run.benchmark import interleaved

    register_all_modules(init_default_scope=True)
    lat = load_profile(profile_name).settings.latency
    size, warmup, rounds = lat.size, lat.warmup, lat.iters
    batch, skip, paper_rounds = lat.paper_batch, lat.paper_skip, lat.paper_iters
    cells = [cell for cell, _row in _local_done(results, profile_name, detector)]
    step, paper, inputs_of = {}, {}, {}
    per_batch: dict[str, list[int]] = {}

    def paper_call(model, batches, sizes: list[int]) -> None:
        data = next(batches)  # loading and decoding included, as in the paper's protocol
        sizes.append(len(data["inputs"]))
        model.test_step(data)

    for cell in cells:
        if progress is not None:
            progress.set_postfix_str(f"{detector}: loading {cell.variant}")
        model, dataset = _load(CellStore(results, cell))
        inputs, samples = latency.fixed_batch(model, pseudo_collate([dataset[0]]), size)
        batches = cycle(latency.paper_loader(dataset, batch))
        sizes = per_batch.setdefault(cell.key, [])
        step[cell.key] = lambda m=model, i=inputs, s=samples: m.predict(i, s, rescale=True)
        paper[cell.key] = lambda m=model, b=batches, n=sizes: paper_call(m, b, n)
        inputs_of[cell.key] = inputs
    device = torch.device("cpu")
    group = f"{profile_name}/{detector}@{now()}"
    with torch.inference_mode():
        if progress is not None:
            progress.set_postfix_str(f"{detector}: model step, {len(cells)} cells interleaved")
        step_times = interleaved(step, warmup, rounds, device, progress)
        if progress is not None:
            progress.set_postfix_str(f"{detector}: batch-{batch} protocol")
        paper_times = interleaved(paper, skip, paper_rounds, device, progress)
    for cell in cells:
        timed = paper_times[cell.key]
        per_image = [t / n for t, n in zip(timed, per_batch[cell.key][-len(timed):])]
        CellStore(results, cell).write(
            **latency.step_row(step_times[cell.key], inputs_of[cell.key]),
            latency_paper_ms=statistics.fmean(per_image), latency_paper_batch=batch,
            latency_paper_iters=paper_rounds, latency_protocol=LATENCY_INTERLEAVED,
            latency_group=group,
            latency_timed_at=now(), device=latency.device_name(device))
    return [c.key for c in cells]


def time_local(results: Path, cells: list[Cell], show_progress: bool = True) -> None:
    """Time every (profile, detector) of ``cells`` whose done local cells lack an interleaved
    timing, one group after another, with the profile's threads per cell. A group that cannot
    be timed is an ``error:`` line; its rows keep no latency and the next run retries it."""
    groups = untimed_groups(results, cells)
    if not groups:
        return
    import torch
    from tqdm import tqdm

    saved = torch.get_num_threads()
    tty = sys.stderr.isatty()
    try:
        for profile_name, detector in groups:
            threads = load_profile(profile_name).settings.threads or saved
            torch.set_num_threads(threads)
            t0 = time.time()
            with tqdm(desc=f"timing {detector}", unit="call", disable=not (show_progress and tty),
                      file=sys.stderr) as bar:
                try:
                    keys = time_group(results, profile_name, detector, bar)
                except Exception as exc:  # noqa: BLE001 - reported, the sweep's results stay
                    print(f"error: timing {profile_name}/{detector} failed: {type(exc).__name__}:"
                          f" {exc}", file=sys.stderr)
                    continue
            if show_progress:
                print(f"timed {len(keys)} {detector} cells interleaved in "
                      f"{time.time() - t0:.0f} s", file=sys.stderr)
    finally:
        torch.set_num_threads(saved)
