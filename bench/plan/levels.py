"""The pyramid a config builds against the strides its heads expect, checked before anything runs.

A head is told its levels' strides (an anchor generator's or point generator's ``strides``, a
RoI extractor's ``featmap_strides``); the neck decides which levels it gets (the FPN's
``start_level`` and ``num_outs`` over the backbone's outputs, then any neck after it). Nothing in
mmdet compares the two: a pyramid from P3 (FPN ``start_level=1``) under an RPN with anchors at
strides 4-64 builds, trains and evaluates, with every level's anchors a stride off the level
they sit on, and ends far below the right config (jshilong/SEPC#22: 20 mAP against 90 on the
same data). :func:`check_levels` refuses such a config with one line, for every detector alike.

Strides are derived from the config, not measured: the backbone's for mmdet's ResNet family
(stem stride 4, then its ``strides``), the FPN's from its ``start_level``, ``end_level`` and
``num_outs`` (extra levels halve the last), a following neck keeps its input's levels. Where a
part is of a kind not known here, the check says nothing of the strides it cannot derive (the
level count is still checked where a neck states it).
"""
from __future__ import annotations

from bench.plan.cells import MatrixError

#: mmdet backbones with ResNet's layout: a stride-4 stem, then one stride per stage.
RESNET_LIKE = ("ResNet", "ResNetV1d", "ResNeXt", "Res2Net")
#: mmdet's ResNet default stage strides.
RESNET_STRIDES = (1, 2, 2, 2)
#: The pyramid-building necks whose output levels are derived here.
FPN_LIKE = ("FPN",)


def backbone_strides(backbone: dict) -> list[int] | None:
    """Strides of the backbone's outputs (``out_indices``), or None for an unknown kind."""
    if backbone.get("type") not in RESNET_LIKE:
        return None
    strides, total, per_stage = backbone.get("strides", RESNET_STRIDES), 4, []
    for s in strides[:backbone.get("num_stages", 4)]:
        total *= s
        per_stage.append(total)
    return [per_stage[i] for i in backbone.get("out_indices", (0, 1, 2, 3))]


def _fpn_levels(neck: dict, inputs: list[int] | None) -> tuple[int, list[int] | None, str]:
    """(level count, strides or None, how they follow) of an FPN's outputs."""
    n_in = len(neck["in_channels"])
    start, end = neck.get("start_level", 0), neck.get("end_level", -1)
    stop = n_in if end in (-1, n_in - 1) else end + 1
    count = neck["num_outs"]
    how = f"FPN start_level={start}, num_outs={count}"
    if inputs is None or len(inputs) != n_in:
        return count, None, how
    used = inputs[start:stop]
    extra = [used[-1] * 2 ** (k + 1) for k in range(count - len(used))]
    return count, (used + extra)[:count], f"{how} over the backbone's strides {inputs}"


def pyramid(model: dict) -> tuple[int | None, list[int] | None, str]:
    """(level count, strides, how they follow) of what the model's neck(s) give its heads;
    None where not derivable."""
    necks = model.get("neck")
    necks = necks if isinstance(necks, list) else [necks] if necks else []
    count, strides, how = None, backbone_strides(model.get("backbone") or {}), "the backbone"
    if strides is not None:
        count = len(strides)
    for neck in necks:
        kind = neck.get("type")
        if kind in FPN_LIKE:
            count, strides, how = _fpn_levels(neck, strides)
        elif "num_outs" in neck:  # a neck on the pyramid (SEPC, PConvNeck): levels pass through
            if count is not None and neck["num_outs"] != count:
                return neck["num_outs"], None, (f"{kind} num_outs={neck['num_outs']} after "
                                                f"{count} levels ({how})")
            count = neck["num_outs"]
        else:
            return None, None, f"a {kind} neck"
    return count, strides, how


def _head_strides(head: dict) -> list[int] | None:
    """The strides a dense head is told (its anchor or point generator's, or its own)."""
    gen = head.get("anchor_generator") or head.get("prior_generator") or {}
    strides = gen.get("strides", head.get("strides"))
    if strides is None:
        return None
    return [s[0] if isinstance(s, (list, tuple)) else s for s in strides]


def check_levels(model: dict, where: str) -> None:
    """Refuse, with one line naming ``where``, a model whose heads expect other pyramid levels
    than its neck gives: a dense head (``bbox_head``, ``rpn_head``) must get one level per
    stride it has, at those strides; a RoI extractor's ``featmap_strides`` must be the first
    levels' strides."""
    count, strides, how = pyramid(model)
    roi = (model.get("roi_head") or {}).get("bbox_roi_extractor") or {}
    expected = [(name, "anchor strides" if model[name].get("anchor_generator") else "strides",
                 _head_strides(model[name])) for name in ("bbox_head", "rpn_head")
                if model.get(name)]
    if roi.get("featmap_strides"):
        expected.append(("roi_head", "RoI featmap_strides", list(roi["featmap_strides"])))
    for name, what, want in expected:
        if want is None:
            continue
        prefix = name == "roi_head"  # RoIs are pooled from the first len(featmap_strides) levels
        if count is not None and (len(want) > count if prefix else len(want) != count):
            got = f"{count} levels" + (f" at strides {strides}" if strides else "")
        elif strides is not None and want != strides[:len(want)]:
            got = f"levels at strides {strides}"
        else:
            continue
        raise MatrixError(
            f"{where}: {name}'s {what} {want} do not match the neck's {got} ({how}); each "
            "level would be read with another level's anchors or scales (the mistake of "
            "jshilong/SEPC#22): fix the neck's start_level/num_outs or the head's strides")
