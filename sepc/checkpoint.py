"""Checkpoints: loading mmengine's own under torch >= 2.6, and converting the authors' mmdet-1.x
files.

torch >= 2.6 unpickles with ``weights_only=True`` by default and mmengine 0.10.7 does not pass
``weights_only``, so resuming from an mmengine checkpoint fails on the few non-tensor types it
stores: the message hub's ``HistoryBuffer`` (whose statistics methods pickle as
``getattr(HistoryBuffer, 'mean')``), numpy arrays, scalars and dtypes. Instead of switching the
protection off, ``allow_mmengine_checkpoints`` replaces mmengine's local-file loader by one that
still loads with ``weights_only=True`` and allows exactly those types, for its own loads only:
torch's global allow-list is left as it is.
"""
from __future__ import annotations

import os.path as osp
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

_ALLOWED = False


def mmengine_safe_globals() -> list:
    """The non-tensor types an mmengine checkpoint (meta, message hub, optimizer) holds."""
    import numpy as np
    from mmengine.logging import HistoryBuffer

    try:  # numpy >= 2 moved the pickling helpers to numpy._core
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar
    dtype_classes = [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    # getattr: only ever applied to these allowed objects; the unpickler refuses to call what it
    # returns unless that is itself allowed.
    return [HistoryBuffer, getattr, _reconstruct, scalar, np.ndarray, np.dtype, *dtype_classes]


def load_mmengine_file(filename: str, map_location=None):
    """mmengine's local checkpoint loader, weights-only with mmengine's own types allowed."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f"{filename} can not be found.")
    with torch.serialization.safe_globals(mmengine_safe_globals()):
        return torch.load(filename, map_location=map_location, weights_only=True)


def allow_mmengine_checkpoints() -> None:
    """Route mmengine's local checkpoint loads (resume, load_from) through
    ``load_mmengine_file`` (idempotent)."""
    global _ALLOWED
    if _ALLOWED:
        return
    from mmengine.runner.checkpoint import CheckpointLoader

    CheckpointLoader.register_scheme(prefixes="", force=True)(load_mmengine_file)
    _ALLOWED = True


class CheckpointConversionError(ValueError):
    """A checkpoint that does not map one-to-one onto the model; the message names the keys."""


# mmdet 1.x -> this project's mmdet 3.x model. Backbone (ResNet), FPN (ConvModule ``.conv``), the
# SEPC neck (``neck.1.*``: its names are kept on purpose) and the RetinaNet/FSAF/FreeAnchor heads
# (``retina_cls``/``retina_reg``/``cls_convs``/``reg_convs``) kept their names from 1.x to 3.x;
# what changed is the container: DataParallel/DDP prefixes and the file layout. Rules are
# (pattern, replacement) applied in order; extend them here if a checkpoint needs more.
# Classification channels need no reordering: 1.x sigmoid heads have 80 outputs, channel c being
# class c+1 of 1.x's 1-based labels, which is 3.x's label c. Box decoding did change (1.x's +1
# pixel convention and anchor centres): a released model is evaluated with mmdet's
# LegacyAnchorGenerator / LegacyDeltaXYWHBBoxCoder, which is a config matter, not a key matter.
MMDET1_TO_3_RULES: list[tuple[str, str]] = [
    (r"^module\.", ""),
    # RetinaNet heads of mmdet <= 0.5.3 used bare nn.Conv2d towers (mmdet's own upgrade rule).
    (r"((?:cls|reg)_convs\.\d+)\.(weight|bias)$", r"\1.conv.\2"),
]


def map_mmdet1_key(key: str, rules: list[tuple[str, str]] = MMDET1_TO_3_RULES) -> str:
    for pattern, repl in rules:
        key = re.sub(pattern, repl, key)
    return key


def shorten_keys(keys: list[str], n: int = 12) -> str:
    """The first ``n`` keys, comma-separated, and how many more."""
    more = f" ... (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def convert_state_dict(src: Mapping[str, Tensor], model: nn.Module,
                       rules: list[tuple[str, str]] = MMDET1_TO_3_RULES) -> dict[str, Tensor]:
    """Map an mmdet-1.x state dict onto ``model``; every tensor must be used and every model key
    set.

    Raises CheckpointConversionError naming unmapped keys, shape mismatches and missing keys,
    with a hint when the deformable layers of checkpoint and model disagree.
    """
    target = model.state_dict()
    out: dict[str, Tensor] = {}
    unmapped, mismatched = [], []
    for key, value in src.items():
        new = map_mmdet1_key(key, rules)
        if new not in target:
            unmapped.append(key)
        elif tuple(target[new].shape) != tuple(value.shape):
            mismatched.append(f"{key} {tuple(value.shape)} vs model {tuple(target[new].shape)}")
        else:
            out[new] = value
    # BN counters did not exist in old checkpoints; they are bookkeeping, not weights.
    missing = [k for k in target if k not in out and not k.endswith("num_batches_tracked")]
    if unmapped or mismatched or missing:
        parts = []
        if unmapped:
            parts.append(f"{len(unmapped)} checkpoint keys map to nothing in the model: "
                         f"{shorten_keys(unmapped)}")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches: {shorten_keys(mismatched)}")
        if missing:
            parts.append(
                f"{len(missing)} model keys missing from the checkpoint: {shorten_keys(missing)}"
            )
        if any("conv_offset" in k for k in unmapped):
            parts.append("hint: the checkpoint has deformable (offset) convs that this variant "
                         "lacks: is it a SEPC / SEPC-lite checkpoint?")
        if any("conv_offset" in k for k in missing):
            parts.append("hint: this variant has deformable convs the checkpoint lacks")
        if any(
            k.split(" ")[0].endswith(("retina_cls.weight", "retina_cls.bias")) for k in mismatched
        ):
            parts.append("hint: the classifier's width (classes x anchors) differs: are the data "
                         "root's categories the checkpoint's (COCO's 80 for the released models), "
                         "and is it the same detector?")
        raise CheckpointConversionError("; ".join(parts))
    for k, v in target.items():  # keep the model's own BN counters
        out.setdefault(k, v)
    return out


def read_mmdet1_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """The state dict of an mmdet-1.x checkpoint file ({'meta', 'state_dict', 'optimizer'})."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = load_mmengine_file(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - re-raised with the reason
        raise CheckpointConversionError(
            f"{path}: cannot be read as a weights-only checkpoint ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0]})") from exc
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, Mapping) else None
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointConversionError(f"{path}: no state_dict of tensors in this file")
    return dict(state)


def load_mmdet1_checkpoint(model: nn.Module, path: str | Path) -> dict[str, Tensor]:
    """Load an mmdet-1.x checkpoint into ``model`` exactly (strict); returns the converted dict."""
    converted = convert_state_dict(read_mmdet1_checkpoint(path), model)
    model.load_state_dict(converted, strict=True)
    return converted


def to_mmdet1_state_dict(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The inverse mapping (3.x names -> 1.x names, as a DataParallel-free 1.x file holds them)."""
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


def save_mmdet1_checkpoint(state: Mapping[str, Tensor], path: str | Path,
                           classes: tuple[str, ...] = ()) -> None:
    """Write ``state`` as mmdet 1.1 / mmcv 0.4 saved a checkpoint (tests, round trips): torch's
    legacy (pre-zip) serialization, ``meta`` with versions and config text, ``state_dict`` under
    1.x names, and the SGD optimizer state mmcv's runner saved beside them."""
    sd = to_mmdet1_state_dict(state)
    meta = {"mmdet_version": "1.1.0+sepc", "mmcv_version": "0.4.3", "config": "# 1.x config text",
            "CLASSES": tuple(classes), "epoch": 12, "iter": 0, "time": "Thu Mar 12 00:00:00 2020"}
    optimizer = {"state": {i: {"momentum_buffer": torch.zeros_like(v)}
                           for i, v in enumerate(sd.values()) if v.is_floating_point()},
                 "param_groups": [{"lr": 1e-4, "momentum": 0.9, "dampening": 0,
                                   "weight_decay": 1e-4, "nesterov": False, "initial_lr": 0.01,
                                   "params": list(range(len(sd)))}]}
    torch.save({"meta": meta, "state_dict": sd, "optimizer": optimizer}, path,
               _use_new_zipfile_serialization=False)
