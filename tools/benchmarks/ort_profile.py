"""Where one forward's time goes on ONNX Runtime, by op type, per variant (its profiler).

    python -m tools.benchmarks.ort_profile [--detector retinanet] [--variants baseline,sepc_lite]
        [--size paper-1216] [--threads 1] [--json F]

Each variant's graph (bench perf's random model, BN folded, exported as ``bench export`` does)
runs once to warm up, then once under ONNX Runtime's profiler; the kernel times of that second
run are summed by op type. Conv is every plain conv (the deformable convs' offset convs
included); a deformable conv itself is its sampling grid (Range, Mul, Add, Div, ...),
``GridSample`` and one ``MatMul``.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from bench.run import benchmark as perf
from bench.run import latency, onnx


def profile(path: Path, hw: tuple[int, int], threads: int) -> tuple[float, Counter, Counter]:
    """(wall ms of the profiled run, kernel ms by op type, node count by op type)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.enable_profiling = True
    so.profile_file_prefix = str(path.with_suffix(""))
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    image = np.random.default_rng(0).standard_normal((1, 3, *hw), dtype=np.float32)
    sess.run(None, {"image": image})
    t0 = time.perf_counter()
    sess.run(None, {"image": image})
    wall = (time.perf_counter() - t0) * 1e3
    events = [e for e in json.loads(Path(sess.end_profiling()).read_text())
              if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    ms, count = Counter(), Counter()
    for e in events[len(events) // 2:]:  # the second of two runs
        ms[e["args"]["op_name"]] += e["dur"] / 1e3
        count[e["args"]["op_name"]] += 1
    return wall, ms, count


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--detector", default="retinanet")
    p.add_argument("--variants", default="baseline,sepc_lite")
    p.add_argument("--size", default="paper-1216", choices=list(perf.SIZES))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    size = perf.SIZES[args.size]
    hw = tuple(-(-d // 32) * 32 for d in size.image_hw)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for v in args.variants.split(","):
            model = latency.fuse_for_inference(
                perf.build_detector(size, args.detector, v, torch.device("cpu")))
            path = onnx.export_onnx(model, Path(tmp) / f"{v}.onnx")
            wall, ms, count = profile(path, hw, args.threads)
            total = sum(ms.values())
            print(f"\n{args.detector} {v}, {hw[0]}x{hw[1]}, {args.threads} thread(s): "
                  f"{wall:.0f} ms wall, {total:.0f} ms in kernels")
            for op, t in ms.most_common(10):
                print(f"  {op:18s} {t:9.1f} ms {100 * t / total:5.1f}%  ({count[op]} nodes)")
            out[v] = dict(wall_ms=wall, kernel_ms=dict(ms), nodes=dict(count))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
