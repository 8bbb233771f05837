#!/usr/bin/env bash
# Builds .venv from nothing: torch, mmcv 2.1.0 with compiled ops, mmdet 3.3.0 and the rest,
# all pinned in requirements.txt. Idempotent; a finished venv is marked by .venv/.sepc-ready.
#   TORCH_SPEC  pip requirement(s) for torch, e.g. a CUDA build on a cluster (default: the pin)
#   PIP_TORCH_ARGS  extra pip args for that torch install (e.g. --index-url of a CUDA wheel index)
#   PYTHON      interpreter to build the venv with (default: python3.11, else python3)
#   SEPC_WHEEL_CACHE  where the built mmcv wheel is kept (default: ~/.cache/sepc-bench/wheels)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
REQ=requirements.txt
pin() { grep -E "^$1==" "$REQ" | head -1; }
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
TORCH_SPEC=${TORCH_SPEC:-$(pin torch)}
MMCV_PIN=$(pin mmcv)
WHEEL_CACHE=${SEPC_WHEEL_CACHE:-$HOME/.cache/sepc-bench/wheels}
MMCV_CFLAGS="-O3 -g0 -DNDEBUG -fwrapv"

log() { printf '[setup %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

if [ -f "$VENV/.sepc-ready" ] && cmp -s "$REQ" "$VENV/.sepc-ready"; then
  log "$VENV is up to date"; exit 0
fi
"$PYTHON" -c 'import sys; assert sys.version_info[:2] >= (3, 10), "sepc-bench needs Python >= 3.10"'
[ -x "$VENV/bin/python" ] || { log "creating $VENV with $PYTHON"; "$PYTHON" -m venv "$VENV"; }
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check -q)

log "installing $TORCH_SPEC"
# shellcheck disable=SC2086
"${PIP[@]}" install $TORCH_SPEC ${PIP_TORCH_ARGS:-}
# torch pulls a setuptools without pkg_resources, which mmcv's setup.py imports.
"${PIP[@]}" install "setuptools>=77.0.3,<81" wheel ninja

# mmcv: one wheel per (mmcv, torch build, python, flags); pip's own cache ignores CFLAGS.
key=$("$PY" - "$MMCV_PIN" "$MMCV_CFLAGS" "${FORCE_CUDA:-}" "${TORCH_CUDA_ARCH_LIST:-}" <<'PYEOF'
import hashlib, sys, platform, torch
parts = [*sys.argv[1:], torch.__version__, str(torch.version.cuda), platform.python_version(), platform.machine()]
print(hashlib.sha1("|".join(parts).encode()).hexdigest()[:12])
PYEOF
)
wdir="$WHEEL_CACHE/mmcv-$key"
if ! ls "$wdir"/mmcv-*.whl >/dev/null 2>&1; then
  log "building $MMCV_PIN with compiled ops into $wdir (several minutes on 2 cores; cached afterwards)"
  mkdir -p "$wdir.tmp"
  MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} CFLAGS="$MMCV_CFLAGS" \
    "${PIP[@]}" wheel --no-build-isolation --no-deps --no-cache-dir "$MMCV_PIN" -w "$wdir.tmp"
  rm -rf "$wdir" && mv "$wdir.tmp" "$wdir"
else
  log "using cached mmcv wheel $wdir"
fi
"${PIP[@]}" install --no-deps "$wdir"/mmcv-*.whl

log "installing the pinned stack"
# torch is already in (possibly a user build): keep it out of the resolver's hands.
grep -vE '^(torch|mmcv)==' "$REQ" > "$VENV/requirements.rest.txt"
"${PIP[@]}" install -r "$VENV/requirements.rest.txt" "$MMCV_PIN" "torch==$("$PY" -c 'import torch;print(torch.__version__)')"
"${PIP[@]}" install --no-deps --no-build-isolation -e .
"$PY" -c 'import mmcv.ops, mmdet, sepc; from mmdet.registry import MODELS; assert MODELS.get("SEPC")' \
  || { log "import check failed"; exit 1; }
cp "$REQ" "$VENV/.sepc-ready"
log "done: $("$PY" -c 'import torch, mmcv, mmdet; print("torch", torch.__version__, "mmcv", mmcv.__version__, "mmdet", mmdet.__version__)')"
