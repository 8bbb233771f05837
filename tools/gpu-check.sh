#!/usr/bin/env bash
# GPU acceptance of sepc-bench, in one go on one GPU (under 8 minutes on a current data-centre
# GPU): mmcv's CUDA deformable conv against the exact CPU path, `bench perf --device cuda` in
# fp32 and fp16 (RetinaNet, all 5 variants, batch-1 and batch-8 protocols), and a paper-size
# pilot of 2 cells on a generated COCO-layout folder. Writes one JSON file (--out).
#
#   tools/gpu-check.sh [--out FILE] [--dry-run]
#
# --dry-run runs the same steps on the CPU at the smoke size (CI runs it: it checks the script,
# not a GPU). Needs .venv with a CUDA build of torch and mmcv's CUDA ops for the real run
# (TORCH_SPEC=... FORCE_CUDA=1 make setup; see docs/cluster.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || { echo "gpu-check: $PY missing: run make setup first" >&2; exit 2; }
exec "$PY" tools/gpu_check.py "$@"
