"""``python -m bench export``: every selected cell as an ONNX graph of standard ops, run on ONNX
Runtime and checked against PyTorch.

The graph is the detector's forward only: image (N, 3, H, W), already normalised and padded as
the cell's data preprocessor does, in; the raw head outputs out (``cls_<level>``, ``box_<level>``
and, for ATSS and FCOS, ``ctr_<level>``). Height, width and batch are dynamic: one graph serves
every size. Decoding and NMS stay outside, in the cell's own mmdet head (``predict_by_feat``),
shared by both runtimes, so that a parity check compares the graph alone and the detections of
both runtimes come from one post-processing.

A two-stage detector (an RPN, then RoI pooling) is two graphs, with mmdet's proposal decoding
and NMS between them: ``<cell>.onnx`` takes the image to the pyramid levels the RoIs are pooled
from (``feat_<level>``) and the RPN's raw outputs (``rpn_cls_<level>``, ``rpn_box_<level>``);
``<cell>.roi.onnx`` takes those levels and the proposals as RoIs (K, 5: image index, x1, y1, x2,
y2; K dynamic) to the RoI head's raw outputs (``cls_score``, ``bbox_pred``), which mmdet's RoI
head decodes and suppresses as for PyTorch (its own ``predict_bbox``). RoIs are pooled with ONNX's
standard ``RoiAlign`` (opset 16's ``half_pixel`` mode for mmcv's ``aligned=True``,
``output_half_pixel`` for mmdet 1.1's ``aligned=False``) on every level, each RoI keeping its own
level's result (mmdet's level mapping, no data-dependent branch in the graph).

The exporter is torch's TorchScript-based one (``dynamo=False``, opset 17): torch 2.13's default,
the ``torch.export`` one, took 530 s for one smoke SEPC model here against 9 s, and gives the same
standard-op graph. The deformable convs export through ``sepc.ops.deform_conv``'s grid_sample
path (ONNX ``GridSample`` + ``MatMul``), never mmcv's kernel; BN is folded first
(``bench.run.latency.fuse_for_inference``), as for every timed model.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from bench.cellstore import now
from bench.plan.cells import Cell, MatrixError
from bench.plan.resolve import resolve
from bench.plan.settings import cell_settings
from bench.plan.weights import NONE
from bench.run.latency import fuse_for_inference
from reports.schema import atomic_write, atomic_write_json

#: ONNX opset of the export (GridSample needs 16).
OPSET = 17
#: The size the graph is traced at; every size runs (dynamic axes), this one is only cheap.
TRACE_HW = (384, 512)
#: Tolerances of the parity check: raw outputs (fp32, max abs) and COCO AP (points).
RAW_TOL = 1e-4
AP_TOL = 0.1
#: Output-name prefix of each head output group, in the order the head returns them.
GROUPS = ("cls", "box", "ctr")


def two_stage(detector: nn.Module) -> bool:
    """Whether the detector proposes regions and pools them (mmdet's two-stage detectors)."""
    return bool(getattr(detector, "with_rpn", False) and getattr(detector, "with_roi_head", False))


def _roi_levels(detector: nn.Module) -> int:
    """How many pyramid levels a two-stage detector pools RoIs from (the first ones)."""
    return detector.roi_head.bbox_roi_extractor.num_inputs


class HeadOutputs(nn.Module):
    """The detector as the (first) graph holds it: image in, its head's raw outputs out, flat;
    for a two-stage detector the levels RoIs are pooled from, then the RPN's raw outputs."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feats = self.detector.extract_feat(image)
        if two_stage(self.detector):
            rpn = self.detector.rpn_head(feats)
            return (*feats[:_roi_levels(self.detector)], *(t for group in rpn for t in group))
        groups = self.detector.bbox_head(feats)
        return tuple(t for group in groups for t in group)


class _RoiAlign(torch.autograd.Function):
    """mmcv's ``roi_align`` in PyTorch; in a graph, ONNX's standard ``RoiAlign`` in the mode that
    computes the same (mmcv's own symbolic predates opset 16's half-pixel default)."""

    @staticmethod
    def forward(ctx, feat, rois, out_h, out_w, scale, ratio, aligned):
        from mmcv.ops import roi_align

        return roi_align(feat, rois, (out_h, out_w), scale, ratio, "avg", aligned)

    @staticmethod
    def symbolic(g, feat, rois, out_h, out_w, scale, ratio, aligned):
        def const(values):
            return g.op("Constant", value_t=torch.tensor(values, dtype=torch.long))

        index = g.op("Squeeze", g.op("Gather", rois, const([0]), axis_i=1), const([1]))
        index = g.op("Cast", index, to_i=7)  # INT64
        boxes = g.op("Gather", rois, const([1, 2, 3, 4]), axis_i=1)
        return g.op("RoiAlign", feat, boxes, index, output_height_i=out_h, output_width_i=out_w,
                    spatial_scale_f=scale, sampling_ratio_i=max(0, ratio), mode_s="avg",
                    coordinate_transformation_mode_s="half_pixel" if aligned
                    else "output_half_pixel")


class RoIOutputs(nn.Module):
    """A two-stage detector's second graph: pyramid levels and RoIs in, the RoI head's raw
    outputs (class scores, box deltas) out. Each RoI is pooled from the level mmdet's extractor
    maps it to, as the extractor does, without its data-dependent branch (a level with no RoI
    pools an empty set): the result equals the extractor's exactly."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.roi_head = detector.roi_head

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        *feats, rois = inputs
        extractor, head = self.roi_head.bbox_roi_extractor, self.roi_head
        levels = extractor.map_roi_levels(rois, len(feats))
        out_h, out_w = extractor.roi_layers[0].output_size
        pooled = feats[0].new_zeros(rois.shape[0], feats[0].shape[1], out_h, out_w)
        for i, (feat, layer) in enumerate(zip(feats, extractor.roi_layers)):
            inds = (levels == i).nonzero().squeeze(1)
            level = _RoiAlign.apply(feat, rois[inds], out_h, out_w, float(layer.spatial_scale),
                                    int(layer.sampling_ratio), bool(layer.aligned))
            pooled = pooled.index_put((inds,), level)
        if head.with_shared_head:
            pooled = head.shared_head(pooled)
        return head.bbox_head(pooled)


def roi_path(path: Path) -> Path:
    """Where a two-stage detector's RoI graph sits beside its first graph ``path``."""
    return path.with_name(f"{path.stem}.roi.onnx")


def graph_paths(path: Path) -> list[Path]:
    """Every graph of the export at ``path``: itself, and its RoI graph if there is one."""
    return [path, *[p for p in [roi_path(path)] if p.is_file()]]


def output_names(detector: nn.Module, n_outputs: int) -> list[str]:
    """Names of the first graph's ``n_outputs`` flat outputs: ``cls_0 .. cls_4, box_0 ..
    box_4[, ctr_0 ..]``; two-stage: ``feat_0 .. feat_3, rpn_cls_0 .., rpn_box_0 ..``."""
    if two_stage(detector):
        n = _roi_levels(detector)
        levels = len(detector.rpn_head.prior_generator.strides)
        return ([f"feat_{i}" for i in range(n)]
                + [f"rpn_{g}_{i}" for g in GROUPS[:2] for i in range(levels)])
    levels = len(detector.bbox_head.prior_generator.strides)
    return [f"{g}_{i}" for g in GROUPS[:n_outputs // levels] for i in range(levels)]


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str],
            axes: dict) -> Path:
    import warnings

    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer notes
        torch.onnx.export(module.eval(), args, buf, dynamo=False, opset_version=OPSET,
                          input_names=inputs, output_names=outputs, dynamic_axes=axes)
    return atomic_write(path, buf.getvalue())


def _sample_rois(feats: list[torch.Tensor], detector: nn.Module) -> torch.Tensor:
    """RoIs to trace the RoI graph with: one per level the extractor maps to, in the image."""
    h, w = feats[0].shape[-2:]
    stride = detector.roi_head.bbox_roi_extractor.featmap_strides[0]
    finest = detector.roi_head.bbox_roi_extractor.finest_scale
    sizes = [min(finest * 2 ** i, h * stride - 1, w * stride - 1) for i in range(len(feats))]
    return torch.tensor([[0.0, 1.0, 1.0, 1.0 + s, 1.0 + s] for s in sizes])


def export_onnx(detector: nn.Module, path: Path, trace_hw: tuple[int, int] = TRACE_HW) -> Path:
    """``detector`` (eval mode, BN folded by the caller) as ``path`` (atomic); returns it. A
    two-stage detector's RoI graph goes to :func:`roi_path` beside it."""
    image = torch.zeros(1, 3, *trace_hw)
    with torch.no_grad():
        probe = HeadOutputs(detector).eval()(image)
    names = output_names(detector, len(probe))
    axes = {"image": {0: "batch", 2: "height", 3: "width"}}
    axes.update({n: {0: "batch", 2: f"{n}_h", 3: f"{n}_w"} for n in names})
    if two_stage(detector):
        feats = list(probe[:_roi_levels(detector)])
        feat_names = names[:len(feats)]
        roi_axes = {n: {0: "batch", 2: f"{n}_h", 3: f"{n}_w"} for n in feat_names}
        roi_axes.update(rois={0: "rois"}, cls_score={0: "rois"}, bbox_pred={0: "rois"})
        _export(RoIOutputs(detector), (*feats, _sample_rois(feats, detector)), roi_path(path),
                [*feat_names, "rois"], ["cls_score", "bbox_pred"], roi_axes)
    else:  # no RoI graph of an earlier export at this path may pass for this one's
        roi_path(path).unlink(missing_ok=True)
    return _export(HeadOutputs(detector), (image,), path, ["image"], names, axes)


def op_types(path: Path) -> set[tuple[str, str]]:
    """(domain, op type) of every node of the graph at ``path``, subgraphs included."""
    import onnx

    found: set[tuple[str, str]] = set()

    def walk(graph) -> None:
        for node in graph.node:
            found.add((node.domain or "ai.onnx", node.op_type))
            for attr in node.attribute:
                for g in [attr.g] if attr.HasField("g") else list(attr.graphs):
                    walk(g)

    walk(onnx.load(str(path), load_external_data=False).graph)
    return found


def custom_ops(path: Path) -> list[str]:
    """``domain::op`` of every node outside ONNX's default domain (empty for a standard graph)."""
    return sorted(f"{d}::{op}" for d, op in op_types(path) if d != "ai.onnx")


def session(path: Path, threads: int):
    """An ONNX Runtime CPU session on ``threads`` intra-op threads, one inter-op, sequential.

    Its threads do not spin-wait between runs: on shared cores a spinning pool takes the CPU
    from whatever runs next (torch's forward in a parity check, the next variant in a timing).
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def run_session(sess, image: torch.Tensor) -> list[torch.Tensor]:
    """The graph's flat raw outputs for ``image``, as torch tensors."""
    return [torch.from_numpy(o) for o in sess.run(None, {"image": image.numpy()})]


class TorchGraphs:
    """What the graphs compute, on the PyTorch model: the reference of a parity check."""

    def __init__(self, detector: nn.Module) -> None:
        self.detector = detector

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        with torch.no_grad():
            return list(HeadOutputs(self.detector)(image))

    def roi(self, feats: list[torch.Tensor], rois: torch.Tensor) -> tuple[torch.Tensor, ...]:
        roi_head = self.detector.roi_head
        with torch.no_grad():  # the class's own method: detect() lends the instance this one
            out = type(roi_head)._bbox_forward(roi_head, feats, rois)
        return out["cls_score"], out["bbox_pred"]


class OrtGraphs:
    """An export's graph(s) on ONNX Runtime (``threads`` intra-op threads each)."""

    def __init__(self, path: Path, threads: int) -> None:
        self.main = session(path, threads)
        self.roi_session = session(roi_path(path), threads) if roi_path(path).is_file() else None

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        return run_session(self.main, image.contiguous())

    def roi(self, feats: list[torch.Tensor], rois: torch.Tensor) -> tuple[torch.Tensor, ...]:
        names = [i.name for i in self.roi_session.get_inputs()]
        rois = rois.to(feats[0].dtype)  # as mmdet's extractor takes them
        arrays = [f.contiguous().numpy() for f in feats] + [rois.contiguous().numpy()]
        return tuple(torch.from_numpy(o) for o in self.roi_session.run(None, dict(zip(names,
                                                                                     arrays))))


def regroup(flat: Sequence[torch.Tensor], levels: int) -> list[list[torch.Tensor]]:
    """Flat outputs back into the head's groups (cls scores, box preds[, centernesses])."""
    return [list(flat[i:i + levels]) for i in range(0, len(flat), levels)]


def _proposals(detector: nn.Module, flat: Sequence[torch.Tensor], metas: list[dict]):
    """(pooled levels, the RPN's proposals by mmdet's own decode + NMS) of a two-stage
    detector's first-graph outputs."""
    n = _roi_levels(detector)
    head = detector.rpn_head
    groups = regroup(flat[n:], len(head.prior_generator.strides))
    with torch.no_grad():
        return list(flat[:n]), head.predict_by_feat(*groups, batch_img_metas=metas,
                                                    rescale=False)


@contextlib.contextmanager
def _roi_forward(roi_head: nn.Module, graphs):
    """mmdet's RoI head with its box branch (extractor + box head) computed by ``graphs``."""
    roi_head._bbox_forward = lambda x, rois: dict(zip(("cls_score", "bbox_pred"),
                                                      graphs.roi(list(x), rois)))
    try:
        yield
    finally:
        del roi_head._bbox_forward


def detect(detector: nn.Module, graphs, image: torch.Tensor, samples: list) -> list:
    """``samples`` with the detections of ``graphs`` (:class:`TorchGraphs` or
    :class:`OrtGraphs`) on ``image``: their raw outputs, decoded and suppressed by the cell's
    own mmdet heads (the RPN's proposals, then the RoI head's, for a two-stage detector)."""
    flat = graphs.forward(image)
    metas = [s.metainfo for s in samples]
    if two_stage(detector):
        feats, proposals = _proposals(detector, flat, metas)
        roi_head = detector.roi_head
        with torch.no_grad(), _roi_forward(roi_head, graphs):
            results = roi_head.predict_bbox(feats, metas, proposals, roi_head.test_cfg,
                                            rescale=True)
    else:
        head = detector.bbox_head
        results = head.predict_by_feat(*regroup(flat, len(head.prior_generator.strides)),
                                       batch_img_metas=metas, rescale=True)
    return detector.add_pred_to_datasample(samples, results)


def raw_diff(detector: nn.Module, ref: TorchGraphs, graphs, image: torch.Tensor,
             samples: list) -> float:
    """Max abs difference of ``graphs``' raw outputs to the reference's on ``image``: the first
    graph's, and a RoI graph's on the reference's own levels and proposals."""
    def worst(got: Sequence[torch.Tensor], want: Sequence[torch.Tensor]) -> float:
        if [g.shape for g in got] != [w.shape for w in want]:
            return float("inf")  # another output count or shape: no parity
        return max(float((g - w).abs().max()) if w.numel() else 0.0 for g, w in zip(got, want))

    want = ref.forward(image)
    diff = worst(graphs.forward(image), want)
    if two_stage(detector):
        from mmdet.structures.bbox import bbox2roi

        feats, proposals = _proposals(detector, want, [s.metainfo for s in samples])
        rois = bbox2roi([p.bboxes for p in proposals])
        diff = max(diff, worst(graphs.roi(feats, rois), ref.roi(feats, rois)))
    return diff


# -- cells -----------------------------------------------------------------------------------
def build_cell(cell: Cell, opts, checkpoint: Path | None):
    """(model in eval mode, resolved config) of a cell: its trained weights, or random ones.

    Random weights need no dataset where the profile's data is not generated here (``paper``:
    COCO): the model then has the _base_'s 80 COCO classes, which COCO itself has too."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.logging import MMLogger
    from mmengine.runner import load_checkpoint

    import sepc  # noqa: F401  (registers the SEPC neck and heads)

    register_all_modules(init_default_scope=True)
    data = (checkpoint is not None or opts.data_root is not None
            or cell_settings(cell).synthetic)
    if checkpoint is None:  # random weights: no warm start or ImageNet file either
        opts = dataclasses.replace(opts, pretrained=NONE)
    cfg = resolve(cell, opts, data=data)
    torch.manual_seed(cell.seed)
    model = MODELS.build(cfg.model)
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # init_weights logs every parameter's initialiser
    try:
        if checkpoint is None:
            model.init_weights()
        else:
            load_checkpoint(model, str(checkpoint), map_location="cpu", logger=logger)
    finally:
        logger.setLevel(level)
    return model.eval(), cfg


def cell_checkpoint(results: Path, cell: Cell) -> Path:
    """The checkpoint a done cell's training ended with (its work dir's last_checkpoint)."""
    row = json.loads((results / cell.key / "result.json").read_text()) if (
        results / cell.key / "result.json").is_file() else {}
    if row.get("status") != "done":
        raise MatrixError(f"{cell.key} has no trained model in {results} (status "
                          f"{row.get('status', 'missing')}): train it with `python -m bench run`, "
                          "or pass --random")
    pointer = results / cell.key / "work_dir" / "last_checkpoint"
    path = Path(pointer.read_text().strip()) if pointer.is_file() else None
    if path is not None and not path.is_file():  # a results folder copied from elsewhere
        path = pointer.parent / path.name
    if path is None or not path.is_file():
        raise MatrixError(f"{cell.key}: no checkpoint in {pointer.parent}")
    return path


def check_cell(model: nn.Module, cfg, path: Path, threads: int) -> dict:
    """Parity of one cell on its validation images: max abs difference of the raw outputs, and
    COCO AP of the detections of each runtime through the same decode + NMS."""
    from mmengine.evaluator import Evaluator
    from mmengine.logging import MMLogger
    from mmengine.runner import Runner

    ref, graphs = TorchGraphs(model), OrtGraphs(path, threads)
    loader = Runner.build_dataloader(dict(cfg.val_dataloader, num_workers=0,
                                          persistent_workers=False))
    evaluators = {k: Evaluator(dict(cfg.val_evaluator, outfile_prefix=None))
                  for k in ("torch", "onnxruntime")}
    for ev in evaluators.values():
        ev.dataset_meta = loader.dataset.metainfo
    diff = 0.0
    with torch.no_grad():
        for batch in loader:
            data = model.data_preprocessor(batch, False)
            image, samples = data["inputs"], data["data_samples"]
            diff = max(diff, raw_diff(model, ref, graphs, image, samples))
            for key, runtime in (("torch", ref), ("onnxruntime", graphs)):
                found = detect(model, runtime, image, [s.clone() for s in samples])
                evaluators[key].process(data_samples=found, data_batch=batch)
    ap = {}
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # COCOeval's tables, twice per cell
    try:
        for key, ev in evaluators.items():
            with contextlib.redirect_stdout(io.StringIO()):
                metrics = ev.evaluate(len(loader.dataset))
            ap[key] = round(100 * float(metrics.get("coco/bbox_mAP", 0.0)), 3)
    finally:
        logger.setLevel(level)
    return dict(max_abs_diff=diff, AP_torch=ap["torch"], AP_onnxruntime=ap["onnxruntime"],
                AP_diff=round(abs(ap["torch"] - ap["onnxruntime"]), 3),
                images=len(loader.dataset))


def export_cells(chosen: list[Cell], results: Path, opts, out: Path, random: bool,
                 check: bool, threads: int) -> int:
    """Export ``chosen`` into ``out`` (one ``<cell>.onnx`` each, then ``export.json``); with
    ``check``, each cell's parity on ONNX Runtime. 1 when a graph has a custom-domain op or a
    cell misses a tolerance, else 0. Every cell's checkpoint is found before any export."""
    import onnxruntime

    if random and check:
        raise MatrixError("--check compares a trained cell's detections on its validation "
                          "images: it does not apply to --random")
    if threads < 1:
        raise MatrixError(f"--threads {threads}: too small")
    if any(c.source == "released" for c in chosen):
        raise MatrixError("bench export takes trained cells (or --random), not "
                          "--from-checkpoints: evaluate released models with `bench run`")
    checkpoints = {c.key: None if random else cell_checkpoint(results, c) for c in chosen}
    torch.set_num_threads(threads)
    rows, failed = [], []
    for cell in chosen:
        t0 = time.perf_counter()
        model, cfg = build_cell(cell, opts, checkpoints[cell.key])
        reference = build_cell(cell, opts, checkpoints[cell.key])[0] if check else None
        path = export_onnx(fuse_for_inference(model), out / f"{cell.key}.onnx")
        paths = graph_paths(path)
        row = dict(cell=cell.key, onnx=str(path), graphs=[str(p) for p in paths],
                   weights=str(checkpoints[cell.key] or "random"),
                   ops=sorted({op for p in paths for _, op in op_types(p)}),
                   custom_ops=sorted({op for p in paths for op in custom_ops(p)}),
                   export_s=round(time.perf_counter() - t0, 2))
        if row["custom_ops"]:
            failed.append(f"{cell.key}: ops outside the default domain {row['custom_ops']}")
        if reference is not None:  # the unfused PyTorch model against the fused graph
            row.update(check_cell(reference, cfg, path, threads))
            ok = row["max_abs_diff"] <= RAW_TOL and row["AP_diff"] <= AP_TOL
            row["parity"] = "pass" if ok else "fail"
            if not ok:
                failed.append(f"{cell.key}: max abs diff {row['max_abs_diff']:.2e}, AP "
                              f"{row['AP_torch']} vs {row['AP_onnxruntime']}")
            print(f"{cell.key}: max abs diff {row['max_abs_diff']:.2e} over {row['images']} "
                  f"images, AP {row['AP_torch']:.2f} (torch) vs {row['AP_onnxruntime']:.2f} "
                  f"(onnxruntime): {row['parity']}")
        print(f"wrote {', '.join(map(str, paths))}")
        rows.append(row)
    doc = dict(date=now(), torch=torch.__version__, onnxruntime=onnxruntime.__version__,
               opset=OPSET, raw_tol=RAW_TOL, ap_tol=AP_TOL, rows=rows,
               command=" ".join(["python -m bench"] + sys.argv[1:]))
    print(f"wrote {atomic_write_json(out / 'export.json', doc)}")
    for line in failed:
        print(f"FAILED {line}", file=sys.stderr)
    return 1 if failed else 0
