"""A cell's mmengine Config without its starting weights: detector ``_base_`` + profile delta +
variant, data, schedule and layout.

The variant is applied last and in code, because it changes the structure (the neck becomes the
list [FPN, SEPC], the head becomes its SEPC subclass; for a row without an SEPC head, [FPN,
PConvNeck] before its own heads) rather than values. A profile's model delta sizes the parts a
detector has (a two-stage detector has no ``bbox_head``: its sizes come from the profile's
``per_detector`` entry). The pyramid's levels are checked against the heads' strides
(bench/plan/levels.py) before anything runs. Starting weights are not this module's business
(bench/plan/resolve.py adds them): the smoke warm start is trained from this config
(bench/plan/warmstart.py), and every cell then starts from that warm start.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from bench.data.coco import Dataset, ensure_synthetic, open_coco_root
from bench.plan.cells import DETECTORS, VARIANTS, Cell, MatrixError
from bench.plan.conventions import apply_conventions
from bench.plan.layout import layout, scaled_lr
from bench.plan.levels import check_levels
from bench.plan.options import LOG_BACKENDS, Options
from bench.plan.settings import Profile, Settings, cell_conventions, cell_profile
from reports.schema import COCO_METRIC_ITEMS


def dataset_for(profile: Profile, opts: Options, need_train: bool = True) -> Dataset:
    """The profile's data: the user's COCO-layout root if given, else the profile's own."""
    if opts.data_root:
        return open_coco_root(opts.data_root, need_train)
    if profile.settings.synthetic:
        return ensure_synthetic(profile.settings.data)
    raise MatrixError(f"profile {profile.name!r} needs --data-root DIR (a COCO 2017 folder: "
                      f"annotations/instances_{{train,val}}2017.json, train2017/, val2017/; "
                      f"evaluating released checkpoints needs only the val2017 half)")


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


def _apply_data(cfg, ds: Dataset, s: Settings, batch: int) -> None:
    size = s.image_scale
    if s.synthetic or size:
        size = size or s.data["image_size"]
        size = (size, size) if isinstance(size, int) else tuple(size)
    train_pipe, test_pipe = _pipelines(size)
    metainfo = dict(classes=ds.classes)
    common = dict(type="CocoDataset", data_root=str(ds.root), metainfo=metainfo)
    loader = dict(num_workers=s.workers, persistent_workers=s.workers > 0)
    cfg.train_dataloader.update(batch_size=batch, **loader)
    cfg.train_dataloader.dataset = dict(
        **common, ann_file="annotations/instances_train2017.json",
        data_prefix=dict(img="train2017/"),
        filter_cfg=dict(filter_empty_gt=True, min_size=s.min_size),
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
    set_num_classes(cfg.model, len(ds.classes))


def set_num_classes(node, n: int) -> None:
    """``num_classes = n`` in every part of the model that has one (a one-stage detector's
    ``bbox_head``, a two-stage's ``roi_head.bbox_head``; an RPN states none)."""
    if isinstance(node, dict):
        if "num_classes" in node:
            node["num_classes"] = n
        for value in node.values():
            set_num_classes(value, n)
    elif isinstance(node, list):
        for value in node:
            set_num_classes(value, n)


def model_delta(delta: dict, model) -> dict:
    """A profile's config delta without the model parts the detector lacks (its ``bbox_head``
    sizes the one-stage heads; a two-stage detector has none, and mmdet would refuse the key)."""
    parts = delta.get("model")
    if not isinstance(parts, dict):
        return delta
    return {**delta, "model": {k: v for k, v in parts.items() if k in model}}


def head_type(model) -> str:
    """The model's head(s) as ``bench plan`` lists them: the dense head, or RPN/RoI box head."""
    if model.get("bbox_head"):
        return model.bbox_head.type
    heads = [model.get("rpn_head"), (model.get("roi_head") or {}).get("bbox_head")]
    return "/".join(h["type"] for h in heads if h)


def _apply_variant(cfg, cell: Cell, padding: int) -> None:
    """The variant's SEPC parts after the FPN: the SEPC neck and the row's SEPC head, or, for a
    row without an SEPC head, the stand-alone PConv neck (one output per level) before the
    row's own heads (``Detector.sepc_head``)."""
    variant = VARIANTS[cell.variant]
    if not variant.sepc:
        return
    fpn = cfg.model.neck
    width = fpn["out_channels"]
    levels = dict(in_channels=[width] * fpn["num_outs"], out_channels=width,
                  num_outs=fpn["num_outs"], Pconv_num=4)
    head = DETECTORS[cell.detector].sepc_head
    if head is None:  # no cls/loc convs: the matrix lets such a row take none that deform them
        parts = {k: v for k, v in variant.neck_args().items() if k != "lcconv_deform"}
        cfg.model.neck = [fpn, dict(type="PConvNeck", **levels, **parts)]
        return
    cfg.model.neck = [fpn, dict(type="SEPC", **levels, lcconv_padding=padding,
                                **variant.neck_args())]
    cfg.model.bbox_head.type = head
    cfg.model.bbox_head.stacked_convs = 0


def _apply_test_pad(cfg, cell: Cell, s: Settings) -> None:
    """A test-time padding multiple of the cell's own (``test_pad`` in the profile, keyed
    ``detector/variant``: the authors' FSAF baseline padded test images to 384, training to 32)."""
    divisor = s.test_pad.get(f"{cell.detector}/{cell.variant}")
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


def _apply_schedule(cfg, s: Settings, opts: Options) -> None:
    """The profile's schedule, or ``--max-iters`` / a pilot's iterations instead.

    On an iteration schedule the step milestones stretch with the budget. An epoch schedule
    given an iteration budget becomes an iteration schedule of that length with the milestones
    at the same fractions (8/12 and 11/12 of it): a different training, with its own config
    hash, never the full 12 epochs under another name.
    """
    iters = opts.pilot_iters or opts.max_iters
    if s.schedule == "iters":
        iters = int(iters or s.max_iters)
        stretch = iters / s.max_iters
        _iteration_schedule(cfg, iters, s.val_interval or iters, s.checkpoint_interval,
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


def build_config(cell: Cell, opts: Options = Options(), data: bool = True):
    """The cell's mmengine Config, every part but its starting weights (bench/plan/resolve.py).

    ``data=False`` leaves the detector _base_'s data settings (COCO, 80 classes) as they are
    and needs no dataset: for building the model alone (``bench perf``).
    """
    from mmengine.config import Config

    profile = cell_profile(cell)
    s = profile.settings
    released = cell.source == "released"
    cfg = Config.fromfile(str(profile.base(cell.detector)))
    cfg.merge_from_dict(model_delta(profile.delta, cfg.model))
    cfg.merge_from_dict(s.per_detector.get(cell.detector, {}))
    if data:
        _apply_data(cfg, dataset_for(profile, opts, need_train=not released), s,
                    layout(cell, opts).imgs_per_device)
        if opts.val_images:  # a pilot evaluates the first N validation images only
            for name in ("val_dataloader", "test_dataloader"):
                cfg[name].dataset.indices = int(opts.val_images)
    if released:  # the authors trained with the faithful padding
        padding = 0
    else:
        padding = s.lcconv_padding if opts.lcconv_padding is None else opts.lcconv_padding
    _apply_variant(cfg, cell, padding)
    check_levels(cfg.model, f"{cell.profile} {cell.detector}/{cell.variant}")
    _apply_test_pad(cfg, cell, s)
    apply_conventions(cfg, cell_conventions(cell))
    if released:
        _apply_released(cfg)
    else:
        _apply_schedule(cfg, s, opts)
        _apply_layout(cfg, cell, opts)
    # A standalone mmdet config: it needs `sepc` and nothing of the harness (the job adds its
    # progress hook when it runs the cell; `bench config --export` writes the config as is).
    cfg.custom_imports = dict(imports=["sepc"], allow_failed_imports=False)
    # Training aids the profile asks for, in the config so that mmdet's own tools apply them too.
    cfg.custom_hooks = [dict(type="ChannelsLastHook")] if s.channels_last and not released else []
    cfg.randomness = dict(seed=cell.seed, deterministic=False)
    cfg.default_hooks.visualization = dict(type="DetVisualizationHook", draw=False)
    cfg.pop("tta_model", None)
    cfg.pop("tta_pipeline", None)
    place(cfg, cell, opts.log)
    return cfg


def place(cfg, cell: Cell, log: tuple[str, ...], work_dir: str | None = None,
          results_prefix: str | None = None) -> None:
    """Where the cell's outputs go, none of it hashed: its work dir (default
    ``work_dirs/<profile>/<key>``), the detections file (``<results_prefix>.bbox.json``, kept
    for the bootstrap) and the ``--log`` backends beside mmengine's own local one (the report
    reads that one), writing into the work dir. Placing a config again moves all three."""
    cfg.work_dir = work_dir or str(Path("work_dirs") / cell.profile / cell.key)
    for name in ("val_evaluator", "test_evaluator"):
        if cfg.get(name) and results_prefix:
            cfg[name]["outfile_prefix"] = results_prefix
    types = {backend for backend, _package in LOG_BACKENDS.values()}
    cfg.visualizer.vis_backends = [b for b in cfg.visualizer.vis_backends
                                   if b["type"] not in types]
    for name in log:
        backend = dict(type=LOG_BACKENDS[name][0])
        if name == "mlflow":  # tracking and artifacts in the cell's work_dir, never the cwd
            work = Path(cfg.work_dir).resolve()
            backend.update(exp_name=f"sepc-bench-{cell.profile}", run_name=cell.key,
                           tracking_uri=f"sqlite:///{work}/mlflow.db",
                           artifact_location=str(work / "mlruns"), artifact_suffix=())
        cfg.visualizer.vis_backends.append(backend)


def plain_text(cfg):
    """The config with mmengine's own ``format_python_code`` switch off. mmengine yapf-formats
    the whole config at start-up and again into every checkpoint (about 2 s per smoke cell on
    one core); the unformatted text is the same Python, so a job's config skips it."""
    from mmengine.config import Config

    return Config(cfg.to_dict(), filename=cfg.filename, format_python_code=False)


#: Keys that say where things go, not what is computed: left out of the hash.
_UNHASHED = ("work_dir", "launcher", "resume", "load_from", "model_wrapper_cfg", "env_cfg",
             "visualizer")


def hashed_config(cfg) -> dict:
    """What :func:`config_hash` hashes: the resolved config, outputs and locations excluded."""
    d = {k: v for k, v in cfg.to_dict().items() if k not in _UNHASHED}
    for name in ("val_evaluator", "test_evaluator"):
        (d.get(name) or {}).pop("outfile_prefix", None)
    return json.loads(json.dumps(d, default=str))


def config_hash(cfg) -> str:
    """sha1[:10] of the resolved config, outputs and locations excluded."""
    return digest(hashed_config(cfg))


def digest(hashed: dict) -> str:
    """The config hash of a :func:`hashed_config` (e.g. the one a cell's folder keeps)."""
    blob = json.dumps(hashed, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:10]
