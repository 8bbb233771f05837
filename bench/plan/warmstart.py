"""Which warm start a smoke cell starts from: the cache entry's key, its ``synthetic://<key>``
name in the config, and whether this machine has it. Building it is bench/run/pretrain.py's.

The paper starts every cell from an ImageNet-pretrained backbone; the smoke profile has no such
download, and its heads cannot learn from a random backbone within a CPU budget. So a profile may
name a warm start (``pretrained='synthetic://'`` plus a ``warmstart`` dict): one detector of the
matrix is trained on the profile's own training split (never the validation split), and its
backbone and FPN weights become the start of every cell, as ImageNet weights are for the paper.

The entry is keyed by everything that decides its weights: the config it trains with (built
without starting weights, bench/plan/config.py; absolute paths left out), the generator's knobs,
the source of the code that trains it and of the generator, and the library versions. A second
sweep on the same machine reuses it; any change trains a new one. Cells reference the entry as
``synthetic://<key>``, so configs stay free of machine paths (``bench config`` output is
portable and the config hash is the same everywhere).
"""
from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path

from bench.plan.cells import Cell
from bench.plan.config import build_config
from bench.plan.options import Options
from bench.plan.settings import WarmStart, load_profile
from bench.plan.weights import SYNTHETIC, PretrainedError
from bench.repo import REPO

#: $SEPC_BENCH_CACHE/pretrained, default ~/.cache/sepc-bench/pretrained (beside the mmcv wheels).
CACHE_ENV = "SEPC_BENCH_CACHE"
#: The code that trains an entry (its config is hashed resolved, above).
CODE = ("bench/run/pretrain.py", "bench/data/synthetic.py")
#: Digests of CODE whose training is the same as the one entries were keyed by before: a move
#: of the code that changes no weight (here: bench/warmstart.py and bench/synthetic.py into
#: their rooms) maps its digest to the earlier one, so cached entries, and the config hash of
#: every cell that names one, stay valid. Any other edit of CODE gives a digest not listed: a
#: new entry, as before.
SAME_TRAINING: dict[str, str] = {
    "8f7705f9a9feeb16a48f2add8767997e05458317507390881d81b88d8f10c136":
        "3c6d756a9b4722ab5d14877130df739910ad75bc9c9cca6de0fcf1ab003caa52",
}


class WarmStartError(PretrainedError):
    """A warm start that cannot be had or used; the message says which and what to do."""


def cache_root() -> Path:
    """Where this machine keeps its warm starts."""
    base = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "sepc-bench"
    return Path(base).expanduser() / "pretrained"


def settings(profile_name: str) -> WarmStart:
    """The profile's warm-start settings, or a WarmStartError saying it has none."""
    ws = load_profile(profile_name).settings.warmstart
    if ws is None:
        raise WarmStartError(f"profile {profile_name!r} defines no warm start (a `warmstart` "
                             "dict in its bench settings); pass --pretrained PATH or none")
    return ws


def training_config(profile_name: str, iters: int | None = None):
    """The config the warm start trains with: the profile's ``warmstart`` detector x variant at
    ``iters`` iterations (default: the profile's), from scratch, with no validation loop, so the
    validation split is never read."""
    ws = settings(profile_name)
    iters = int(iters or ws.iters)
    cfg = build_config(Cell(profile_name, ws.detector, ws.variant, ws.seed),
                       Options(max_iters=iters))
    cfg.model.backbone.init_cfg = None  # from scratch
    cfg.merge_from_dict(dict(model=ws.model))  # e.g. nothing frozen from scratch
    for name in ("val_dataloader", "val_cfg", "val_evaluator", "test_dataloader", "test_cfg",
                 "test_evaluator"):
        cfg[name] = None
    cfg.train_cfg.pop("val_interval", None)
    cfg.default_hooks.checkpoint = None  # the weights are saved once, at the end
    cfg.default_hooks.logger = dict(type="LoggerHook", interval=50)
    cfg.custom_hooks = []
    cfg.log_level = "WARNING"
    return cfg


#: What decides which pyramid level an FPN's weights belong to (mmdet's FPN defaults).
_FPN_LEVELS = dict(in_channels=None, out_channels=None, start_level=0, end_level=-1,
                   num_outs=None)


def _fpn_levels(model) -> str:
    """The levels the model's FPN (the first neck) builds, as canonical text."""
    neck = model.neck
    fpn = neck[0] if isinstance(neck, list) else neck
    return json.dumps({k: fpn.get(k, v) for k, v in _FPN_LEVELS.items()}, default=str)


@lru_cache(maxsize=16)
def _warm_levels(profile_name: str) -> str:
    return _fpn_levels(training_config(profile_name).model)


def fits_neck(profile_name: str, cfg) -> bool:
    """Whether a cell's FPN builds the warm start's levels (the same inputs, start, count and
    width), so that it starts from the warm start's FPN weights too; an extra level built from
    another input (ATSS's and FCOS's from P5, RetinaNet's from C5) has another shape, which the
    loader skips with a warning. An FPN of other levels (Faster R-CNN's P2-P6) would take
    weights of other levels under the same names: it starts from its initialiser, as every FPN
    of the paper profile does, and only its backbone from the warm start."""
    return _fpn_levels(cfg.model) == _warm_levels(profile_name)


def code_digest() -> str:
    """sha256 of CODE (file names and bytes), as :data:`SAME_TRAINING` maps it."""
    h = hashlib.sha256()
    for rel in CODE:
        h.update(rel.encode() + b"\0" + (REPO / rel).read_bytes())
    digest = h.hexdigest()
    return SAME_TRAINING.get(digest, digest)


@lru_cache(maxsize=16)
def recipe(profile_name: str, iters: int | None) -> tuple[str, str]:
    """(key, recipe JSON) of the profile's warm start at ``iters`` iterations."""
    cfg = training_config(profile_name, iters)
    data_root = str(cfg.train_dataloader.dataset.data_root)
    # Paths say where, not what: the generator's knobs below say what the data is.
    text = json.dumps({k: v for k, v in cfg.to_dict().items() if k != "work_dir"},
                      sort_keys=True, default=str).replace(data_root, "<data>")
    blob = json.dumps(dict(config=text, data=load_profile(profile_name).settings.data,
                           code=code_digest(),
                           versions=[version("torch"), version("mmdet"), version("mmengine")]),
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16], blob


def key(profile_name: str, iters: int | None = None) -> str:
    """The cache key of the profile's warm start (cheap after the first call)."""
    return recipe(profile_name, iters)[0]


def uri(profile_name: str) -> str:
    """What a cell's config names as its checkpoint: ``synthetic://<key>``."""
    return SYNTHETIC + key(profile_name)


def paths(k: str, root: Path | None = None) -> tuple[Path, Path]:
    """(weights, metadata) of an entry; the metadata file is the commit marker."""
    root = root or cache_root()
    return root / f"{k}.pth", root / f"{k}.json"


def check_entry(k: str, root: Path | None = None) -> str | None:
    """None when the entry is complete and intact, else why it is not usable."""
    from bench.cellstore import sha256_file
    from reports.schema import read_json

    weights, meta_path = paths(k, root)
    meta = read_json(meta_path)
    if meta is None:
        return "not built" if not weights.exists() else "no metadata (an interrupted build)"
    if not weights.is_file():
        return "weights file missing"
    if meta.get("key") != k or meta.get("sha256") != sha256_file(weights):
        return "weights do not match their recorded sha256 (corrupt or partial)"
    return None
