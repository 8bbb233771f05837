"""Published numbers, as data: SEPC's (CVPR 2020) table and latency claims, and beside them,
marked as not the paper's, figures for detectors the paper did not run (ATSS: UniverseNet's).

Sources: the paper (arXiv 2005.03101), Table 1, its text and its abstract; mmdetection 1.1's
model zoo for the RetinaNet and Faster R-CNN baselines the paper does not print; mmdet 2.x's
model zoo and UniverseNet (shinya7y/UniverseNet) for ATSS; mmdet 3.x's model zoo for FCOS. The
reports quote them beside the measured table (reports/comparable.py says which profiles are
comparable).
"""
from __future__ import annotations

from experiments.matrix import VARIANTS

#: COCO val2017 box AP, R-50-FPN, 1x schedule.
PUBLISHED_AP: dict[tuple[str, str], float] = {
    ("retinanet", "baseline"): 35.6,
    ("retinanet", "pconv"): 37.0,
    ("retinanet", "ibn"): 37.8,
    ("retinanet", "sepc_lite"): 38.5,
    ("retinanet", "sepc"): 39.6,
    ("freeanchor", "baseline"): 38.5,
    ("freeanchor", "pconv"): 39.7,
    ("freeanchor", "ibn"): 41.0,
    ("freeanchor", "sepc_lite"): 41.9,
    ("freeanchor", "sepc"): 43.0,
    ("fsaf", "baseline"): 36.8,
    ("fsaf", "pconv"): 38.6,
    ("fsaf", "ibn"): 39.1,
    ("fsaf", "sepc_lite"): 40.5,
    ("fsaf", "sepc"): 41.6,
    # not the paper's: ATSS with SEPC without iBN as UniverseNet ported it (mmdet 2.x), beside
    # mmdet 2.x's own ATSS (NOT_PRINTED says so in the table)
    ("atss", "baseline"): 39.4,
    ("atss", "sepc_noibn"): 42.1,
    # not printed by the paper: mmdet 1.1's Faster R-CNN (the recipe of experiments/_base_/), the
    # baseline of its two-stage claim; mmdet 3.x's FCOS
    ("faster_rcnn", "baseline"): 36.4,
    ("fcos", "baseline"): 36.6,
}

#: Gains over the detector's baseline published without an AP of their own: approximate
#: ("~2AP"), shown as such in the published row, never turned into an AP.
PUBLISHED_AP_GAIN: dict[tuple[str, str], float] = {
    ("faster_rcnn", "pconv"): 2.0,
}

#: Values the authors did not print (or that are not theirs): marker and footnote text.
NOT_PRINTED: dict[tuple[str, str], tuple[str, str]] = {
    ("retinanet", "baseline"): (
        "*",
        "not printed by the authors; mmdet 1.1 model-zoo value for that recipe",
    ),
    ("freeanchor", "baseline"): (
        "**",
        'derived from the paper text ("41.7, +3.2" for SEPC-lite in the paper body)',
    ),
    ("atss", "baseline"): (
        "†",
        "not the paper's: mmdet 2.x model zoo, ATSS R-50-FPN 1x (the baseline UniverseNet "
        "compares with)",
    ),
    ("atss", "sepc_noibn"): (
        "‡",
        "not the paper's: UniverseNet (shinya7y/UniverseNet, mmdet 2.x), ATSS+SEPC without "
        "iBN, R-50-FPN 1x, 8 GPUs x 2 images",
    ),
    ("faster_rcnn", "baseline"): (
        "§",
        "not printed by the authors; mmdet 1.1 model-zoo value for that recipe (Faster R-CNN "
        "R-50-FPN pytorch 1x; mmdet 3.x's, with its L1 losses: 37.4)",
    ),
    ("faster_rcnn", "pconv"): (
        "¶",
        'the paper\'s abstract only, a gain and no AP: PConv "as a stand-alone module in '
        'two-stage object detectors" improves them "by ~2AP" (its table value was not '
        "available here)",
    ),
    ("fcos", "baseline"): (
        "#",
        "not the paper's: mmdet 3.x model zoo, FCOS R-50-caffe-FPN GN-head 1x (its caffe-style "
        "R-50; this row trains torchvision's)",
    ),
}

#: Published inference-time claims over the baseline (GTX 1080 Ti, batch 8,
#: pre-processing + forward + NMS): percent, by variant.
PUBLISHED_LATENCY_PCT: dict[str, float] = {"pconv": 3.0, "sepc_lite": 7.0}

#: The footnote that states them (under the latency block of every table).
LATENCY_NOTE = (
    "published claims: "
    + ", ".join(f"{VARIANTS[v].label} ~+{pct:g}%" for v, pct in PUBLISHED_LATENCY_PCT.items())
    + " inference time over the baseline (one GTX 1080 Ti, batch 8, pre-processing + forward"
    " + NMS)"
)
