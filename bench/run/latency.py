"""Latency, parameters and FLOPs of a built detector.

Two protocols, each saying what it times:
1. model step: batch 1, one real validation image padded to a fixed size, forward + NMS
   (no decoding, no resizing): warm-up, then the median and p10/p90 of ``iters`` calls.
2. the paper's: batch 8 straight from the validation loader, so JPEG decoding, resizing,
   normalisation, forward and NMS are all in; the first ``skip`` batches are not timed, then the
   mean per image over ``iters`` batches.
"""
from __future__ import annotations

import statistics
import time
from contextlib import contextmanager
from itertools import cycle, islice

import torch
from torch import nn


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so that a timer around a call measures the call."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def _eval(model: nn.Module):
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def fixed_batch(model: nn.Module, data: dict, size: tuple[int, int]) -> tuple[torch.Tensor, list]:
    """One pre-processed image (from a test-pipeline ``data`` item) zero-padded to ``size``."""
    out = model.data_preprocessor(data, False)
    inputs, samples = out["inputs"], out["data_samples"]
    h, w = size
    if inputs.shape[-2] > h or inputs.shape[-1] > w:
        inputs = torch.nn.functional.interpolate(inputs, size=(h, w), mode="bilinear",
                                                 align_corners=False)
    inputs = torch.nn.functional.pad(inputs, (0, w - inputs.shape[-1], 0, h - inputs.shape[-2]))
    for s in samples:
        s.set_metainfo(dict(batch_input_shape=(h, w), pad_shape=(h, w)))
    return inputs[:1], samples[:1]


def model_step(model: nn.Module, inputs: torch.Tensor, samples: list, warmup: int = 20,
               iters: int = 100) -> dict:
    """Batch-1 forward + NMS on a fixed padded input: median and p10/p90 in ms."""
    device = inputs.device
    times = []
    with _eval(model):
        for i in range(warmup + iters):
            sync(device)
            t0 = time.perf_counter()
            model.predict(inputs, samples, rescale=True)
            sync(device)
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1e3)
    return step_row(times, inputs)


def summarise(times: list[float]) -> dict:
    """median and p10/p90 (ms) of one function's repetitions."""
    q = statistics.quantiles(times, n=10, method="inclusive") if len(times) > 1 else times * 9
    return dict(median_ms=statistics.median(times), p10_ms=q[0], p90_ms=q[-1], n=len(times))


def step_row(times: list[float], inputs: torch.Tensor) -> dict:
    """The result-row fields of a model step timed ``len(times)`` times (rounds kept, in ms)."""
    s = summarise(times)
    return dict(latency_ms=s["median_ms"], latency_p10_ms=s["p10_ms"], latency_p90_ms=s["p90_ms"],
                latency_iters=s["n"], latency_rounds_ms=[round(t, 4) for t in times],
                latency_input="x".join(map(str, inputs.shape)))


def paper_protocol(model: nn.Module, loader, skip: int = 100, iters: int = 200) -> dict:
    """The paper's timing: batches of 8 from the loader (pre-processing included), mean ms/image.

    ``latency_paper_images`` counts the distinct images the timing went through: with an
    unsharded loader, ``min(skip + iters, len(loader))`` batches' worth."""
    device = next(model.parameters()).device
    per_image = []
    seen: set = set()
    with _eval(model):
        batches = islice(cycle(loader), skip + iters) if len(loader) < skip + iters else loader
        it = iter(batches)
        for i in range(skip + iters):
            sync(device)
            t0 = time.perf_counter()
            data = next(it)
            model.test_step(data)
            sync(device)
            if i >= skip:
                per_image.append((time.perf_counter() - t0) * 1e3 / len(data["inputs"]))
            seen.update(s.metainfo.get("img_id") for s in data["data_samples"])
    return dict(latency_paper_ms=statistics.fmean(per_image),
                latency_paper_batch=loader.batch_size, latency_paper_iters=iters,
                latency_paper_images=len(seen))


def paper_loader(dataset, batch: int):
    """The validation images in order, ``batch`` at a time, for the paper's protocol: all of
    them, in one process (mmengine's DefaultSampler would hand a DDP rank one shard only)."""
    from mmengine.dataset import pseudo_collate
    from torch.utils.data import DataLoader, SequentialSampler

    return DataLoader(dataset, batch_size=batch, num_workers=0,
                      sampler=SequentialSampler(dataset), collate_fn=pseudo_collate)


def fuse_for_inference(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm into the conv before it, in place, in eval mode; returns ``model``.

    mmcv's ``fuse_conv_bn`` folds the backbone's conv+BN pairs, ``sepc.fuse_ibn`` the SEPC
    neck's iBN (which mmcv's pass cannot see: it follows a sum of convs). Timed models of every
    variant, the baseline included, get the same treatment; outputs stay equal to float rounding.
    """
    from mmcv.cnn import fuse_conv_bn

    from sepc import fuse_ibn

    model.eval()
    return fuse_ibn(fuse_conv_bn(model))


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_flops(model: nn.Module, inputs: torch.Tensor, samples: list) -> float | None:
    """FLOPs of backbone+neck+head on ``inputs`` (mmengine's counter: conv, matmul, BN, upsample;
    the deformable layers count as their conv, their bilinear sampling and NMS are left out).

    Counted on sepc's traceable deformable path, whatever the device would otherwise use."""
    from mmengine.analysis import FlopAnalyzer

    from sepc.ops import deform_conv

    class _Forward(nn.Module):
        def __init__(self, det: nn.Module) -> None:
            super().__init__()
            self.det = det

        def forward(self, x: torch.Tensor):
            return self.det._forward(x, samples)

    with deform_conv.using("torch"), _eval(model):
        analyzer = FlopAnalyzer(_Forward(model).eval(), (inputs,))
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        return float(analyzer.total())
