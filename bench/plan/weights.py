"""Where a cell's starting weights come from: mmdet's usual ``torchvision://resnet50`` (paper),
a path, ``synthetic://`` (the profile's warm start, bench/plan/warmstart.py: smoke) or ``none``.
The names, their checks and how a config points at them; nothing here downloads or trains
(bench/run/pretrain.py does, in the job).

mmengine resolves ``torchvision://`` through torchvision, which this stack does not install (the
PyPI build does not import beside a CPU torch), so the names are mapped to their download
addresses here; a local checkpoint path always works without network.
"""
from __future__ import annotations

from pathlib import Path

TORCHVISION_URLS = {
    "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "resnet50": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    "resnet101": "https://download.pytorch.org/models/resnet101-63fe2227.pth",
}


#: ``--pretrained none``: every weight from its initialiser (also how the warm start trains).
NONE = "none"
#: The profile's own warm start: backbone + FPN trained once on its synthetic training split.
SYNTHETIC = "synthetic://"


class PretrainedError(RuntimeError):
    """Backbone weights that cannot be had: the message says what to pass instead."""


def apply_weights(cfg, checkpoint: str | None, warm_start: bool = False,
                  with_neck: bool = True) -> None:
    """Point the config's backbone at ``checkpoint`` (None: every weight from its initialiser);
    ``warm_start``: a warm start's ``synthetic://<key>``, whose file holds ``backbone.*`` and
    ``neck.*`` (the FPN), the latter loaded too with ``with_neck``."""
    from mmengine.config import ConfigDict

    if warm_start:
        cfg.model.backbone.init_cfg = ConfigDict(type="Pretrained", checkpoint=checkpoint,
                                                 prefix="backbone.")
        if with_neck:
            neck = cfg.model.neck
            fpn = neck[0] if isinstance(neck, list) else neck  # SEPC variants: [FPN, SEPC]
            fpn["init_cfg"] = ConfigDict(type="Pretrained", checkpoint=checkpoint,
                                         prefix="neck.")
        return
    cfg.model.backbone.init_cfg = (ConfigDict(type="Pretrained", checkpoint=checkpoint)
                                   if checkpoint else None)


def check_pretrained(spec: str | None) -> str | None:
    """At submit time: a local path must exist; a download name must be a known one; ``none``
    trains from random weights."""
    if not spec or spec == NONE:
        return None
    if spec == SYNTHETIC:
        return spec
    if spec.startswith("torchvision://"):
        name = spec.split("://", 1)[1]
        if name not in TORCHVISION_URLS:
            raise PretrainedError(f"unknown {spec} (known: {', '.join(TORCHVISION_URLS)})")
        return spec
    if spec.startswith(("http://", "https://")):
        return spec
    path = Path(spec).expanduser()
    if not path.is_file():
        raise PretrainedError(f"pretrained checkpoint not found: {path}")
    return str(path.resolve())
