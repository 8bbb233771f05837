"""The ``paper`` profile trains what the authors trained; ``paper-modern`` is mmdet 3.x's own.

The expected values are transcribed from the SEPC release (sepc/exp/{retina,freeanchor,fsaf}/*.py,
sepc/self_mmdet/**) and the mmdetection 1.1 code it runs on, and worked out by hand here; none of
them is read back from the code under test.
"""
import math
import shutil

import pytest
import torch

import sepc  # noqa: F401  (registers the legacy and FSAF pieces)
from bench.plan.cells import DETECTORS, VARIANTS, Cell, cells
from bench.plan.layout import layout
from bench.plan.options import Options
from bench.plan.resolve import resolve
from bench.plan.settings import load_profile
from sepc.legacy import LegacyTBLRBBoxCoder
from sepc.legacy_fsaf import EffectiveAreaAssigner, IoULossTBLR

CELLS = [(c.detector, c.variant) for c in cells("paper")]  # the paper's table: authors' configs
#: The anchor-based one-stage rows, ATSS and SEPC without iBN included (FCOS's points and
#: Faster R-CNN's RPN + RoI head: tests/test_new_rows.py).
ALL_CELLS = [(d, v) for d in DETECTORS for v in VARIANTS
             if d not in ("faster_rcnn", "fcos")]
STRIDES = (8, 16, 32, 64, 128)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One thread: on the shared 2 cores, two OpenMP threads made these steps 10x slower."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory):
    """The COCO-quirks images as both splits (a crowd region, category ids with gaps)."""
    from fixtures.coco_quirks import write_quirks_dataset

    root = write_quirks_dataset(tmp_path_factory.mktemp("coco")).root
    shutil.copytree(root / "val2017", root / "train2017")
    shutil.copy(root / "annotations/instances_val2017.json",
                root / "annotations/instances_train2017.json")
    return root


def _cfg(profile, det, var, root):
    return resolve(Cell(profile, det, var), Options(data_root=str(root)))


def _registered():
    from mmdet.utils import register_all_modules

    register_all_modules()


# -- the anchor each head output gets -----------------------------------------------------------
# Anchor centre minus the image position the head output reads (s * the FPN location it reads),
# per level P3..P7. mmdet 1.1 centred anchors at (s - 1) / 2; the faithful cls/loc convs of the
# SEPC neck (padding 0) make head output k read FPN location k + 1. So in the original:
#   baseline:  (s - 1) / 2          = +3.5, +7.5, +15.5, +31.5, +63.5
#   SEPC neck: (s - 1) / 2 - s      = -4.5, -8.5, -16.5, -32.5, -64.5
# and with mmdet 3.x's anchors (centre 0) and the corrected padding 1 (paper-modern): 0 everywhere.
EXPECTED_OFFSETS = {
    ("paper", False): [3.5, 7.5, 15.5, 31.5, 63.5],
    ("paper", True): [-4.5, -8.5, -16.5, -32.5, -64.5],
    ("paper-modern", False): [0.0] * 5,
    ("paper-modern", True): [0.0] * 5,
}


@pytest.fixture(scope="module", params=[(p, d, v) for p in ("paper", "paper-modern")
                                        for d, v in ALL_CELLS], ids=lambda x: "/".join(x))
def built(request, coco_root):
    """A full-size model of one cell (R-50, width 256; no weights loaded), one at a time."""
    from mmdet.registry import MODELS

    _registered()
    profile, det, var = request.param
    cfg = _cfg(profile, det, var, coco_root)
    torch.manual_seed(0)
    return profile, det, var, cfg, MODELS.build(cfg.model)


def test_anchor_centre_to_receptive_field_offset(built):
    profile, det, var, _, model = built
    model.eval()
    x = torch.zeros(1, 3, 320, 320)  # P7 is 3 px: the faithful padding 0 leaves 1 output
    with torch.no_grad():
        fpn = model.neck[0] if isinstance(model.neck, torch.nn.Sequential) else model.neck
        fpn_sizes = [f.shape[-2:] for f in fpn(model.backbone(x))]
        cls_scores = model.bbox_head(model.extract_feat(x))[0]
    head_sizes = [c.shape[-2:] for c in cls_scores]
    anchors = model.bbox_head.prior_generator.grid_priors(head_sizes, device="cpu")
    per_loc = model.bbox_head.prior_generator.num_base_priors[0]
    for level, (s, fpn_hw, head_hw, a) in enumerate(zip(STRIDES, fpn_sizes, head_sizes, anchors)):
        shift = (fpn_hw[-1] - head_hw[-1]) / 2  # same-padding convs: output k reads k + shift
        assert (fpn_hw[-2] - head_hw[-2]) / 2 == shift
        a = a.view(head_hw[0], head_hw[1], per_loc, 4)
        cx, cy = (a[..., 0] + a[..., 2]) / 2, (a[..., 1] + a[..., 3]) / 2
        k = torch.arange(head_hw[1], dtype=torch.float32)[None, :, None]
        row = torch.arange(head_hw[0], dtype=torch.float32)[:, None, None]
        expected = EXPECTED_OFFSETS[(profile, VARIANTS[var].sepc)][level]
        for off in (cx - s * (k + shift), cy - s * (row + shift)):  # every location and anchor
            torch.testing.assert_close(off, torch.full_like(off, expected), rtol=0, atol=1e-4,
                                       msg=f"{profile}/{det}/{var} P{level + 3}")


def test_every_cell_computes_its_loss(built):
    """Forward + loss of the full-size model on two small images (the crowd-free demo batch)."""
    from mmdet.testing import demo_mm_inputs

    profile, det, var, cfg, model = built
    torch.manual_seed(1)
    batch = demo_mm_inputs(batch_size=2, image_shapes=[(3, 320, 320), (3, 320, 288)],
                           num_items=[3, 2], num_classes=cfg.model.bbox_head.num_classes)
    model.train()
    data = model.data_preprocessor(batch, True)
    with torch.no_grad():
        losses = model(**data, mode="loss")
    loss, log = model.parse_losses(losses)
    assert torch.isfinite(loss) and loss > 0, (profile, det, var, log)


# -- the release's FSAF pieces, by hand ---------------------------------------------------------
def _authors_encode(priors, gts):
    """sepc/self_mmdet/core/build_coders.py, TBLRCoder.encode with means 0, stds 1."""
    cx = (priors[:, 0] + priors[:, 2] + 1) / 2
    cy = (priors[:, 1] + priors[:, 3] + 1) / 2
    w = priors[:, 2] - priors[:, 0] + 1
    h = priors[:, 3] - priors[:, 1] + 1
    t, b = cy - gts[:, 1], gts[:, 3] - cy + 1
    left, right = cx - gts[:, 0], gts[:, 2] - cx + 1
    return torch.stack(
        [b / h, t / h, left / w, right / w], dim=1
    )  # (b, t, l, r): top/bottom swapped


def _authors_decode(priors, loc, max_shape=None):
    """TBLRCoder.decode: the inverse formulas, boxes clamped to [0, W - 1] x [0, H - 1]."""
    cx = (priors[:, 0] + priors[:, 2] + 1) / 2
    cy = (priors[:, 1] + priors[:, 3] + 1) / 2
    w = priors[:, 2] - priors[:, 0] + 1
    h = priors[:, 3] - priors[:, 1] + 1
    b, t, left, right = loc[:, 0] * h, loc[:, 1] * h, loc[:, 2] * w, loc[:, 3] * w
    boxes = torch.stack([cx - left, cy - t, cx + right - 1, cy + b - 1], dim=1)
    if max_shape is not None:
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, max_shape[1] - 1)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, max_shape[0] - 1)
    return boxes


def test_legacy_tblr_coder_is_the_authors():
    coder = LegacyTBLRBBoxCoder()
    # By hand: prior [0, 0, 7, 7] has centre (4, 4) and size 8; box [1, 2, 10, 13]:
    # t = 4 - 2 = 2, b = 13 - 4 + 1 = 10, l = 4 - 1 = 3, r = 10 - 4 + 1 = 7, each / 8,
    # as (b, t, l, r).
    prior = torch.tensor([[0.0, 0.0, 7.0, 7.0]])
    box = torch.tensor([[1.0, 2.0, 10.0, 13.0]])
    hand = torch.tensor([[10 / 8, 2 / 8, 3 / 8, 7 / 8]])
    torch.testing.assert_close(coder.encode(prior, box), hand)
    torch.testing.assert_close(coder.decode(prior, hand), box)
    # clamped to the last pixel: W = 9, H = 12 -> x2 <= 8, y2 <= 11
    torch.testing.assert_close(coder.decode(prior, hand, max_shape=(12, 9)),
                               torch.tensor([[1.0, 2.0, 8.0, 11.0]]))
    # many boxes against the transcribed formulas, in both directions
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(200, 2, generator=g) * 300
    priors = torch.cat([xy, xy + torch.rand(200, 2, generator=g) * 100 + 4], dim=1)
    gxy = xy + torch.randn(200, 2, generator=g) * 10
    gts = torch.cat([gxy, gxy + torch.rand(200, 2, generator=g) * 150 + 8], dim=1)
    torch.testing.assert_close(coder.encode(priors, gts), _authors_encode(priors, gts))
    loc = torch.rand(200, 4, generator=g) * 3
    torch.testing.assert_close(coder.decode(priors, loc), _authors_decode(priors, loc))
    torch.testing.assert_close(coder.decode(priors, loc, max_shape=(240, 320)),
                               _authors_decode(priors, loc, max_shape=(240, 320)))


def test_iou_loss_tblr_by_hand():
    loss = IoULossTBLR(reduction="none")
    pred = torch.tensor([[1.0, 1.0, 1.0, 1.0],    # = target: IoU 1, loss 0
                         [1.0, 1.0, 1.0, 1.0],    # 2x2 in 2x4: inter 4, union 8, loss log 2
                         [.25, .25, .25, .25],    # = target, but area 0.25 < 1: union clamped to
                         [2.0, 1.0, 1.0, 1.0]])   # 1, IoU 0.25, loss log 4; t and b swapped: 0
    target = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 2.0, 2.0], [.25, .25, .25, .25],
                           [1.0, 2.0, 1.0, 1.0]])
    # row 4: pred area 3*2 = 6, target 3*2 = 6, inter (1 + 1) * 2 = 4, union 8: log 2
    weight = torch.ones(4, 4)
    torch.testing.assert_close(loss(pred, target, weight),
                               torch.tensor([0.0, math.log(2), math.log(4), math.log(2)]))
    weight[1] = 0  # a row's weight is the mean of its four
    torch.testing.assert_close(loss(pred, target, weight, reduction_override="sum"),
                               torch.tensor(math.log(4) + math.log(2)))
    p = pred.clone().requires_grad_()
    zero = loss(p, target, torch.zeros(4, 4))
    assert zero.item() == 0 and zero.requires_grad  # no positive: a zero in the graph


def _assign(gts, labels, priors, pos=0.2, neg=0.2):
    from mmengine.structures import InstanceData

    result = EffectiveAreaAssigner(pos, neg, 0.01).assign(
        InstanceData(priors=torch.tensor(priors, dtype=torch.float32)),
        InstanceData(bboxes=torch.tensor(gts, dtype=torch.float32),
                     labels=torch.tensor(labels)))
    return result.gt_inds.tolist(), result.labels.tolist()


# Three nested boxes, all centred at (50, 50) in 1.x pixels:
#   A = [0, 0, 99, 99]   area 10000, effective region (0.2) [40, 40, 59, 59]
#   B = [20, 20, 79, 79] area  3600, effective region       [44, 44, 55, 55]
#   C = [40, 40, 59, 59] area   400, effective region       [48, 48, 51, 51]
A, B, C = [0, 0, 99, 99], [20, 20, 79, 79], [40, 40, 59, 59]
# One-pixel priors [x, y, x, y]: centre x + 0.5, IoF 1 with a region containing pixel x, else 0.
PIXELS = [[50, 50, 50, 50], [45, 45, 45, 45], [42, 42, 42, 42], [30, 30, 30, 30]]


def test_effective_area_assigner_two_boxes_smaller_wins():
    # Two boxes: sort indices and ranks coincide (a permutation of two is its own inverse), so
    # the smaller box wins where the effective regions overlap, in either input order.
    assert _assign([A, B], [3, 7], PIXELS) == ([2, 2, 1, 0], [7, 7, 3, -1])
    assert _assign([B, A], [7, 3], PIXELS) == ([1, 1, 2, 0], [7, 7, 3, -1])


def test_effective_area_assigner_sort_index_quirk():
    # Input order C, A, B: areas [400, 10000, 3600], sorted descending -> sort_idx = [1, 2, 0].
    # The release uses sort_idx[j] as box j's priority: C -> 1, A -> 2, B -> 0, so the LARGEST
    # box A wins wherever its region overlaps another's (the intended ranks: C 2, A 0, B 1).
    #   pixel 50: in all three regions -> A (index 1, gt_ind 2); intended: C (gt_ind 1)
    #   pixel 45: in A's and B's        -> A (gt_ind 2);          intended: B (gt_ind 3)
    #   pixel 42: in A's only           -> A (gt_ind 2)
    #   pixel 30: in no region, and no ignore region (both scales 0.2) -> negative (0)
    assert _assign([C, A, B], [5, 3, 7], PIXELS) == ([2, 2, 2, 0], [3, 3, 3, -1])
    # Order A, C, B: sort_idx = [0, 2, 1]: A -> 0, C -> 2, B -> 1: the ranks, by luck: C wins.
    assert _assign([A, C, B], [3, 5, 7], PIXELS) == ([2, 3, 1, 0], [5, 7, 3, -1])


def test_effective_area_assigner_ignores_and_anchors():
    # A real 8x8 anchor [36, 36, 43, 43]: centre (40, 40) inside A, overlap with A's region
    # [40..43]^2 = 16 px of 64, IoF 0.25 > 0.01 -> A; [32, 32, 39, 39] does not reach it -> 0.
    assert _assign([A], [3], [[36, 36, 43, 43], [32, 32, 39, 39]]) == ([1, 0], [3, -1])
    # D = [0, 0, 9, 9]: region [4, 4, 5, 5]. Anchor [5, 5, 12, 12] overlaps it (1 px of 64, IoF
    # 0.016 > 0.01) but its centre (9, 9) is not strictly inside D: ignored (-1), not positive.
    assert _assign([[0, 0, 9, 9]], [2], [[5, 5, 12, 12]]) == ([-1], [-1])
    # A wider ignore region (0.5: [25, 25, 74, 74] for A) ignores pixel 30.
    assert _assign([A], [3], PIXELS, neg=0.5) == ([1, 1, 1, -1], [3, 3, 3, -1])
    # No box at all: everything negative (the release raised an error here).
    assert _assign(torch.zeros(0, 4).tolist(), [], PIXELS) == ([0, 0, 0, 0], [-1] * 4)


# -- the resolved paper cells against the authors' configs ---------------------------------------
_MEAN, _STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
#: sepc/exp/*/*.py of the release, field by field (and mmdet 1.1's defaults they rely on).
AUTHORS = {
    "image scale": ((1333, 800), True),
    "flip": 0.5,
    "normalisation": (_MEAN, _STD, True),
    "train padding": 32,
    "min image side": 32,
    "crowd boxes": "dropped",
    "box conventions": ("LegacyLoadAnnotations", "LegacyResize", "LegacyRandomFlip"),
    "optimizer": ("SGD", 0.01, 0.9, 1e-4),
    "warm-up": ("linear", 500, 1 / 3),
    "steps": ([8, 11], 0.1, 12),
    "backbone": (50, 1, True, "pytorch", "torchvision://resnet50"),
    "fpn": ([256, 512, 1024, 2048], 256, 1, "on_input", 5),
    "test": (1000, 0.05, 0.5, 100, 1, "LegacyCocoMetric"),
}
AUTHORS_DETECTOR = {
    "retinanet": {
        "clip": 35,
        "anchors": (4, 3, [0.5, 1.0, 2.0], list(STRIDES), "LegacyAnchorGenerator", 0.5),
        "coder": ("LegacyDeltaXYWHBBoxCoder", [0.0] * 4, [1.0] * 4),
        "loss_cls": ("FocalLoss", True, 2.0, 0.25, 1.0),
        "loss_bbox": ("SmoothL1Loss", 0.11, 1.0),
        "assigner": ("MaxIoUAssigner", 0.5, 0.4, 0, -1, "LegacyBboxOverlaps2D"),
    },
    "freeanchor": {
        "clip": 35,
        "anchors": (4, 3, [0.5, 1.0, 2.0], list(STRIDES), "LegacyAnchorGenerator", 0.5),
        "coder": ("LegacyDeltaXYWHBBoxCoder", [0.0] * 4, [0.1, 0.1, 0.2, 0.2]),
        "loss_bbox": ("SmoothL1Loss", 0.11, 0.75),
        "free anchor": (50, 0.6, 2.0, 0.5),  # mmdet 1.1's FreeAnchorRetinaHead defaults
    },
    "fsaf": {
        "clip": 10,
        "anchors": (1, 1, [1.0], list(STRIDES), "LegacyAnchorGenerator", 0.5),
        "coder": ("LegacyTBLRBBoxCoder", [0.0] * 4, [1.0] * 4),
        "loss_cls": ("FocalLoss", True, 2.0, 0.25, 1.0),
        "loss_bbox": ("IoULossTBLR", 1e-6, 1.0, False),
        "assigner": ("EffectiveAreaAssigner", 0.2, 0.2, 0.01),
        "init bias": (round(-math.log(99), 5), 1.0),  # cls: prior 0.01; reg: 1 (3.x: 0.25)
    },
}
AUTHORS_VARIANT = {  # (SEPC neck switches or None, head stacked_convs, GPUs x images, cls/loc pad)
    "baseline": (None, 4, (8, 2)),
    "pconv": ((4, False, False, False, 0), 0, (8, 2)),
    "ibn": ((4, True, False, False, 0), 0, (4, 4)),
    "sepc_lite": ((4, True, False, True, 0), 0, (4, 4)),
    "sepc": ((4, True, True, True, 0), 0, (4, 4)),
}


def _fields(cfg, det, var, head) -> tuple[dict, dict, tuple]:
    """The resolved config (and built head) in the shape of AUTHORS / _DETECTOR / _VARIANT."""
    m, h = cfg.model, cfg.model.bbox_head
    pipe = {s.type: s for s in cfg.train_dataloader.dataset.pipeline}
    pre = m.data_preprocessor
    opt, warm, steps = cfg.optim_wrapper.optimizer, *cfg.param_scheduler
    bb, neck = m.backbone, (m.neck[0] if isinstance(m.neck, list) else m.neck)
    common = {
        "image scale": (tuple(pipe["LegacyResize"].scale), pipe["LegacyResize"].keep_ratio),
        "flip": pipe["LegacyRandomFlip"].prob,
        "normalisation": (list(pre.mean), list(pre.std), pre.bgr_to_rgb),
        "train padding": pre.pad_size_divisor,
        "min image side": cfg.train_dataloader.dataset.filter_cfg.min_size,
        "crowd boxes": "dropped" if "LegacyLoadAnnotations" in pipe else "kept",
        "box conventions": tuple(t for t in pipe if t.startswith("Legacy")),
        "optimizer": (opt.type, opt.lr, opt.momentum, opt.weight_decay),
        "warm-up": ("linear" if warm.type == "LinearLR" and not warm.by_epoch else warm.type,
                    warm.end, warm.start_factor),
        "steps": (steps.milestones, steps.gamma, cfg.train_cfg.max_epochs),
        "backbone": (bb.depth, bb.frozen_stages, bb.norm_eval, bb.style, bb.init_cfg.checkpoint),
        "fpn": (neck.in_channels, neck.out_channels, neck.start_level, neck.add_extra_convs,
                neck.num_outs),
        "test": (m.test_cfg.nms_pre, m.test_cfg.score_thr, m.test_cfg.nms.iou_threshold,
                 m.test_cfg.max_per_img, m.test_cfg.nms.offset, cfg.val_evaluator.type),
    }
    ag, coder = h.anchor_generator, h.bbox_coder
    per_det = {
        "clip": cfg.optim_wrapper.clip_grad.max_norm,
        "anchors": (ag.octave_base_scale, ag.scales_per_octave, list(ag.ratios), list(ag.strides),
                    ag.type, ag.center_offset),
        "coder": (coder.type, list(coder.get("target_means", [0.0] * 4)),
                  list(coder.get("target_stds", [1.0] * 4))),
    }
    if det != "freeanchor":
        c = h.loss_cls
        per_det["loss_cls"] = (c.type, c.use_sigmoid, c.gamma, c.alpha, c.loss_weight)
    b = h.loss_bbox
    if det == "fsaf":
        per_det["loss_bbox"] = (b.type, b.eps, b.loss_weight, h.reg_decoded_bbox)
        a = m.train_cfg.assigner
        per_det["assigner"] = (a.type, a.pos_area_thr, a.neg_area_thr, a.min_pos_iof)
        head.init_weights()
        per_det["init bias"] = (round(float(head.retina_cls.bias.mean()), 5),
                                float(head.retina_reg.bias.mean()))
    else:
        per_det["loss_bbox"] = (b.type, b.beta, b.loss_weight)
    if det == "retinanet":
        a = m.train_cfg.assigner
        per_det["assigner"] = (a.type, a.pos_iou_thr, a.neg_iou_thr, a.min_pos_iou,
                               a.ignore_iof_thr, a.iou_calculator.type)
    if det == "freeanchor":
        per_det["free anchor"] = (head.pre_anchor_topk, head.bbox_thr, head.gamma, head.alpha)
    sepc_neck = m.neck[1] if isinstance(m.neck, list) else None
    neck_sw = None if sepc_neck is None else (sepc_neck.Pconv_num, sepc_neck.iBN,
                                              sepc_neck.pconv_deform, sepc_neck.lcconv_deform,
                                              sepc_neck.lcconv_padding)
    lay = layout(Cell("paper", det, var))
    gpus = (lay.world_size, lay.imgs_per_device)
    return common, per_det, (neck_sw, h.get("stacked_convs", 4), gpus)


@pytest.mark.parametrize("det,var", CELLS)
def test_paper_cell_is_the_authors_config(det, var, coco_root):
    from mmdet.registry import MODELS

    _registered()
    cfg = _cfg("paper", det, var, coco_root)
    head = MODELS.build(cfg.model.bbox_head) if det != "retinanet" else None
    common, per_det, per_var = _fields(cfg, det, var, head)
    assert common == AUTHORS
    assert per_det == AUTHORS_DETECTOR[det]
    assert per_var == AUTHORS_VARIANT[var]
    # the FSAF baseline's test images are padded to 384 (training: 32); every other cell: 32
    pre = cfg.model.data_preprocessor
    test_pad = pre.get("test_pad_size_divisor") or pre.pad_size_divisor
    assert test_pad == (384 if (det, var) == ("fsaf", "baseline") else 32)


def test_paper_modern_is_mmdet3s_own(coco_root):
    for det, var in ALL_CELLS:
        cfg = _cfg("paper-modern", det, var, coco_root)
        head = cfg.model.bbox_head
        assert head.anchor_generator.type == "AnchorGenerator"
        assert "center_offset" not in head.anchor_generator
        assert cfg.val_evaluator.type == "CocoMetric" and "offset" not in cfg.model.test_cfg.nms
        assert [s.type for s in cfg.train_dataloader.dataset.pipeline][1:4] == [
            "LoadAnnotations", "Resize", "RandomFlip"]
        assert cfg.model.data_preprocessor.type == "DetDataPreprocessor"
        assert cfg.train_dataloader.dataset.filter_cfg.min_size == 32
        if VARIANTS[var].sepc:
            assert cfg.model.neck[1].lcconv_padding == 1
        if det == "fsaf":  # mmdet 3.x's FSAF
            assert head.bbox_coder == dict(type="TBLRBBoxCoder", normalizer=4.0)
            assert head.loss_bbox.type == "IoULoss" and head.reg_decoded_bbox is True
            assert cfg.model.train_cfg.assigner.type == "CenterRegionAssigner"
        # the same schedule, batch and optimiser as paper
        paper = _cfg("paper", det, var, coco_root)
        for key in ("optim_wrapper", "param_scheduler", "train_cfg"):
            assert cfg[key] == paper[key]
        assert cfg.train_dataloader.batch_size == paper.train_dataloader.batch_size


# -- training boxes as mmdet 1.1 gave them to the heads ------------------------------------------
def test_legacy_training_boxes_and_crowds(coco_root):
    """Image 9 of the quirks set: boxes (x, y, w, h) = (10, 20, 50, 120), (140, 20, 100, 60) and
    a crowd region, 256 x 192 px. mmdet 1.1: boxes [x, y, x + w - 1, y + h - 1], no crowd box;
    resized by s and clipped to [0, W - 1]; flipped as x' = W - 1 - x."""
    import numpy as np
    from mmdet.registry import DATASETS, TRANSFORMS

    _registered()
    cfg = _cfg("paper", "retinanet", "baseline", coco_root)
    ds_cfg = cfg.train_dataloader.dataset.copy()
    ds_cfg.pipeline = []
    info = next(d for d in DATASETS.build(ds_cfg) if d["img_id"] == 9)
    assert sum(i["ignore_flag"] for i in info["instances"]) == 1  # the crowd is in the data

    load = TRANSFORMS.build(dict(type="LegacyLoadAnnotations", with_bbox=True))
    out = load.transform(dict(info))
    np.testing.assert_array_equal(out["gt_bboxes"].tensor.numpy(),
                                  [[10, 20, 59, 139], [140, 20, 239, 79]])
    assert not out["gt_ignore_flags"].any() and out["gt_bboxes_labels"].tolist() == [0, 1]

    out["img"] = np.zeros((192, 256, 3), np.uint8)
    out["img_shape"] = out["ori_shape"] = (192, 256)
    resized = TRANSFORMS.build(dict(type="LegacyResize", scale=(512, 384), keep_ratio=True)
                               ).transform(out)  # s = 2: 384 x 512
    np.testing.assert_array_equal(resized["gt_bboxes"].tensor.numpy(),
                                  [[20, 40, 118, 278], [280, 40, 478, 158]])
    resized["gt_bboxes"].tensor[1, 2] = 520  # beyond the image: clipped to W - 1 = 511 by 1.x
    TRANSFORMS.build(dict(type="LegacyResize", scale=(512, 384), keep_ratio=True)
                     )._resize_bboxes(dict(resized, scale_factor=(1.0, 1.0)))
    assert resized["gt_bboxes"].tensor[1, 2] == 511
    flipped = TRANSFORMS.build(dict(type="LegacyRandomFlip", prob=1.0)).transform(resized)
    np.testing.assert_array_equal(flipped["gt_bboxes"].tensor.numpy(),
                                  [[511 - 118, 40, 511 - 20, 278], [0, 40, 511 - 280, 158]])

    # through the resolved training pipeline: no crowd box reaches the head
    ds = DATASETS.build(cfg.train_dataloader.dataset)
    item = next(ds[i] for i in range(len(ds)) if ds.get_data_info(i)["img_id"] == 9)
    assert len(item["data_samples"].gt_instances) == 2
    assert len(item["data_samples"].ignored_instances) == 0
    modern = DATASETS.build(_cfg("paper-modern", "retinanet", "baseline",
                                 coco_root).train_dataloader.dataset)
    item = next(modern[i] for i in range(len(modern)) if modern.get_data_info(i)["img_id"] == 9)
    assert len(item["data_samples"].ignored_instances) == 1  # mmdet 3.x: an ignore region


def test_fsaf_baseline_pads_test_images_to_384(coco_root):
    from mmdet.registry import MODELS

    _registered()
    pre = MODELS.build(_cfg("paper", "fsaf", "baseline", coco_root).model.data_preprocessor)
    data = dict(inputs=[torch.zeros(3, 200, 330, dtype=torch.uint8)], data_samples=None)
    assert pre(data, training=False)["inputs"].shape[-2:] == (384, 384)
    assert pre(data, training=True)["inputs"].shape[-2:] == (224, 352)


# -- the authors' FSAF learns ----------------------------------------------------------------------
@pytest.mark.parametrize("var", ["baseline", "sepc"])
def test_authors_fsaf_learns(var, coco_root):
    """The paper FSAF cell at the smoke profile's width (ResNet-18 at base width 8, width 32):
    the loss falls over 20 steps on a fixed batch (the faithful padding needs >= 257 px)."""
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs

    _registered()
    cfg = _cfg("paper", "fsaf", var, coco_root)
    small = load_profile("smoke").delta["model"]  # the shrunk backbone and widths
    neck = small.pop("neck")
    cfg.merge_from_dict(dict(model=small))
    if VARIANTS[var].sepc:
        cfg.model.neck[0].update(neck)
        cfg.model.neck[1].update(in_channels=[neck["out_channels"]] * 5,
                                 out_channels=neck["out_channels"])
    else:
        cfg.model.neck.update(neck)
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    assert model.bbox_head.loss_bbox.__class__ is IoULossTBLR
    batch = demo_mm_inputs(batch_size=2, image_shapes=[(3, 320, 320), (3, 288, 320)],
                           num_items=[3, 4], num_classes=cfg.model.bbox_head.num_classes)
    data = model.data_preprocessor(batch, True)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    losses, box_losses = [], []
    for _ in range(20):
        loss, log = model.parse_losses(model(**data, mode="loss"))
        assert torch.isfinite(loss), log
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        box_losses.append(float(log["loss_bbox"]))
    assert min(losses[-3:]) < 0.75 * losses[0], losses
    assert min(box_losses[-3:]) < 0.6 * box_losses[0], box_losses  # IoULossTBLR learns
