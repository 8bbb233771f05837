"""Resolve a cell to the mmengine Config it trains with: detector _base_ + profile delta + variant.

One function, ``resolve``, so that ``plan``, ``run`` and ``config`` all see the same config and
the same hash. The variant is applied last and in code, because it changes the structure (the
neck becomes the list [FPN, SEPC], the head becomes its SEPC subclass) rather than values.
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from experiments import ROOT as EXPERIMENTS
from reports.schema import COCO_METRIC_ITEMS

from .conventions import apply_conventions, check_conventions
from .data import Dataset, ensure_synthetic, open_coco_root
from .matrix import DETECTORS, VARIANTS, Cell, MatrixError
from .pretrained import apply_pretrained

PROFILES_DIR = EXPERIMENTS / "profiles"


def profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.py") if not p.stem.startswith("_"))


@dataclass(frozen=True)
class Options:
    """What the command line changes about a profile (each part of the config hash), and where
    released cells find their checkpoints (``--from-checkpoints DIR``, ``--manifest FILE``).

    ``nodes``, ``tasks_per_node`` and ``gpus_per_node`` override the profile's training layout
    (one process per device; see :func:`layout`). ``pilot_iters`` makes a pilot of the cell: the
    same model, data pipeline, batch per device and layout, trained that many iterations and
    evaluated on the first ``val_images`` validation images.
    """

    data_root: str | None = None
    pretrained: str | None = None
    lcconv_padding: int | None = None
    max_iters: int | None = None
    checkpoints: str | None = None
    manifest: str | None = None
    nodes: int | None = None
    tasks_per_node: int | None = None
    gpus_per_node: int | None = None
    pilot_iters: int | None = None
    val_images: int | None = None
    log: tuple[str, ...] = ()  # extra training-curve backends (LOG_BACKENDS), off by default


#: ``--log`` names -> mmengine visualisation backend and the package it needs. Offline, into the
#: cell's folder: TensorBoard event files under work_dir/<run>/vis_data, an MLflow SQLite
#: database work_dir/mlflow.db with its artifacts in work_dir/mlruns (mlflow's file store is
#: deprecated).
LOG_BACKENDS: dict[str, tuple[str, str]] = {
    "tensorboard": ("TensorboardVisBackend", "tensorboard"),
    "mlflow": ("MLflowNamedVisBackend", "mlflow"),  # sepc/engine.py: names MLflow accepts
}


def check_log(names: tuple[str, ...]) -> tuple[str, ...]:
    """``--log`` values, each known and importable, else one MatrixError line."""
    import importlib.util

    for name in names:
        if name not in LOG_BACKENDS:
            raise MatrixError(f"unknown --log backend {name!r} (known: {', '.join(LOG_BACKENDS)})")
        if importlib.util.find_spec(LOG_BACKENDS[name][1]) is None:
            raise MatrixError(f"--log {name} needs the {LOG_BACKENDS[name][1]} package, which is "
                              "not installed (make setup installs it)")
    return names


def _apply_log(cfg, cell: Cell, names: tuple[str, ...]) -> None:
    """The ``--log`` backends beside mmengine's own local one (the report reads that one)."""
    for name in names:
        backend = dict(type=LOG_BACKENDS[name][0])
        if name == "mlflow":  # tracking and artifacts in the cell's work_dir, never the cwd
            work = Path(cfg.work_dir).resolve()
            backend.update(exp_name=f"sepc-bench-{cell.profile}", run_name=cell.key,
                           tracking_uri=f"sqlite:///{work}/mlflow.db",
                           artifact_location=str(work / "mlruns"), artifact_suffix=())
        cfg.visualizer.vis_backends.append(backend)


@dataclass
class Profile:
    name: str
    settings: dict
    delta: dict = field(repr=False)

    @property
    def lcconv_padding(self) -> int:
        return int(self.settings.get("lcconv_padding", 0))

    @property
    def conventions(self) -> str:
        """``mmdet1`` (the authors' box conventions) or ``mmdet3`` (bench.conventions)."""
        return check_conventions(self.settings.get("conventions", "mmdet3"))

    def base(self, detector: str) -> Path:
        """The detector's ``_base_`` config: its own, or the one the profile names for it."""
        name = self.settings.get("bases", {}).get(detector, detector)
        path = EXPERIMENTS / "_base_" / f"{name}.py"
        if not path.is_file():
            raise MatrixError(f"profile {self.name!r}: no base config {name!r} for {detector} "
                              f"(experiments/_base_/{name}.py)")
        return path


@lru_cache(maxsize=16)
def _load_profile_cached(name: str) -> Profile:
    from mmengine.config import Config

    path = PROFILES_DIR / f"{name}.py"
    if not path.is_file():
        raise MatrixError(f"unknown profile {name!r} (known: {', '.join(profiles())})")
    delta = Config.fromfile(str(path)).to_dict()
    settings = delta.pop("bench", {})
    return Profile(name, settings, delta)


def load_profile(name: str) -> Profile:
    p = _load_profile_cached(name)
    return Profile(p.name, copy.deepcopy(p.settings), copy.deepcopy(p.delta))


def cell_profile(cell: Cell) -> Profile:
    """The profile a cell runs under: a released cell's settings are overridden by the
    profile's ``released`` dict (one device, its own time limit, image size, ...)."""
    profile = load_profile(cell.profile)
    overrides = profile.settings.pop("released", {})
    if cell.source == "released":
        profile.settings.update(overrides)
    return profile


def cell_conventions(cell: Cell) -> str:
    """The box conventions a cell is built in: the authors' checkpoints were trained in mmdet
    1.1's, whatever the profile's."""
    return "mmdet1" if cell.source == "released" else cell_profile(cell).conventions


def dataset_for(profile: Profile, opts: Options, need_train: bool = True) -> Dataset:
    """The profile's data: the user's COCO-layout root if given, else the profile's own."""
    if opts.data_root:
        return open_coco_root(opts.data_root, need_train)
    data = profile.settings.get("data", {})
    if data.get("kind") == "synthetic":
        return ensure_synthetic(data)
    raise MatrixError(f"profile {profile.name!r} needs --data-root DIR (a COCO 2017 folder: "
                      f"annotations/instances_{{train,val}}2017.json, train2017/, val2017/; "
                      f"evaluating released checkpoints needs only the val2017 half)")


@dataclass(frozen=True)
class Layout:
    """How one cell trains: ``nodes`` x ``tasks_per_node`` processes (DDP, one per device), each
    with ``imgs_per_device`` images; ``gpus_per_node`` is what the job asks SLURM for (0: CPU)."""

    nodes: int
    tasks_per_node: int
    gpus_per_node: int
    imgs_per_device: int

    @property
    def world_size(self) -> int:
        return self.nodes * self.tasks_per_node

    @property
    def total_batch(self) -> int:
        return self.world_size * self.imgs_per_device

    def describe(self) -> str:
        per_node = "GPUs" if self.gpus_per_node else "processes"
        return (f"{self.nodes} x {self.tasks_per_node} x {self.imgs_per_device}: nodes x "
                f"{per_node} per node x images per device")


def reference_batch(profile: Profile) -> int:
    """The total batch the profile's learning rate was set for."""
    s = profile.settings
    return int(s["fixed_batch"]) if "fixed_batch" in s else int(s.get("total_batch", 16))


def layout(cell: Cell, opts: Options = Options()) -> Layout:
    """The cell's training layout: the profile's (the paper's 8 GPUs x 2 images, or 4 x 4 with
    iBN; one device with a fixed batch for smoke and released cells), overridden by ``opts``.
    One task per GPU: asking for GPUs or for tasks sets the other to match."""
    profile = cell_profile(cell)
    s = profile.settings
    slurm = s.get("slurm", {})
    if "fixed_batch" in s:
        per_device, tasks, gpus = int(s["fixed_batch"]), 1, int(slurm.get("gpus_per_node", 1))
    else:
        per_device = VARIANTS[cell.variant].imgs_per_gpu
        tasks = gpus = int(s.get("total_batch", 16)) // per_device
    nodes = int(opts.nodes or slurm.get("nodes", 1))
    if cell.source == "released":
        if (opts.nodes or 1) > 1 or (opts.tasks_per_node or 1) > 1 or (opts.gpus_per_node or 1) > 1:
            raise MatrixError("released checkpoints are evaluated on one device: --nodes, "
                              "--tasks-per-node and --gpus-per-node above 1 do not apply")
        return Layout(1, 1, gpus, per_device)
    for flag, value in (("--nodes", opts.nodes), ("--tasks-per-node", opts.tasks_per_node),
                        ("--gpus-per-node", opts.gpus_per_node)):
        if value is not None and value < (0 if flag == "--gpus-per-node" else 1):
            raise MatrixError(f"{flag} {value}: must be at least "
                              f"{0 if flag == '--gpus-per-node' else 1}")
    t, g = opts.tasks_per_node, opts.gpus_per_node
    if t is not None and g is not None:
        if g and t != g:
            raise MatrixError(f"--tasks-per-node {t} with --gpus-per-node {g}: DDP runs one task "
                              "per GPU (give one of the two, or equal values)")
        tasks, gpus = t, g
    elif g is not None:
        tasks, gpus = (g if g else tasks), g
    elif t is not None:
        tasks, gpus = t, (t if gpus else 0)
    return Layout(nodes, tasks, gpus, per_device)


def scaled_lr(cell: Cell, opts: Options, base_lr: float) -> tuple[float, str | None]:
    """The learning rate for the cell's total batch, scaled linearly from the batch the profile's
    lr was set for, and a sentence saying so when it changed (None when it did not)."""
    profile = cell_profile(cell)
    lay, ref = layout(cell, opts), reference_batch(profile)
    if lay.total_batch == ref or cell.source == "released":
        return base_lr, None
    lr = base_lr * lay.total_batch / ref
    return lr, (f"{cell.key}: total batch {lay.total_batch} ({lay.describe()}) instead of the "
                f"profile's {ref}: lr scaled linearly {base_lr:g} -> {lr:g}")


def _pipelines(size: tuple[int, int] | None) -> tuple[list, list]:
    scale = tuple(size) if size else (1333, 800)
    train = [
        dict(type="LoadImageFromFile", backend_args=None),
        dict(type="LoadAnnotations", with_bbox=True),
        dict(type="Resize", scale=scale, keep_ratio=True),
        dict(type="RandomFlip", prob=0.5),
        dict(type="PackDetInputs"),
    ]
    test = [
        dict(type="LoadImageFromFile", backend_args=None),
        dict(type="Resize", scale=scale, keep_ratio=True),
        dict(type="LoadAnnotations", with_bbox=True),
        dict(type="PackDetInputs",
             meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor")),
    ]
    return train, test


def _apply_data(cfg, ds: Dataset, profile: Profile, batch: int, results_prefix: str | None):
    size = profile.settings.get("image_scale")
    if profile.settings.get("data", {}).get("kind") == "synthetic" or size:
        s = size or profile.settings["data"]["image_size"]
        size = (s, s) if isinstance(s, int) else tuple(s)
    train_pipe, test_pipe = _pipelines(size)
    metainfo = dict(classes=ds.classes)
    common = dict(type="CocoDataset", data_root=str(ds.root), metainfo=metainfo)
    workers = int(profile.settings.get("workers", 2))
    loader = dict(num_workers=workers, persistent_workers=workers > 0)
    cfg.train_dataloader.update(batch_size=batch, **loader)
    cfg.train_dataloader.dataset = dict(
        **common, ann_file="annotations/instances_train2017.json",
        data_prefix=dict(img="train2017/"),
        filter_cfg=dict(filter_empty_gt=True, min_size=int(profile.settings.get("min_size", 4))),
        pipeline=train_pipe)
    for name in ("val_dataloader", "test_dataloader"):
        cfg[name].update(batch_size=1, **loader)
        cfg[name].dataset = dict(
            **common, ann_file="annotations/instances_val2017.json",
            data_prefix=dict(img="val2017/"), test_mode=True, pipeline=test_pipe)
    for name in ("val_evaluator", "test_evaluator"):
        # collect_device "gpu" gathers the ranks' results through the process group (NCCL or
        # gloo alike); mmengine's "cpu" mode goes through a /tmp folder of rank 0, which the
        # other nodes of a multi-node job cannot see.
        cfg[name] = dict(type="CocoMetric", ann_file=str(ds.val_ann), metric="bbox",
                         format_only=False, metric_items=list(COCO_METRIC_ITEMS),
                         collect_device="gpu", classwise=True)
        if results_prefix:  # keep the detections (<prefix>.bbox.json) for the bootstrap
            cfg[name]["outfile_prefix"] = results_prefix
    cfg.model.bbox_head.num_classes = len(ds.classes)


def _apply_variant(cfg, cell: Cell, padding: int) -> None:
    variant = VARIANTS[cell.variant]
    if not variant.sepc:
        return
    fpn = cfg.model.neck
    width = fpn["out_channels"]
    cfg.model.neck = [fpn, dict(type="SEPC", in_channels=[width] * fpn["num_outs"],
                                out_channels=width, num_outs=fpn["num_outs"], Pconv_num=4,
                                lcconv_padding=padding, **variant.neck_args())]
    cfg.model.bbox_head.type = DETECTORS[cell.detector].sepc_head
    cfg.model.bbox_head.stacked_convs = 0


def _apply_test_pad(cfg, cell: Cell, profile: Profile) -> None:
    """A test-time padding multiple of the cell's own (``test_pad`` in the profile, keyed
    ``detector/variant``: the authors' FSAF baseline padded test images to 384, training to 32)."""
    divisor = profile.settings.get("test_pad", {}).get(f"{cell.detector}/{cell.variant}")
    if divisor:
        cfg.model.data_preprocessor.update(type="LegacyDetDataPreprocessor",
                                           test_pad_size_divisor=int(divisor))


def _apply_released(cfg) -> None:
    """Nothing trains: no train split, optimizer or schedule (mmengine takes all four as None).
    Classification channels need nothing: 1.x's sigmoid heads kept their order."""
    for name in ("train_dataloader", "train_cfg", "optim_wrapper", "param_scheduler"):
        cfg[name] = None


def _iteration_schedule(cfg, iters: int, val_interval: int, checkpoint_interval: int,
                        milestone: callable) -> None:
    """An ``iters``-iteration training; ``milestone`` maps each step milestone of the profile's
    schedule to an iteration of this one (warm-up ends at the latest at the last iteration)."""
    cfg.train_cfg = dict(type="IterBasedTrainLoop", max_iters=iters,
                         val_interval=min(val_interval, iters))
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", by_epoch=False,
                                        interval=checkpoint_interval, max_keep_ckpts=2)
    cfg.default_hooks.logger = dict(type="LoggerHook", interval=10)
    cfg.log_processor = dict(type="LogProcessor", window_size=10, by_epoch=False)
    cfg.train_dataloader.sampler = dict(type="InfiniteSampler", shuffle=True)
    cfg.train_dataloader.pop("batch_sampler", None)
    for sched in cfg.param_scheduler:
        if "milestones" in sched:
            sched.update(by_epoch=False, begin=0, end=iters,
                         milestones=[max(1, min(iters, milestone(m))) for m in sched["milestones"]])
        else:
            sched["end"] = min(sched.get("end", iters), iters)


def _apply_schedule(cfg, profile: Profile, opts: Options) -> None:
    """The profile's schedule, or ``--max-iters`` / a pilot's iterations instead.

    On an iteration schedule the step milestones stretch with the budget. An epoch schedule
    given an iteration budget becomes an iteration schedule of that length with the milestones
    at the same fractions (8/12 and 11/12 of it): a different training, with its own config
    hash, never the full 12 epochs under another name.
    """
    s = profile.settings
    iters = opts.pilot_iters or opts.max_iters
    if s.get("schedule") == "iters":
        iters = int(iters or s["max_iters"])
        stretch = iters / int(s["max_iters"])
        _iteration_schedule(cfg, iters, int(s.get("val_interval", iters)),
                            int(s.get("checkpoint_interval", 50)),
                            lambda m: round(m * stretch))
    elif iters:
        epochs = int(cfg.train_cfg.max_epochs)
        _iteration_schedule(cfg, int(iters), int(iters), max(1, int(iters) // 4),
                            lambda m: round(m * int(iters) / epochs))
    else:
        cfg.default_hooks.checkpoint.update(interval=1, max_keep_ckpts=2)
    if opts.pilot_iters:  # a measurement: no checkpoint files (a paper cell's is ~300 MB)
        cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=-1, save_last=False)


def _apply_layout(cfg, cell: Cell, opts: Options) -> None:
    """Images per device, and the lr for the total batch (``auto_scale_lr.base_batch_size`` =
    the batch this lr is for, mmdet's own convention): both in the config and its hash."""
    lay = layout(cell, opts)
    cfg.train_dataloader.batch_size = lay.imgs_per_device
    optimizer = cfg.optim_wrapper.optimizer
    optimizer.lr, _ = scaled_lr(cell, opts, float(optimizer.lr))
    cfg.auto_scale_lr = dict(enable=False, base_batch_size=lay.total_batch)


def resolve(cell: Cell, opts: Options = Options(), work_dir: str | None = None,
            results_prefix: str | None = None, data: bool = True):
    """The full mmengine Config of a cell.

    ``data=False`` leaves the detector _base_'s data settings (COCO, 80 classes) as they are
    and needs no dataset: for building the model alone (``bench perf``).
    """
    from mmengine.config import Config

    profile = cell_profile(cell)
    released = cell.source == "released"
    cfg = Config.fromfile(str(profile.base(cell.detector)))
    cfg.merge_from_dict(profile.delta)
    cfg.merge_from_dict(profile.settings.get("per_detector", {}).get(cell.detector, {}))
    if data:
        _apply_data(cfg, dataset_for(profile, opts, need_train=not released), profile,
                    layout(cell, opts).imgs_per_device, results_prefix)
        if opts.val_images:  # a pilot evaluates the first N validation images only
            for name in ("val_dataloader", "test_dataloader"):
                cfg[name].dataset.indices = int(opts.val_images)
    if released:  # the authors trained with the faithful padding
        padding = 0
    else:
        padding = profile.lcconv_padding if opts.lcconv_padding is None else opts.lcconv_padding
    _apply_variant(cfg, cell, padding)
    _apply_test_pad(cfg, cell, profile)
    apply_conventions(cfg, cell_conventions(cell))
    if released:
        _apply_released(cfg)
    else:
        _apply_schedule(cfg, profile, opts)
        _apply_layout(cfg, cell, opts)
    # A released cell's weights all come from its checkpoint: no backbone download.
    pretrained = None if released else opts.pretrained or profile.settings.get("pretrained")
    apply_pretrained(cfg, pretrained, cell.profile)
    # A standalone mmdet config: it needs `sepc` and nothing of the harness (the job adds its
    # progress hook when it runs the cell; `bench config --export` writes the config as is).
    cfg.custom_imports = dict(imports=["sepc"], allow_failed_imports=False)
    # Training aids the profile asks for, in the config so that mmdet's own tools apply them too.
    cfg.custom_hooks = ([dict(type="ChannelsLastHook")]
                        if profile.settings.get("channels_last") and not released else [])
    cfg.randomness = dict(seed=cell.seed, deterministic=False)
    cfg.default_hooks.visualization = dict(type="DetVisualizationHook", draw=False)
    cfg.pop("tta_model", None)
    cfg.pop("tta_pipeline", None)
    cfg.work_dir = work_dir or str(Path("work_dirs") / cell.profile / cell.key)
    _apply_log(cfg, cell, opts.log)
    return cfg


def plain_text(cfg):
    """The config with mmengine's own ``format_python_code`` switch off. mmengine yapf-formats
    the whole config at start-up and again into every checkpoint (about 2 s per smoke cell on
    one core); the unformatted text is the same Python, so a job's config skips it."""
    from mmengine.config import Config

    return Config(cfg.to_dict(), filename=cfg.filename, format_python_code=False)


def _local_warm_start(cfg) -> None:
    """A ``synthetic://<key>`` checkpoint is a scheme only the harness registers: an exported
    config names the cached file instead, so mmdet's tools load it without the harness."""
    from .pretrained import SYNTHETIC
    from .warmstart import WarmStartError, cache_root, check_entry, paths

    neck = cfg.model.get("neck")
    parts = [cfg.model.backbone, *(neck if isinstance(neck, list) else [neck] if neck else [])]
    for part in parts:
        init = part.get("init_cfg") or {}
        src = init.get("checkpoint") if isinstance(init, dict) else None
        if isinstance(src, str) and src.startswith(SYNTHETIC):
            k = src[len(SYNTHETIC):]
            why = check_entry(k)
            if why is not None:
                raise WarmStartError(f"warm start {k} in {cache_root()} is not usable ({why}): build "
                                     "it with `python -m bench.warmstart` before exporting, or "
                                     "pass --pretrained none")
            init["checkpoint"] = str(paths(k)[0])


def export_config(cell: Cell, opts: Options, folder: Path) -> Path:
    """The cell's config as an mmdet config file ``folder/<cell key>.py`` (atomic)."""
    from reports.schema import atomic_write

    cfg = resolve(cell, opts, work_dir=str(Path("work_dirs") / cell.profile / cell.key))
    _local_warm_start(cfg)
    lay = layout(cell, opts)
    head = (f"# sepc-bench cell {cell.key} of profile {cell.profile} (config_hash "
            f"{config_hash(cfg)}), exported by `python -m bench config --export`.\n"
            f"# Needs only `sepc` importable. Trains with mmdet's own tools, e.g.\n"
            f"#   python tools/train.py {cell.key}.py                 (one device)\n"
            f"#   bash tools/dist_train.sh {cell.key}.py {lay.tasks_per_node}           "
            f"({lay.describe()})\n"
            f"# The lr is for a total batch of {lay.total_batch} (auto_scale_lr.base_batch_size): "
            f"on fewer devices add --auto-scale-lr.\n")
    return atomic_write(Path(folder) / f"{cell.key}.py", head + cfg.pretty_text)


#: Keys that say where things go, not what is computed: left out of the hash.
_UNHASHED = ("work_dir", "launcher", "resume", "load_from", "model_wrapper_cfg", "env_cfg",
             "visualizer")


def config_hash(cfg) -> str:
    """sha1[:10] of the resolved config, outputs and locations excluded."""
    d = {k: v for k, v in cfg.to_dict().items() if k not in _UNHASHED}
    for name in ("val_evaluator", "test_evaluator"):
        d.get(name, {}).pop("outfile_prefix", None)
    blob = json.dumps(d, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:10]
