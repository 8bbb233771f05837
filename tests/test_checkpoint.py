"""Checkpoints: mmengine's own under torch >= 2.6, and the authors' mmdet-1.x files."""
import pytest
import torch

import sepc  # noqa: F401
from bench.plan.cells import Cell
from bench.plan.options import Options
from bench.plan.resolve import resolve
from sepc.checkpoint import (
    CheckpointConversionError,
    convert_state_dict,
    load_mmdet1_checkpoint,
    map_mmdet1_key,
    save_mmdet1_checkpoint,
)


def _model(detector, variant, seed=0):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    register_all_modules()
    torch.manual_seed(seed)
    model = MODELS.build(
        resolve(Cell("smoke", detector, variant), Options(pretrained="none")).model
    )
    model.init_weights()
    return model.eval()


def test_mmengine_checkpoint_loads_with_weights_only(tmp_path):
    """What mmengine's Runner saves (message hub with HistoryBuffer, numpy values) loads through
    mmengine's loader once sepc is imported, still weights-only; torch's global allow-list is
    untouched and arbitrary code is still refused."""
    import numpy as np
    from mmengine.logging import HistoryBuffer, MessageHub
    from mmengine.runner.checkpoint import _load_checkpoint

    hub = MessageHub.get_instance("ckpt-test")
    hub.update_scalar("train/loss", 1.5)
    hub.update_info("np", np.float64(2.0))
    ckpt = dict(meta=dict(epoch=1, iter=10, seed=np.int64(3), arr=np.arange(3)),
                message_hub=hub.state_dict(), state_dict={"w": torch.ones(2)})
    torch.save(ckpt, tmp_path / "c.pth")
    with pytest.raises(Exception, match="[Ww]eights only"):
        torch.load(tmp_path / "c.pth")  # torch's default is unchanged: weights_only=True
    loaded = _load_checkpoint(str(tmp_path / "c.pth"), map_location="cpu")
    buf = loaded["message_hub"]["log_scalars"]["train/loss"]
    assert isinstance(buf, HistoryBuffer) and buf.mean() == 1.5
    assert torch.equal(loaded["state_dict"]["w"], torch.ones(2))

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(Exception, match="[Ww]eights only"):
        _load_checkpoint(str(tmp_path / "evil.pth"), map_location="cpu")


def test_old_retinanet_tower_names_are_renamed():
    assert (
        map_mmdet1_key("module.bbox_head.cls_convs.2.weight") == "bbox_head.cls_convs.2.conv.weight"
    )
    assert (
        map_mmdet1_key("bbox_head.cls_convs.2.conv.weight") == "bbox_head.cls_convs.2.conv.weight"
    )
    assert map_mmdet1_key("neck.1.Pconvs.0.Pconv.2.conv_offset.bias") == \
        "neck.1.Pconvs.0.Pconv.2.conv_offset.bias"


@pytest.mark.parametrize("detector,variant", [("retinanet", "sepc"), ("fsaf", "sepc_lite"),
                                              ("freeanchor", "baseline")])
def test_mmdet1_round_trip_gives_identical_outputs(tmp_path, detector, variant):
    src = _model(detector, variant, seed=1)
    with torch.no_grad():  # make every tensor matter, offsets included
        for p in src.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    save_mmdet1_checkpoint(src.state_dict(), tmp_path / "m.pth", classes=("a", "b"))
    dst = _model(detector, variant, seed=2)
    load_mmdet1_checkpoint(dst, tmp_path / "m.pth")
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        for a, b in zip(src._forward(x), dst._forward(x)):
            for ta, tb in zip(a, b):
                torch.testing.assert_close(ta, tb, rtol=0, atol=0)


def test_variant_mismatch_names_the_keys():
    sepc_state = _model("retinanet", "sepc").state_dict()
    with pytest.raises(CheckpointConversionError) as err:
        convert_state_dict(sepc_state, _model("retinanet", "ibn"))
    msg = str(err.value)
    assert "neck.1.Pconvs.0.Pconv.0.conv_offset.weight" in msg
    assert "deformable (offset) convs that this variant lacks" in msg
    with pytest.raises(CheckpointConversionError, match="missing from the checkpoint"):
        convert_state_dict(_model("retinanet", "ibn").state_dict(), _model("retinanet", "sepc"))
    bad = dict(sepc_state)
    bad["bbox_head.retina_cls.weight"] = torch.zeros(1, 32, 3, 3)
    with pytest.raises(CheckpointConversionError, match="shape mismatches: bbox_head.retina_cls"):
        convert_state_dict(bad, _model("retinanet", "sepc"))
