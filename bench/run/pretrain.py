"""Building the smoke warm start (bench/plan/warmstart.py says which one a cell needs), and
fetching any cell's starting weights in its job.

The warm start is a backbone + FPN trained once on the profile's synthetic TRAINING split and
cached per machine, outside the repository; every cell loads the same file (``backbone.*`` into
the backbone, ``neck.*`` into the FPN, which each variant has unchanged before its SEPC part);
heads start from their usual init. Concurrent cells and jobs are safe: the first one to need an
entry trains it under an exclusive file lock while the others wait, and an entry is committed
by writing its metadata (with the weights' sha256) only after the weights were renamed into
place. An entry without metadata, or whose weights do not match it, is never loaded and is
retrained. ``synthetic://<key>`` is a checkpoint scheme registered with mmengine here.
``python -m bench.run.pretrain`` builds (or checks) it ahead of time.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from mmengine.hooks import Hook

from bench.cellstore import now, sha256_file
from bench.plan import warmstart
from bench.plan.config import plain_text
from bench.plan.settings import load_profile, profiles
from bench.plan.warmstart import WarmStartError, cache_root, check_entry, key, paths, recipe
from bench.plan.weights import SYNTHETIC, TORCHVISION_URLS, PretrainedError, check_pretrained
from reports.schema import atomic_write_json

#: What a cell takes from the warm start: module prefix in the trained detector.
PARTS = ("backbone.", "neck.")


class _Progress(Hook):
    """A progress bar over the warm start's iterations (the runner logs warnings only)."""

    priority = "VERY_LOW"

    def before_train(self, runner) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=runner.max_iters, desc="warm start", unit="it", file=sys.stderr,
                        disable=not sys.stderr.isatty(), mininterval=1.0)

    def after_train_iter(self, runner, *args, **kwargs) -> None:
        self.bar.update(1)

    def after_train(self, runner) -> None:
        self.bar.close()


def _detach_file_handlers(folder: Path) -> None:
    """Close and drop the current logger's handlers of log files in ``folder``: the build's
    folder is deleted next, and its logger stays mmengine's *current* one, whose file handlers
    every later ``init_weights`` in this process writes to directly (a closed one there is an
    AttributeError)."""
    import logging

    from mmengine.logging import MMLogger

    logger, folder = MMLogger.get_current_instance(), folder.resolve()
    for handler in [h for h in logger.handlers if isinstance(h, logging.FileHandler)
                    and Path(h.baseFilename).resolve().is_relative_to(folder)]:
        logger.removeHandler(handler)
        handler.close()


def _train(profile_name: str, iters: int | None, weights: Path, threads: int | None) -> dict:
    """Train the warm-start detector and write its backbone + FPN state dict to ``weights``."""
    import torch
    from mmengine.runner import Runner

    import sepc  # noqa: F401  (the config's custom_imports, for a config built in code)

    cfg = plain_text(warmstart.training_config(profile_name, iters))
    work = weights.with_name(f".{weights.stem}.work-{os.getpid()}")
    cfg.work_dir = str(work)
    # mmengine keeps one logger and visualizer per name (the start's second; mmdet's configs
    # name theirs "visualizer"): a second build in one process would reuse the first's, which
    # write into its deleted folder. Names of their own keep each build apart.
    cfg.experiment_name = cfg.visualizer.name = f"warmstart-{weights.stem}-{time.time_ns()}"
    saved_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    t0 = time.time()
    try:
        runner = Runner.from_cfg(cfg)
        runner.register_hook(_Progress(), "VERY_LOW")
        runner.train()
        loss = runner.message_hub.get_scalar("train/loss").current()
        state = {k: v.detach().cpu().clone() for k, v in runner.model.state_dict().items()
                 if k.startswith(PARTS)}
    finally:
        torch.set_num_threads(saved_threads)
        _detach_file_handlers(work)
        shutil.rmtree(work, ignore_errors=True)
    tmp = weights.with_name(f".{weights.name}.{os.getpid()}.tmp")
    try:
        torch.save(dict(state_dict=state, meta=dict(key=weights.stem)), tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, weights)
    finally:
        tmp.unlink(missing_ok=True)
    return dict(train_s=round(time.time() - t0, 1), final_loss=round(float(loss), 4),
                threads=threads or saved_threads, iters=int(runner.iter), tensors=len(state))


def ensure(profile_name: str, iters: int | None = None, threads: int | None = None,
           echo=print) -> Path:
    """The warm start's weights file, trained first if this machine has no intact entry.

    Several processes may call this at once: one trains under the entry's lock, the others wait
    for it and then use its result. ``iters`` overrides the profile's (tests use a few)."""
    k = key(profile_name, iters)
    root = cache_root()
    weights, meta_path = paths(k, root)
    if check_entry(k, root) is None:
        return weights
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{k}.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            echo(f"[sepc-bench] waiting for another process to build the warm start {k}")
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            why = check_entry(k, root)
            if why is None:  # built by the process we waited for
                return weights
            ws = warmstart.settings(profile_name)
            echo(f"[sepc-bench] building the {profile_name} warm start {k} ({why}): "
                 f"{ws.detector}/{ws.variant} for {iters or ws.iters} iterations on "
                 f"the synthetic training split, once per machine, cached in {root}")
            meta_path.unlink(missing_ok=True)  # uncommitted while the weights change
            for stale in root.glob(f".{k}.*"):  # what a killed build left; the lock is ours
                shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
            info = _train(profile_name, iters, weights, threads)
            atomic_write_json(meta_path, dict(
                key=k, sha256=sha256_file(weights), profile=profile_name, created_at=now(),
                host=platform.node(), recipe=json.loads(recipe(profile_name, iters)[1]),
                **info))
            echo(f"[sepc-bench] warm start {k} built in {info['train_s']:.0f} s "
                 f"(final loss {info['final_loss']})")
            return weights
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def prepare(plans: list) -> None:
    """Before a local sweep: build the warm starts its cells need, once, before any cell starts
    (the cells would otherwise wait for it in turn)."""
    needed = {p.cell.profile: p.settings.threads for p in plans if p.trains
              and check_pretrained(p.opts.pretrained or p.settings.pretrained) == SYNTHETIC}
    for name, threads in needed.items():
        ensure(name, threads=threads)


def _hub_file(url: str) -> Path:
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def fetch_pretrained(spec: str | None, profile: str) -> str | None:
    """In the job: a local file for the weights (downloaded into torch's hub cache if needed).

    ``synthetic://``: the warm start is built if this machine lacks it (under a lock, once) and
    None is returned, as the config already names it."""
    spec = check_pretrained(spec)
    if spec == SYNTHETIC:
        ensure(profile)
        return None
    if not spec or Path(spec).is_file():
        return spec
    url = TORCHVISION_URLS[spec.split("://", 1)[1]] if spec.startswith("torchvision://") else spec
    target = _hub_file(url)
    if target.is_file():
        return str(target)
    import torch.hub

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(target), progress=False)
    except Exception as exc:  # noqa: BLE001 - any network failure means the same to the user
        raise PretrainedError(
            f"cannot download backbone weights {spec} ({url}: {type(exc).__name__}: {exc}); "
            f"on a machine without network pass --pretrained /path/to/{os.path.basename(url)}"
        ) from None
    return str(target)


def load_entry(filename: str, map_location=None) -> dict:
    """mmengine checkpoint loader for ``synthetic://<key>``: the entry, checked before use."""
    import torch

    k = filename[len(SYNTHETIC):]
    why = check_entry(k)
    if why is not None:
        raise WarmStartError(f"warm start {k} in {cache_root()} is not usable ({why}); build it "
                             "with `python -m bench.run.pretrain` (a sweep builds it itself)")
    return torch.load(paths(k)[0], map_location=map_location, weights_only=True)


def _register() -> None:
    from mmengine.runner.checkpoint import CheckpointLoader

    CheckpointLoader.register_scheme(prefixes=SYNTHETIC, loader=load_entry, force=True)


_register()


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.run.pretrain``: build or check a profile's warm start."""
    p = argparse.ArgumentParser(prog="python -m bench.run.pretrain", description="Build (or check) "
                                "a profile's warm start: the backbone + FPN its cells start from.")
    p.add_argument("--profile", default="smoke", choices=profiles())
    p.add_argument("--threads", type=int, help="torch threads (default: the profile's per cell)")
    p.add_argument("--check", action="store_true", help="only say whether it is built")
    args = p.parse_args(argv)
    try:
        k = key(args.profile)
    except WarmStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        why = check_entry(k)
        print(f"{k}: {why or 'built'} ({paths(k)[0]})")
        return 0 if why is None else 1
    print(ensure(args.profile,
                 threads=args.threads or load_profile(args.profile).settings.threads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
