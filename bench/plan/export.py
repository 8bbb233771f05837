"""``bench config --export DIR``: a cell's config as a standalone mmdet config file."""
from __future__ import annotations

from pathlib import Path

from bench.plan.cells import Cell
from bench.plan.config import config_hash
from bench.plan.layout import layout
from bench.plan.options import Options
from bench.plan.resolve import resolve
from bench.plan.warmstart import WarmStartError, cache_root, check_entry, paths
from bench.plan.weights import SYNTHETIC
from reports.schema import atomic_write


def _local_warm_start(cfg) -> None:
    """A ``synthetic://<key>`` checkpoint is a scheme only the harness registers: an exported
    config names the cached file instead, so mmdet's tools load it without the harness."""
    neck = cfg.model.get("neck")
    parts = [cfg.model.backbone, *(neck if isinstance(neck, list) else [neck] if neck else [])]
    for part in parts:
        init = part.get("init_cfg") or {}
        src = init.get("checkpoint") if isinstance(init, dict) else None
        if isinstance(src, str) and src.startswith(SYNTHETIC):
            k = src[len(SYNTHETIC):]
            why = check_entry(k)
            if why is not None:
                raise WarmStartError(
                    f"warm start {k} in {cache_root()} is not usable ({why}): build "
                    "it with `python -m bench.run.pretrain` before exporting, or "
                    "pass --pretrained none"
                )
            init["checkpoint"] = str(paths(k)[0])


def export_config(cell: Cell, opts: Options, folder: Path) -> Path:
    """The cell's config as an mmdet config file ``folder/<cell key>.py`` (atomic)."""
    cfg = resolve(cell, opts, work_dir=str(Path("work_dirs") / cell.profile / cell.key))
    _local_warm_start(cfg)
    lay = layout(cell, opts)
    head = (f"# sepc-bench cell {cell.key} of profile {cell.profile} (config_hash "
            f"{config_hash(cfg)}), exported by `python -m bench config --export`.\n"
            f"# Needs only `sepc` importable. Trains with mmdet's own tools, e.g.\n"
            f"#   python tools/train.py {cell.key}.py                 (one device)\n"
            f"#   bash tools/dist_train.sh {cell.key}.py {lay.tasks_per_node}           "
            f"({lay.describe()})\n"
            f"# The lr is for a total batch of {lay.total_batch} (auto_scale_lr.base_batch_size): "
            f"on fewer devices add --auto-scale-lr.\n")
    return atomic_write(Path(folder) / f"{cell.key}.py", head + cfg.pretty_text)
