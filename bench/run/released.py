"""An authors' released checkpoint into its cell's model: the variant its keys show, checked
against the cell's, then the exact conversion (sepc.checkpoint). Run in the cell's job
(bench/run/job.py), so that one bad file fails its cell and not the sweep; which file is which
cell is bench/plan/manifest.py's.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from bench.plan.cells import VARIANTS

if TYPE_CHECKING:  # torch is imported by the job, not by the command line
    from torch import Tensor, nn


def load_released(model: nn.Module, state: Mapping[str, Tensor], variant: str,
                  path: Path) -> None:
    """Load an mmdet-1.x state dict into ``model`` exactly: a neck of ``variant``'s kind, every
    tensor used, every model key set, shapes equal (sepc.checkpoint.convert_state_dict), else
    CheckpointConversionError naming the file and the keys."""
    from sepc.checkpoint import CheckpointConversionError, convert_state_dict

    why = variant_mismatch(list(state), variant)
    if why:
        raise CheckpointConversionError(f"{path.name}: {why}")
    try:
        converted = convert_state_dict(state, model)
    except CheckpointConversionError as exc:
        raise CheckpointConversionError(f"{path.name}: {exc}") from None
    model.load_state_dict(converted, strict=True)


# -- what a checkpoint's keys say about its variant ------------------------------------------
_NECK = "neck.1."  # the SEPC neck after the FPN (neck.0)
#: What a variant has that a checkpoint can lack, as the message names it.
_NEEDS = {"sepc": "neck.1.* (the SEPC neck)", "ibn": "neck.1.*.bn/cbn/lbn (iBN)",
          "pconv_deform": "neck.1.Pconvs.*.Pconv.*.conv_offset.* (deformable PConvs)",
          "lcconv_deform": "neck.1.{cconv,lconv}.conv_offset.* (deformable cls/loc convs)"}


def _switch_keys(keys: list[str]) -> dict[str, list[str]]:
    """Per switch of the variant table, the checkpoint keys that show it on (none: off)."""
    neck = [k for k in keys if k.startswith(_NECK)]
    return dict(
        sepc=neck,
        ibn=[k for k in neck if re.search(r"\.(bn|cbn|lbn)\.", k)],
        pconv_deform=[k for k in neck if ".Pconvs." in k and ".conv_offset." in k],
        lcconv_deform=[k for k in neck if re.search(r"\.(cconv|lconv)\.conv_offset\.", k)],
    )


def _describe(on: dict[str, bool]) -> str:
    names = {"sepc": "SEPC neck", "ibn": "iBN", "pconv_deform": "deformable PConvs",
             "lcconv_deform": "deformable cls/loc convs"}
    return ", ".join(names[s] for s, flag in on.items() if flag) or "plain FPN"


def variant_mismatch(keys: list[str], variant: str) -> str | None:
    """Why the checkpoint's tensors do not fit ``variant`` (None when they do), naming keys."""
    from sepc.checkpoint import shorten_keys

    want = VARIANTS[variant]
    # named as the model names them: without the "module." of a DataParallel-wrapped save
    found = _switch_keys([k.removeprefix("module.") for k in keys])
    have = {s: bool(k) for s, k in found.items()}
    wanted = {s: getattr(want, s) for s in have}
    differ = [s for s in have if have[s] != wanted[s]]
    if not differ:
        return None
    like = next((v.label for v in VARIANTS.values() if all(have[s] == getattr(v, s) for s in have)),
                None)
    parts = [f"the checkpoint's neck is {like or 'no variant of the table'}'s "
             f"({_describe(have)}), the cell is {want.label} ({_describe(wanted)})"]
    extra = sorted({k for s in differ if have[s] for k in found[s]})
    if extra:
        parts.append(f"keys {want.label} has no place for: {shorten_keys(extra, 6)}")
    lacking = [_NEEDS[s] for s in differ if not have[s]]
    if lacking:
        parts.append(f"{want.label} needs what the checkpoint lacks: {', '.join(lacking)}")
    return "; ".join(parts)
