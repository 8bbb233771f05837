"""All 15 detector x variant models: built from the project's configs, trained and run on CPU."""
import pytest
import torch

from bench.configs import Options, resolve
from bench.matrix import DETECTORS, VARIANTS, Cell

CELLS = [(d, v) for d in DETECTORS for v in VARIANTS]


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
    torch.manual_seed(0)
    cfg, model = _build(detector, variant)
    neck = cfg.model.neck
    if VARIANTS[variant].sepc:
        assert isinstance(neck, list) and neck[1]["type"] == "SEPC"
        assert type(model.bbox_head).__name__ == DETECTORS[detector]
        assert model.bbox_head.stacked_convs == 0
    else:
        assert type(model.bbox_head).__name__.startswith(("Retina", "FSAF", "FreeAnchor"))
    data = model.data_preprocessor(_batch(cfg.model.bbox_head.num_classes), True)
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
        assert len(pred.bboxes) <= cfg.model.test_cfg.max_per_img
