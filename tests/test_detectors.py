"""Every detector x variant model (the paper's 15, ATSS, Faster R-CNN, FCOS and SEPC without
iBN): built from the project's configs, trained and run on CPU; each SEPC head computes what
mmdet's head does; a row without an SEPC head keeps its own heads behind the PConv neck."""
import pytest
import torch

from bench.plan.cells import DETECTORS, VARIANTS, Cell
from bench.plan.options import Options
from bench.plan.resolve import resolve

CELLS = [(d, v) for d in DETECTORS for v in VARIANTS if DETECTORS[d].takes(v)]
#: The rows with an SEPC head of their own.
SEPC_HEADS = [d for d in DETECTORS if DETECTORS[d].sepc_head]


def _build(detector, variant):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    register_all_modules()
    cfg = resolve(Cell("smoke", detector, variant), Options(pretrained="none"))
    model = MODELS.build(cfg.model)
    model.init_weights()
    return cfg, model


def _batch(num_classes, seed=0):
    from mmdet.testing import demo_mm_inputs

    torch.manual_seed(seed)
    return demo_mm_inputs(batch_size=2, image_shapes=[(3, 128, 160), (3, 160, 128)],
                          num_items=[3, 4], num_classes=num_classes)


@pytest.mark.parametrize("detector,variant", CELLS)
def test_trains_and_predicts(detector, variant):
    from mmdet.registry import MODELS

    torch.manual_seed(0)
    cfg, model = _build(detector, variant)
    neck = cfg.model.neck
    heads = [m for m in (getattr(model, "bbox_head", None), getattr(model, "rpn_head", None),
                         getattr(model, "roi_head", None)) if m is not None]
    if DETECTORS[detector].sepc_head is None:  # its own heads, mmdet's, whatever the variant
        assert all(type(h).__module__.startswith("mmdet.") for h in heads)
        if VARIANTS[variant].sepc:
            assert isinstance(neck, list) and neck[1]["type"] == "PConvNeck"
        num_classes = cfg.model.roi_head.bbox_head.num_classes
    else:
        sepc_head = MODELS.get(DETECTORS[detector].sepc_head)
        if VARIANTS[variant].sepc:
            assert isinstance(neck, list) and neck[1]["type"] == "SEPC"
            assert type(model.bbox_head) is sepc_head
            assert model.bbox_head.stacked_convs == 0
        else:  # mmdet's own head, the one the SEPC head subclasses
            assert type(model.bbox_head).__module__.startswith("mmdet.")
            assert issubclass(sepc_head, type(model.bbox_head))
        num_classes = cfg.model.bbox_head.num_classes
    data = model.data_preprocessor(_batch(num_classes), True)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    losses = []
    for _ in range(8):
        loss, _ = model.parse_losses(model(**data, mode="loss"))
        assert torch.isfinite(loss), f"{detector}/{variant}: loss {loss}"
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert min(losses[-3:]) < losses[0], f"{detector}/{variant}: loss did not fall: {losses}"
    model.eval()
    with torch.no_grad():
        out = model.predict(data["inputs"], data["data_samples"], rescale=True)
    assert len(out) == 2
    for sample in out:
        pred = sample.pred_instances
        assert pred.bboxes.shape[-1] == 4 and len(pred.bboxes) == len(pred.scores)
        test_cfg = cfg.model.test_cfg.get("rcnn", cfg.model.test_cfg)  # a two-stage's last
        assert len(pred.bboxes) <= test_cfg.max_per_img


#: (detector, head settings) of the equivalence test: every SEPC head, and FCOS with its
#: centre-ness on either branch (mmdet's default: the classification branch).
HEAD_CASES = [(d, {}) for d in SEPC_HEADS] + [("fcos", dict(centerness_on_reg=True))]


def _branches(detector: str, cfg: dict) -> tuple[str, ...]:
    """Which feature each output group of the head reads: cls scores, boxes[, centre-ness]."""
    if detector == "atss":
        return "cls", "loc", "loc"
    if detector == "fcos":
        return "cls", "loc", "loc" if cfg.get("centerness_on_reg") else "cls"
    return "cls", "loc"


@pytest.mark.parametrize("detector,settings", HEAD_CASES)
@pytest.mark.parametrize("stacked_convs", [0, 2])
def test_sepc_head_computes_the_stock_heads_outputs(detector, settings, stacked_convs):
    """The SEPC head with mmdet's head's weights: on a plain tensor it gives mmdet's outputs;
    on a (cls, loc) pair its classification equals mmdet's head run on the cls feature, its box
    output mmdet's head run on the loc feature, and a centre-ness (ATSS, FCOS) mmdet's head run
    on the feature of the branch mmdet reads it from."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    register_all_modules()
    cfg = resolve(Cell("smoke", detector, "baseline")).model.bbox_head
    cfg.update(settings)
    torch.manual_seed(0)
    stock = MODELS.build(dict(cfg, stacked_convs=stacked_convs))
    stock.init_weights()
    sepc = MODELS.build(dict(cfg, type=DETECTORS[detector].sepc_head, stacked_convs=stacked_convs))
    assert type(sepc) is not type(stock) and isinstance(sepc, type(stock))
    sepc.load_state_dict(stock.state_dict(), strict=True)
    stock.eval(), sepc.eval()
    torch.manual_seed(1)
    size = [(24, 20), (12, 10), (6, 5), (3, 3), (2, 2)]
    cls_feats = [torch.randn(2, cfg.in_channels, *hw) for hw in size]
    loc_feats = [torch.randn(2, cfg.in_channels, *hw) for hw in size]
    with torch.no_grad():
        on_cls, on_loc = stock(cls_feats), stock(loc_feats)
        same = sepc(cls_feats)
        pairs = sepc([(c, r) for c, r in zip(cls_feats, loc_feats)])
    branches = _branches(detector, cfg)
    assert len(pairs) == len(on_cls) == len(branches)
    for k, branch in enumerate(branches):
        expect = on_cls if branch == "cls" else on_loc
        for got, want, plain, ref in zip(pairs[k], expect[k], same[k], on_cls[k]):
            torch.testing.assert_close(got, want, rtol=0, atol=0)
            torch.testing.assert_close(plain, ref, rtol=0, atol=0)
