"""``python -m bench export``: every selected cell as an ONNX graph of standard ops, run on ONNX
Runtime and checked against PyTorch.

The graph is the detector's forward only: image (N, 3, H, W), already normalised and padded as
the cell's data preprocessor does, in; the raw head outputs out (``cls_<level>``, ``box_<level>``
and, for ATSS, ``ctr_<level>``). Height, width and batch are dynamic: one graph serves every
size. Decoding and NMS stay outside, in the cell's own mmdet head (``predict_by_feat``), shared
by both runtimes, so that a parity check compares the graph alone and the detections of both
runtimes come from one post-processing.

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


class HeadOutputs(nn.Module):
    """The detector as the graph holds it: image in, its head's raw outputs out, flat."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        groups = self.detector.bbox_head(self.detector.extract_feat(image))
        return tuple(t for group in groups for t in group)


def output_names(detector: nn.Module) -> list[str]:
    """``cls_0 .. cls_4, box_0 .. box_4[, ctr_0 ..]``: the names of the flat outputs."""
    levels = len(detector.bbox_head.prior_generator.strides)
    n_groups = 3 if hasattr(detector.bbox_head, "atss_centerness") else 2
    return [f"{g}_{i}" for g in GROUPS[:n_groups] for i in range(levels)]


def export_onnx(detector: nn.Module, path: Path, trace_hw: tuple[int, int] = TRACE_HW) -> Path:
    """``detector`` (eval mode, BN folded by the caller) as ``path`` (atomic); returns it."""
    import warnings

    buf = io.BytesIO()
    names = output_names(detector)
    axes = {"image": {0: "batch", 2: "height", 3: "width"}}
    axes.update({n: {0: "batch", 2: f"{n}_h", 3: f"{n}_w"} for n in names})
    image = torch.zeros(1, 3, *trace_hw)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer notes
        torch.onnx.export(HeadOutputs(detector).eval(), (image,), buf, dynamo=False,
                          opset_version=OPSET, input_names=["image"], output_names=names,
                          dynamic_axes=axes)
    return atomic_write(path, buf.getvalue())


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


def regroup(flat: Sequence[torch.Tensor], levels: int) -> list[list[torch.Tensor]]:
    """Flat outputs back into the head's groups (cls scores, box preds[, centernesses])."""
    return [list(flat[i:i + levels]) for i in range(0, len(flat), levels)]


def detect(detector: nn.Module, flat: Sequence[torch.Tensor], samples: list) -> list:
    """Decode + NMS of raw outputs with the cell's own head: the shared post-processing."""
    head = detector.bbox_head
    groups = regroup(flat, len(head.prior_generator.strides))
    results = head.predict_by_feat(*groups, batch_img_metas=[s.metainfo for s in samples],
                                   rescale=True)
    return detector.add_pred_to_datasample(samples, results)


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

    sess = session(path, threads)
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
            ref = list(HeadOutputs(model)(data["inputs"]))
            out = run_session(sess, data["inputs"])
            diff = max([diff, *(float((o - r).abs().max()) for o, r in zip(out, ref))])
            for key, flat in (("torch", ref), ("onnxruntime", out)):
                samples = [s.clone() for s in data["data_samples"]]
                evaluators[key].process(data_samples=detect(model, flat, samples),
                                        data_batch=batch)
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
        row = dict(cell=cell.key, onnx=str(path), weights=str(checkpoints[cell.key] or "random"),
                   ops=sorted({op for _, op in op_types(path)}), custom_ops=custom_ops(path),
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
        print(f"wrote {path}")
        rows.append(row)
    doc = dict(date=now(), torch=torch.__version__, onnxruntime=onnxruntime.__version__,
               opset=OPSET, raw_tol=RAW_TOL, ap_tol=AP_TOL, rows=rows,
               command=" ".join(["python -m bench"] + sys.argv[1:]))
    print(f"wrote {atomic_write_json(out / 'export.json', doc)}")
    for line in failed:
        print(f"FAILED {line}", file=sys.stderr)
    return 1 if failed else 0
