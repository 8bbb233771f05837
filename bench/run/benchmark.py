"""``python -m bench perf``: what SEPC costs at inference, detector x variant, side by side.

Each (input size, detector) group builds its variants with random weights (no download), folds
BN for all of them alike (``latency.fuse_for_inference``) and times them INTERLEAVED (A B C ...
A B C ...) after warm-up, so that load on a shared machine hits every variant the same way:

- model step: batch 1, a pre-processed image padded to the size, forward + NMS (``predict``);
- the paper's batch-8 protocol: ``test_step`` on 8 raw uint8 images, i.e. normalisation,
  padding, forward and NMS (no JPEG decoding or resizing: there is no dataset here).

``--runtime onnxruntime`` times each variant's ONNX graph (exported from the same fused model)
on ONNX Runtime instead, with ``--threads`` intra-op threads (one inter-op, sequential); both
protocols then run the graph's forward and the same decode + NMS in torch (mmdet's head), so a
step means the same on both runtimes. ``--runtime torch,onnxruntime`` interleaves both.

Plus parameters and FLOPs of the unfused model (mmengine's counter: convs, matmuls, BN,
upsampling; the deformable layers' bilinear sampling and NMS are not counted) and peak memory
of one model step: on CUDA ``max_memory_allocated`` above what was allocated before; on CPU the
peak resident set growth (psutil, sampled every ms) after returning freed heap to the OS
(glibc ``malloc_trim``), i.e. activations and workspace the step takes from the OS.
"""
from __future__ import annotations

import argparse
import ctypes
import logging
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from bench.cellstore import now
from bench.plan.cells import DETECTORS, VARIANTS, Cell, MatrixError, parse_list, row_variants
from bench.plan.options import Options
from bench.plan.resolve import resolve
from bench.plan.weights import NONE
from bench.repo import default_results
from bench.run import latency
from bench.run.latency import summarise
from reports.perf import perf_markdown
from reports.schema import atomic_write, atomic_write_json


@dataclass(frozen=True)
class Size:
    """An input size and the profile whose models run at it."""

    name: str
    profile: str
    image_hw: tuple[int, int]  # before padding to the model's size divisor
    with_data: bool  # classes from the profile's data (else the _base_'s COCO 80)


SIZES: dict[str, Size] = {s.name: s for s in [
    Size("paper", "paper", (800, 1333), False),  # R-50, width 256, 80 classes -> 800x1344
    Size("paper-1216", "paper", (800, 1216), False),  # a typical COCO image: 800x1216
    Size("smoke", "smoke", (256, 256), True),    # the smoke sweep's models (synthetic data)
]}

#: Runtimes ``--runtime`` takes: the PyTorch model, or its ONNX graph (bench/run/onnx.py) on
#: ONNX Runtime's CPU provider, the same decode + NMS after both.
RUNTIMES = ("torch", "onnxruntime")

#: Defaults per device: (warm-up, repetitions) of the model step and of the batch-8 protocol,
#: and the sizes the batch-8 protocol runs at (on CPU a paper-size batch of 8 takes ~30 s).
DEFAULTS = {
    "cpu": dict(warmup=2, reps=7, batch_warmup=1, batch_reps=3, batch_sizes="smoke"),
    "cuda": dict(warmup=20, reps=100, batch_warmup=10, batch_reps=50, batch_sizes="paper,smoke"),
}


def build_detector(size: Size, detector: str, variant: str, device: torch.device,
                   seed: int = 0) -> nn.Module:
    """The cell's detector from its profile config, random weights (pretrained off), eval mode."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.logging import MMLogger

    import sepc  # noqa: F401  (registers the SEPC neck and heads)

    register_all_modules(init_default_scope=True)
    cfg = resolve(Cell(size.profile, detector, variant), Options(pretrained=NONE),
                  data=size.with_data)
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # init_weights logs every parameter's initialiser
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)
    _distinct_offsets(model, seed)
    return model.to(device).eval()


@torch.no_grad()
def _distinct_offsets(model: nn.Module, seed: int) -> None:
    """Offsets of up to a pixel, constant per deformable conv and different between them.

    SEPC's offset convs start at zero, which makes the cls and loc convs of a level the same
    computation: ONNX Runtime's common-subexpression elimination then runs one of them (seen as
    4 GridSample of a graph's 8), which a trained model would never allow."""
    from sepc.ops import SEPCConv

    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, SEPCConv) and m.part_deform:
            m.conv_offset.bias.copy_(torch.rand(m.conv_offset.bias.shape, generator=g) * 2 - 1)


def make_batch(model: nn.Module, image_hw: tuple[int, int], batch: int, seed: int = 0) -> dict:
    """``test_step`` input: ``batch`` random uint8 images of ``image_hw`` with their metainfo."""
    from mmdet.structures import DetDataSample

    g = torch.Generator().manual_seed(seed)
    h, w = image_hw
    images = [torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8)
              for _ in range(batch)]
    samples = [DetDataSample(metainfo=dict(img_id=i, img_shape=(h, w), ori_shape=(h, w),
                                           scale_factor=(1.0, 1.0))) for i in range(batch)]
    return dict(inputs=images, data_samples=samples)


def _malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the RSS growth may then miss reused memory
        pass


def peak_memory_mb(fn: Callable[[], object], device: torch.device) -> float:
    """Memory one call of ``fn`` takes at its peak, in MiB (see the module docstring)."""
    if device.type == "cuda":
        latency.sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        latency.sync(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    import psutil

    proc = psutil.Process()
    _malloc_trim()
    before = proc.memory_info().rss
    peak, done = [before], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            done.wait(0.001)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        fn()
    finally:
        done.set()
        t.join()
    return max(0, max(peak[0], proc.memory_info().rss) - before) / 2**20


def interleaved(fns: dict[str, Callable[[], object]], warmup: int, reps: int,
                device: torch.device, progress=None) -> dict[str, list[float]]:
    """ms per call of each function, timed round-robin: all warm up, then ``reps`` rounds."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(warmup + reps):
        for key, fn in fns.items():
            latency.sync(device)
            t0 = time.perf_counter()
            fn()
            latency.sync(device)
            if r >= warmup:
                times[key].append((time.perf_counter() - t0) * 1e3)
            if progress is not None:
                progress.update(1)
    return times


@dataclass
class Settings:
    """What one run measures, how often (defaults per device: ``DEFAULTS``, ``settings_from``)."""

    device: torch.device
    dtype: str
    warmup: int
    reps: int
    batch: int
    batch_warmup: int
    batch_reps: int
    batch_sizes: tuple[str, ...]
    fuse: bool
    channels_last: bool
    flops: bool
    memory: bool
    runtimes: tuple[str, ...] = ("torch",)


def _autocast(s: Settings):
    if s.dtype == "fp16":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return nullcontext()


def measure_group(size: Size, detector: str, variants: list[str], s: Settings,
                  progress=None) -> list[dict]:
    """Rows of one (size, detector): every variant on every runtime timed interleaved (those
    that apply to the detector: experiments/matrix.py)."""
    import tempfile

    from bench.run import onnx

    variants = row_variants(detector, variants)
    models, rows, step_in, steps, tests = {}, {}, {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="sepc-onnx-") as tmp:
        for v in variants:
            if progress is not None:
                progress.set_postfix_str(f"{size.name} {detector} {v}: build")
            model = build_detector(size, detector, v, s.device)
            data = model.data_preprocessor(make_batch(model, size.image_hw, 1), False)
            inputs, samples = data["inputs"], data["data_samples"]
            row = dict(size=size.name, detector=detector, variant=v,
                       input="x".join(map(str, inputs.shape)),
                       params=latency.count_params(model))
            if s.flops:
                if progress is not None:
                    progress.set_postfix_str(f"{size.name} {detector} {v}: FLOPs")
                row["flops"] = latency.count_flops(model, inputs, samples)
            if s.fuse:
                latency.fuse_for_inference(model)
            if s.channels_last:
                model = model.to(memory_format=torch.channels_last)
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            models[v], step_in[v] = model, (inputs, samples)
            for rt in s.runtimes:
                rows[rt, v] = dict(row, runtime=rt)
                if rt == "torch":
                    steps[rt, v] = lambda m=model, i=inputs, d=samples: m.predict(
                        i, d, rescale=True)
                    tests[rt, v] = lambda batch, m=model: m.test_step(batch)
                    continue
                if progress is not None:
                    progress.set_postfix_str(f"{size.name} {detector} {v}: ONNX export")
                graphs = onnx.OrtGraphs(onnx.export_onnx(model, Path(tmp) / f"{v}.onnx"),
                                        torch.get_num_threads())
                steps[rt, v] = lambda m=model, x=graphs, i=inputs, d=samples: onnx.detect(
                    m, x, i, d)
                tests[rt, v] = lambda batch, m=model, x=graphs: _onnx_test_step(m, x, batch)

        with torch.inference_mode(), _autocast(s):
            if progress is not None:
                progress.set_postfix_str(f"{size.name} {detector}: model step")
            times = interleaved(steps, s.warmup, s.reps, s.device, progress)
            for key, fn in steps.items():
                rows[key].update({f"step_{k}": x for k, x in summarise(times[key]).items()},
                                 step_times_ms=times[key])
                if s.memory:
                    rows[key]["peak_mem_mb"] = peak_memory_mb(fn, s.device)
            if size.name in s.batch_sizes:
                if progress is not None:
                    progress.set_postfix_str(f"{size.name} {detector}: batch {s.batch}")
                batch = make_batch(models[variants[0]], size.image_hw, s.batch)
                times = interleaved({k: (lambda t=t: t(batch)) for k, t in tests.items()},
                                    s.batch_warmup, s.batch_reps, s.device, progress)
                for key in tests:
                    per_image = [t / s.batch for t in times[key]]
                    rows[key].update({f"batch_{k}": x for k, x in summarise(per_image).items()},
                                     batch_times_ms=per_image)
    for rt in s.runtimes:
        add_ratios({v: rows[rt, v] for v in variants})
    return [rows[rt, v] for rt in s.runtimes for v in variants]


def _onnx_test_step(model: nn.Module, graphs, batch: dict) -> list:
    """The batch protocol on ONNX Runtime: normalise + pad (torch), the graph(s), decode + NMS
    (between the graphs too, for a two-stage detector)."""
    from bench.run import onnx

    data = model.data_preprocessor(batch, False)
    return onnx.detect(model, graphs, data["inputs"], data["data_samples"])


def add_ratios(rows: dict[str, dict]) -> None:
    """Each variant's ratio to the baseline (in place): of the medians, and the median of the
    per-round ratios (each round against the baseline timed moments before: robust to drift)."""
    base = rows.get("baseline")
    for row in rows.values():
        for proto in ("step", "batch"):
            key = f"{proto}_median_ms"
            if base and key in row and key in base:
                row[f"{proto}_ratio"] = row[key] / base[key]
                row[f"{proto}_ratio_paired"] = statistics.median(
                    t / b for t, b in zip(row[f"{proto}_times_ms"], base[f"{proto}_times_ms"]))


def run(detectors: list[str], variants: list[str], sizes: list[str], s: Settings,
        show_progress: bool = True) -> dict:
    """All groups; returns the JSON document (``meta`` + ``rows``)."""
    from tqdm import tqdm

    total = 0
    for d in detectors:
        n = len(row_variants(d, variants)) * len(s.runtimes)
        total += sum((s.warmup + s.reps) * n + ((s.batch_warmup + s.batch_reps) * n
                                                 if z in s.batch_sizes else 0) for z in sizes)
    rows: list[dict] = []
    with tqdm(total=total, desc="perf", unit="call", disable=not show_progress,
              file=sys.stderr) as bar:
        for z in sizes:
            for d in detectors:
                rows += measure_group(SIZES[z], d, variants, s, bar)
    return dict(meta=meta(s), rows=rows)


def meta(s: Settings) -> dict:
    import mmcv
    import mmdet

    from sepc.ops import deform_conv

    dev = s.device
    return dict(
        date=now(), device=latency.device_name(dev), device_type=dev.type,
        threads=torch.get_num_threads(), dtype=s.dtype, torch=torch.__version__,
        mmcv=mmcv.__version__, mmdet=mmdet.__version__, deform_impl=deform_conv.DEFAULT_IMPL,
        fused_bn=s.fuse, channels_last=s.channels_last, warmup=s.warmup, reps=s.reps,
        runtimes=list(s.runtimes), **_ort_meta(s),
        batch=s.batch, batch_warmup=s.batch_warmup, batch_reps=s.batch_reps,
        batch_sizes=list(s.batch_sizes), command=" ".join(["python -m bench"] + sys.argv[1:]),
        load_avg=list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        flops_note="mmengine FlopAnalyzer (1 multiply-add = 1 FLOP) of the unfused model: "
                   "deformable bilinear sampling and NMS not counted",
        memory_note=("CUDA max_memory_allocated above the model's own" if dev.type == "cuda"
                     else "peak RSS growth during one model step (after malloc_trim)"))


def _ort_meta(s: Settings) -> dict:
    if "onnxruntime" not in s.runtimes:
        return {}
    import onnxruntime

    from bench.run.onnx import OPSET

    return dict(onnxruntime=onnxruntime.__version__, onnx_opset=OPSET,
                onnx_note=f"ONNX Runtime {onnxruntime.__version__} CPU provider, "
                          f"{torch.get_num_threads()} intra-op threads, 1 inter-op, sequential, "
                          "no spin-wait; the graph's forward, then decode + NMS in torch "
                          "(mmdet's head), as the torch step")


def write(doc: dict, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    js, md = out_dir / "perf.json", out_dir / "perf.md"
    atomic_write_json(js, doc)
    atomic_write(md, perf_markdown(doc))
    return js, md


def settings_from(args: argparse.Namespace) -> tuple[Settings, list[str], list[str], list[str]]:
    """Checked settings and selection; bad input is a MatrixError before anything is built."""
    detectors = parse_list(args.detectors, DETECTORS, "detector")
    variants = parse_list(args.variants, VARIANTS, "variant")
    if "baseline" not in variants:
        variants = ["baseline", *variants]
    sizes = parse_list(args.sizes, SIZES, "size")
    runtimes = parse_list(args.runtime, RUNTIMES, "runtime")
    name = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if name.split(":")[0] not in DEFAULTS:
        raise MatrixError(f"--device {name}: only cpu and cuda[:N] are supported")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise MatrixError(f"--device {name}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MatrixError(f"--device {name}: torch sees no CUDA device here")
    if "onnxruntime" in runtimes and (device.type != "cpu" or args.channels_last):
        raise MatrixError("--runtime onnxruntime runs ONNX Runtime's CPU provider on NCHW "
                          "input: it needs --device cpu and no --channels-last")
    if args.dtype == "fp16" and device.type != "cuda":
        raise MatrixError("--dtype fp16 needs a CUDA device (autocast fp16 on CPU is not the "
                          "deployment case and mmcv's CPU ops have no fp16)")
    for name in ("threads", "warmup", "reps", "batch", "batch_warmup", "batch_reps"):
        v = getattr(args, name)
        if v is not None and v < (1 if name in ("threads", "reps", "batch", "batch_reps")
                                  else 0):
            raise MatrixError(f"--{name.replace('_', '-')} {v}: too small")
    d = DEFAULTS[device.type]
    text = args.batch_sizes if args.batch_sizes is not None else d["batch_sizes"]
    batch_sizes = [] if text.strip() == "none" else parse_list(text, SIZES, "size")
    s = Settings(device=device, dtype=args.dtype,
                 warmup=d["warmup"] if args.warmup is None else args.warmup,
                 reps=args.reps or d["reps"], batch=args.batch,
                 batch_warmup=(d["batch_warmup"] if args.batch_warmup is None
                               else args.batch_warmup),
                 batch_reps=args.batch_reps or d["batch_reps"], batch_sizes=tuple(batch_sizes),
                 fuse=not args.no_fuse, channels_last=args.channels_last,
                 flops=not args.no_flops, memory=not args.no_memory, runtimes=tuple(runtimes))
    return s, detectors, variants, sizes


def main(args: argparse.Namespace) -> int:
    s, detectors, variants, sizes = settings_from(args)
    out = (args.out or default_results("smoke")).resolve()
    if args.threads:
        torch.set_num_threads(args.threads)
    doc = run(detectors, variants, sizes, s, show_progress=not args.quiet)
    js, md = write(doc, out)
    print(perf_markdown(doc))
    print(f"wrote {js}\nwrote {md}")
    return 0
