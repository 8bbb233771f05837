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

from .data import Dataset, ensure_synthetic, open_coco_root
from .matrix import DETECTORS, VARIANTS, Cell, MatrixError
from .pretrained import apply_pretrained

PROFILES_DIR = EXPERIMENTS / "profiles"
METRIC_ITEMS = ["mAP", "mAP_50", "mAP_75", "mAP_s", "mAP_m", "mAP_l", "AR@100"]


def profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.py") if not p.stem.startswith("_"))


@dataclass(frozen=True)
class Options:
    """What the command line changes about a profile (each part of the config hash), and where
    released cells find their checkpoints (``--from-checkpoints DIR``, ``--manifest FILE``)."""

    data_root: str | None = None
    pretrained: str | None = None
    lcconv_padding: int | None = None
    max_iters: int | None = None
    checkpoints: str | None = None
    manifest: str | None = None


@dataclass
class Profile:
    name: str
    settings: dict
    delta: dict = field(repr=False)

    @property
    def lcconv_padding(self) -> int:
        return int(self.settings.get("lcconv_padding", 0))


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


def gpus_and_batch(profile: Profile, variant: str) -> tuple[int, int]:
    """(GPUs, images per GPU) of a cell: the paper's 8x2 or 4x4, or the profile's fixed batch."""
    s = profile.settings
    if "fixed_batch" in s:
        return 1, int(s["fixed_batch"])
    per_gpu = VARIANTS[variant].imgs_per_gpu
    return int(s.get("total_batch", 16)) // per_gpu, per_gpu


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
        data_prefix=dict(img="train2017/"), filter_cfg=dict(filter_empty_gt=True, min_size=4),
        pipeline=train_pipe)
    for name in ("val_dataloader", "test_dataloader"):
        cfg[name].update(batch_size=1, **loader)
        cfg[name].dataset = dict(
            **common, ann_file="annotations/instances_val2017.json",
            data_prefix=dict(img="val2017/"), test_mode=True, pipeline=test_pipe)
    for name in ("val_evaluator", "test_evaluator"):
        cfg[name] = dict(type="CocoMetric", ann_file=str(ds.val_ann), metric="bbox",
                         format_only=False, metric_items=METRIC_ITEMS)
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
    cfg.model.bbox_head.type = DETECTORS[cell.detector]
    cfg.model.bbox_head.stacked_convs = 0


def _apply_released(cfg, cell: Cell) -> None:
    """mmdet 1.1's conventions, for the authors' checkpoints: legacy anchors (centre
    ``(stride - 1) / 2``, quantised corners) and box coders ("+1" sizes; FSAF's is the release's
    own, see sepc.legacy), NMS areas with "+1", no minimum box size, and COCO boxes written as
    ``w = x2 - x1 + 1``. Classification channels need nothing: sigmoid heads kept the order."""
    head = cfg.model.bbox_head
    head.anchor_generator.type = "LegacyAnchorGenerator"
    head.anchor_generator.center_offset = 0.5
    if cell.detector == "fsaf":
        head.bbox_coder = dict(type="LegacyTBLRBBoxCoder")
    else:
        head.bbox_coder.type = "LegacyDeltaXYWHBBoxCoder"
    cfg.model.test_cfg.nms["offset"] = 1
    cfg.model.test_cfg.min_bbox_size = -1
    for name in ("val_evaluator", "test_evaluator"):
        cfg[name]["type"] = "LegacyCocoMetric"
    # Nothing trains: no train split, optimizer or schedule (mmengine takes all four as None).
    for name in ("train_dataloader", "train_cfg", "optim_wrapper", "param_scheduler"):
        cfg[name] = None


def _apply_schedule(cfg, profile: Profile, opts: Options) -> None:
    s = profile.settings
    if s.get("schedule") != "iters":
        cfg.default_hooks.checkpoint.update(interval=1, max_keep_ckpts=2)
        return
    iters = int(opts.max_iters or s["max_iters"])
    val = int(s.get("val_interval", iters))
    cfg.train_cfg = dict(type="IterBasedTrainLoop", max_iters=iters, val_interval=min(val, iters))
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", by_epoch=False,
                                        interval=int(s.get("checkpoint_interval", 50)),
                                        max_keep_ckpts=2)
    cfg.default_hooks.logger = dict(type="LoggerHook", interval=10)
    cfg.log_processor = dict(type="LogProcessor", window_size=10, by_epoch=False)
    cfg.train_dataloader.sampler = dict(type="InfiniteSampler", shuffle=True)
    cfg.train_dataloader.pop("batch_sampler", None)
    # --max-iters stretches or shrinks the profile's schedule: step milestones scale with it.
    stretch = iters / int(s["max_iters"])
    for sched in cfg.param_scheduler:
        if "milestones" in sched:
            sched["milestones"] = [max(1, round(m * stretch)) for m in sched["milestones"]]
            sched["end"] = iters
        else:
            sched["end"] = min(sched.get("end", iters), iters)


def resolve(cell: Cell, opts: Options = Options(), work_dir: str | None = None,
            results_prefix: str | None = None, data: bool = True):
    """The full mmengine Config of a cell.

    ``data=False`` leaves the detector _base_'s data settings (COCO, 80 classes) as they are
    and needs no dataset: for building the model alone (``bench perf``).
    """
    from mmengine.config import Config

    profile = cell_profile(cell)
    released = cell.source == "released"
    cfg = Config.fromfile(str(EXPERIMENTS / "_base_" / f"{cell.detector}.py"))
    cfg.merge_from_dict(profile.delta)
    cfg.merge_from_dict(profile.settings.get("per_detector", {}).get(cell.detector, {}))
    if data:
        _, batch = gpus_and_batch(profile, cell.variant)
        _apply_data(cfg, dataset_for(profile, opts, need_train=not released), profile, batch,
                    results_prefix)
    if released:  # the authors trained with the faithful padding
        padding = 0
    else:
        padding = profile.lcconv_padding if opts.lcconv_padding is None else opts.lcconv_padding
    _apply_variant(cfg, cell, padding)
    if released:
        _apply_released(cfg, cell)
    else:
        _apply_schedule(cfg, profile, opts)
    # A released cell's weights all come from its checkpoint: no backbone download.
    pretrained = None if released else opts.pretrained or profile.settings.get("pretrained")
    apply_pretrained(cfg, pretrained, cell.profile)
    cfg.custom_imports = dict(imports=["sepc", "bench.hooks", "bench.warmstart"],
                              allow_failed_imports=False)
    cfg.custom_hooks = [dict(type="CellProgressHook")]
    cfg.randomness = dict(seed=cell.seed, deterministic=False)
    cfg.default_hooks.visualization = dict(type="DetVisualizationHook", draw=False)
    cfg.pop("tta_model", None)
    cfg.pop("tta_pipeline", None)
    cfg.work_dir = work_dir or str(Path("work_dirs") / cell.profile / cell.key)
    return cfg


#: Keys that say where things go, not what is computed: left out of the hash.
_UNHASHED = ("work_dir", "launcher", "resume", "load_from")


def config_hash(cfg) -> str:
    """sha1[:10] of the resolved config, outputs and locations excluded."""
    d = {k: v for k, v in cfg.to_dict().items() if k not in _UNHASHED}
    for name in ("val_evaluator", "test_evaluator"):
        d.get(name, {}).pop("outfile_prefix", None)
    blob = json.dumps(d, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:10]
