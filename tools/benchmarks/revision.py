"""A project module as of a git revision, loaded beside the working tree's: before/after
benchmarks in one process (the machine's load then hits both alike) without keeping old code."""
from __future__ import annotations

import subprocess
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def module_at(rev: str, path: str) -> types.ModuleType:
    """Execute ``path`` (relative to the repository) as committed at ``rev`` in a fresh module.

    Its absolute imports resolve to the working tree, so this suits a self-contained module such
    as ``sepc/ops/deform_conv.py`` (torch imports only).
    """
    proc = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=REPO, capture_output=True,
                          text=True)
    if proc.returncode:
        raise SystemExit(f"cannot read {path} at {rev!r}: {proc.stderr.strip()}")
    module = types.ModuleType(f"{Path(path).stem}@{rev}")
    module.__file__ = f"{rev}:{path}"
    exec(compile(proc.stdout, module.__file__, "exec"), module.__dict__)
    return module
