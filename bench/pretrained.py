"""Where a cell's starting weights come from: mmdet's usual ``torchvision://resnet50`` (paper),
a path, ``synthetic://`` (the profile's warm start, bench/warmstart.py: smoke) or ``none``.

mmengine resolves ``torchvision://`` through torchvision, which this stack does not install (the
PyPI build does not import beside a CPU torch), so the names are mapped to their download
addresses here; a local checkpoint path always works without network.
"""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

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


def apply_pretrained(cfg, spec: str | None, profile: str) -> None:
    """Point the config's backbone (and for ``synthetic://`` also its FPN) at ``spec``'s weights.

    The warm start is named by its cache key (``synthetic://<key>``), not by a path, so that the
    config and its hash do not depend on the machine."""
    from mmengine.config import ConfigDict

    spec = None if spec in (None, "", NONE) else spec
    if spec == SYNTHETIC:
        from .warmstart import uri

        src = uri(profile)
        neck = cfg.model.neck
        fpn = neck[0] if isinstance(neck, list) else neck  # SEPC variants: [FPN, SEPC]
        cfg.model.backbone.init_cfg = ConfigDict(type="Pretrained", checkpoint=src,
                                                 prefix="backbone.")
        fpn["init_cfg"] = ConfigDict(type="Pretrained", checkpoint=src, prefix="neck.")
        return
    cfg.model.backbone.init_cfg = ConfigDict(type="Pretrained", checkpoint=spec) if spec else None


def _hub_file(url: str) -> Path:
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


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


def fetch_pretrained(spec: str | None, profile: str) -> str | None:
    """In the job: a local file for the weights (downloaded into torch's hub cache if needed).

    ``synthetic://``: the warm start is built if this machine lacks it (under a lock, once) and
    None is returned, as the config already names it."""
    spec = check_pretrained(spec)
    if spec == SYNTHETIC:
        from .warmstart import ensure

        ensure(profile)
        return None
    if not spec or Path(spec).is_file():
        return spec
    url = TORCHVISION_URLS[spec.split("://", 1)[1]] if spec.startswith("torchvision://") else spec
    target = _hub_file(url)
    if target.is_file():
        return str(target)
    import torch.hub

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(target), progress=False)
    except Exception as exc:  # noqa: BLE001 - any network failure means the same to the user
        raise PretrainedError(
            f"cannot download backbone weights {spec} ({url}: {type(exc).__name__}: {exc}); "
            f"on a machine without network pass --pretrained /path/to/{os.path.basename(url)}"
        ) from None
    return str(target)
