"""The smoke profile's analogue of ImageNet weights: a backbone + FPN trained once on the
synthetic TRAINING split and cached per machine, outside the repository.

The paper starts every cell from an ImageNet-pretrained backbone; the smoke profile has no such
download, and its heads cannot learn from a random backbone within a CPU budget. So a profile may
name a warm start (``pretrained='synthetic://'`` plus a ``warmstart`` dict): one detector of the
matrix is trained on the profile's own training split (never the validation split), and its
backbone and FPN weights become the start of every cell, as ImageNet weights are for the paper.
Every cell then loads the same file (``backbone.*`` into the backbone, ``neck.*`` into the FPN,
which each variant has unchanged before its SEPC part); heads start from their usual init.

The entry is keyed by everything that decides its weights: the resolved training config (model,
data pipeline, optimiser, schedule; absolute paths left out), the generator's knobs, the source of
this module and of the generator, and the library versions. A second sweep on the same machine
reuses it; any change trains a new one. Concurrent cells and jobs are safe: the first one to need
an entry trains it under an exclusive file lock while the others wait, and an entry is committed
by writing its metadata (with the weights' sha256) only after the weights were renamed into place.
An entry without metadata, or whose weights do not match it, is never loaded and is retrained.

Cells reference the entry as ``synthetic://<key>``, a checkpoint scheme registered with mmengine
here, so configs stay free of machine paths (``bench config`` output is portable and the config
hash is the same everywhere). ``python -m bench.warmstart`` builds (or checks) it ahead of time.
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import platform
import shutil
import sys
import time
from functools import lru_cache
from pathlib import Path

from mmengine.hooks import Hook

from .pretrained import SYNTHETIC as SCHEME
from .pretrained import PretrainedError
from .store import REPO, atomic_write_json, now, read_json, sha256_file

#: $SEPC_BENCH_CACHE/pretrained, default ~/.cache/sepc-bench/pretrained (beside the mmcv wheels).
CACHE_ENV = "SEPC_BENCH_CACHE"
#: Sources whose code trains the entry (the config itself is hashed resolved).
CODE = ("bench/warmstart.py", "bench/synthetic.py")
#: What a cell takes from the warm start: module prefix in the trained detector.
PARTS = ("backbone.", "neck.")


class WarmStartError(PretrainedError):
    """A warm start that cannot be had or used; the message says which and what to do."""


def cache_root() -> Path:
    base = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "sepc-bench"
    return Path(base).expanduser() / "pretrained"


def _settings(profile_name: str) -> dict:
    from .configs import load_profile

    ws = load_profile(profile_name).settings.get("warmstart")
    if not ws:
        raise WarmStartError(f"profile {profile_name!r} defines no warm start (a `warmstart` "
                             "dict in its bench settings); pass --pretrained PATH or none")
    return ws


def training_config(profile_name: str, iters: int | None = None):
    """The config the warm start trains with: the profile's ``warmstart`` detector x variant at
    ``iters`` iterations (default: the profile's), from scratch, with no validation loop, so the
    validation split is never read."""
    from .configs import Options, resolve
    from .matrix import Cell
    from .pretrained import NONE

    ws = _settings(profile_name)
    iters = int(iters or ws["iters"])
    cfg = resolve(Cell(profile_name, ws["detector"], ws["variant"], int(ws.get("seed", 0))),
                  Options(pretrained=NONE, max_iters=iters))
    cfg.merge_from_dict(dict(model=ws.get("model", {})))  # e.g. nothing frozen from scratch
    for name in ("val_dataloader", "val_cfg", "val_evaluator", "test_dataloader", "test_cfg",
                 "test_evaluator"):
        cfg[name] = None
    cfg.train_cfg.pop("val_interval", None)
    cfg.default_hooks.checkpoint = None  # the weights are saved once, at the end, below
    cfg.default_hooks.logger = dict(type="LoggerHook", interval=50)
    cfg.custom_hooks = []
    cfg.log_level = "WARNING"
    return cfg


def _code_digest() -> str:
    h = hashlib.sha256()
    for rel in CODE:
        h.update(rel.encode() + b"\0" + (REPO / rel).read_bytes())
    return h.hexdigest()


@lru_cache(maxsize=16)
def _key_cached(profile_name: str, iters: int | None) -> tuple[str, str]:
    import mmdet
    import mmengine
    import torch

    from .configs import load_profile

    cfg = training_config(profile_name, iters)
    data_root = str(cfg.train_dataloader.dataset.data_root)
    # Paths say where, not what: the generator's knobs below say what the data is.
    text = json.dumps({k: v for k, v in cfg.to_dict().items() if k != "work_dir"},
                      sort_keys=True, default=str).replace(data_root, "<data>")
    recipe = dict(config=text, data=load_profile(profile_name).settings.get("data"),
                  code=_code_digest(), versions=[torch.__version__, mmdet.__version__,
                                                 mmengine.__version__])
    blob = json.dumps(recipe, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16], blob


def key(profile_name: str, iters: int | None = None) -> str:
    """The cache key of the profile's warm start (cheap after the first call)."""
    return _key_cached(profile_name, iters)[0]


def uri(profile_name: str) -> str:
    """What a cell's config names as its checkpoint: ``synthetic://<key>``."""
    return SCHEME + key(profile_name)


def paths(k: str, root: Path | None = None) -> tuple[Path, Path]:
    """(weights, metadata) of an entry; the metadata file is the commit marker."""
    root = root or cache_root()
    return root / f"{k}.pth", root / f"{k}.json"


def check_entry(k: str, root: Path | None = None) -> str | None:
    """None when the entry is complete and intact, else why it is not usable."""
    weights, meta_path = paths(k, root)
    meta = read_json(meta_path)
    if meta is None:
        return "not built" if not weights.exists() else "no metadata (an interrupted build)"
    if not weights.is_file():
        return "weights file missing"
    if meta.get("key") != k or meta.get("sha256") != sha256_file(weights):
        return "weights do not match their recorded sha256 (corrupt or partial)"
    return None


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

    from .configs import plain_text

    cfg = plain_text(training_config(profile_name, iters))
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
            ws = _settings(profile_name)
            echo(f"[sepc-bench] building the {profile_name} warm start {k} ({why}): "
                 f"{ws['detector']}/{ws['variant']} for {iters or ws['iters']} iterations on "
                 f"the synthetic training split, once per machine, cached in {root}")
            meta_path.unlink(missing_ok=True)  # uncommitted while the weights change
            for stale in root.glob(f".{k}.*"):  # what a killed build left; the lock is ours
                shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
            info = _train(profile_name, iters, weights, threads)
            atomic_write_json(meta_path, dict(
                key=k, sha256=sha256_file(weights), profile=profile_name, created_at=now(),
                host=platform.node(), recipe=json.loads(_key_cached(profile_name, iters)[1]),
                **info))
            echo(f"[sepc-bench] warm start {k} built in {info['train_s']:.0f} s "
                 f"(final loss {info['final_loss']})")
            return weights
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def threads(profile_name: str) -> int:
    """Threads a warm start trains with: the profile's per cell (one for smoke). More threads
    than free cores made every OpenMP step wait for a descheduled thread: on a shared 2-core
    machine a 2-thread build took over 3x the CPU time of a 1-thread one."""
    from .configs import load_profile

    return int(load_profile(profile_name).settings.get("threads") or 1)


def prepare(cells, opts) -> None:
    """Before a local sweep: build the warm starts its cells need, once, before any cell starts
    (the cells would otherwise wait for it in turn)."""
    from .configs import load_profile
    from .pretrained import check_pretrained

    for name in dict.fromkeys(c.profile for c in cells if c.source == "trained"):
        spec = opts.pretrained or load_profile(name).settings.get("pretrained")
        if check_pretrained(spec) == SCHEME:
            ensure(name, threads=threads(name))


def load_entry(filename: str, map_location=None) -> dict:
    """mmengine checkpoint loader for ``synthetic://<key>``: the entry, checked before use."""
    import torch

    k = filename[len(SCHEME):]
    why = check_entry(k)
    if why is not None:
        raise WarmStartError(f"warm start {k} in {cache_root()} is not usable ({why}); build it "
                             "with `python -m bench.warmstart` (a sweep builds it itself)")
    return torch.load(paths(k)[0], map_location=map_location, weights_only=True)


def _register() -> None:
    from mmengine.runner.checkpoint import CheckpointLoader

    CheckpointLoader.register_scheme(prefixes=SCHEME, loader=load_entry, force=True)


_register()


def main(argv: list[str] | None = None) -> int:
    from .configs import profiles

    p = argparse.ArgumentParser(prog="python -m bench.warmstart", description="Build (or check) "
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
    print(ensure(args.profile, threads=args.threads or threads(args.profile)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
