"""The SEPC neck: parameter counts, level gating, iBN, original checkpoint names; the stand-alone
PConv neck (one output per level) on Faster R-CNN's P2-P6 pyramid."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import sepc  # registers the modules
from sepc.necks import SEPC, PConvNeck, integrated_bn
from sepc.ops import deform_conv2d

VARIANT_ARGS = {
    "pconv": dict(),
    "ibn": dict(iBN=True),
    "sepc_lite": dict(iBN=True, lcconv_deform=True),
    "sepc": dict(iBN=True, lcconv_deform=True, pconv_deform=True),
}
SPEC_PARAMS = {"pconv": 8_261_120, "ibn": 8_264_192, "sepc_lite": 8_347_172, "sepc": 8_845_052}


@pytest.mark.parametrize("variant", list(SPEC_PARAMS))
def test_parameter_counts_match_spec(variant):
    neck = SEPC(out_channels=256, **VARIANT_ARGS[variant])
    assert sum(p.numel() for p in neck.parameters()) == SPEC_PARAMS[variant]


def _pyramid(n=2, c=8, size=32, levels=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, c, max(1, size >> i), max(1, size >> i), generator=g)
            for i in range(levels)]


def test_registered_in_mmdet():
    from mmdet.registry import MODELS

    for name in ("SEPC", "PConvNeck", "SEPCRetinaHead", "SEPCFSAFHead",
                 "SEPCFreeAnchorRetinaHead", "SEPCATSSHead", "SEPCFCOSHead"):
        assert MODELS.get(name) is not None, name


def _ref_term(conv, out_level, x, deform):
    """One PConv term computed from first principles: plain, or DCN with the same weight."""
    if not deform or out_level == 0:
        return F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding)
    off = F.conv2d(x, conv.conv_offset.weight, conv.conv_offset.bias, conv.stride, conv.padding)
    return deform_conv2d(x, off, conv.weight, conv.stride, conv.padding) + conv.bias.view(1, -1,
                                                                                        1, 1)


def test_output_level_gating_of_pconv():
    """Output P4's stride-2 term reading P3 is deformable; output P3's upsample term is plain."""
    neck = SEPC(in_channels=[8] * 5, out_channels=8, Pconv_num=1, pconv_deform=True).eval()
    pconv = neck.Pconvs[0]
    with torch.no_grad():
        for conv in pconv.Pconv:
            conv.conv_offset.bias.uniform_(-1.5, 1.5)
    x = _pyramid(c=8)
    out = pconv(x)
    c0, c1, c2 = pconv.Pconv
    # P3 (level 0): every term plain, although the coarser input is P4.
    p3 = _ref_term(c1, 0, x[0], True) + F.interpolate(
        _ref_term(c0, 0, x[1], True), size=x[0].shape[-2:], mode="bilinear", align_corners=True)
    torch.testing.assert_close(out[0], F.relu(p3), rtol=1e-5, atol=1e-5)
    # P4 (level 1): the stride-2 term reads P3 and is deformable, as are the other two.
    p4 = (_ref_term(c1, 1, x[1], True) + _ref_term(c2, 1, x[0], True) + F.interpolate(
        _ref_term(c0, 1, x[2], True), size=x[1].shape[-2:], mode="bilinear", align_corners=True))
    torch.testing.assert_close(out[1], F.relu(p4), rtol=1e-5, atol=1e-5)
    plain_p4 = (_ref_term(c1, 1, x[1], False) + _ref_term(c2, 1, x[0], False))
    assert not torch.allclose(out[1], F.relu(plain_p4 + F.interpolate(
        _ref_term(c0, 1, x[2], False), size=x[1].shape[-2:], mode="bilinear",
        align_corners=True)), atol=1e-3)
    # P7 (top): no coarser term; its finer term is P6 through the stride-2 conv.
    p7 = _ref_term(c1, 4, x[4], True) + _ref_term(c2, 4, x[3], True)
    torch.testing.assert_close(out[4], F.relu(p7), rtol=1e-5, atol=1e-5)


def test_upsample_is_align_corners_true_to_exact_size():
    # Odd sizes (a 13x13 level over a 7x7 one): the coarser term is resized to exactly 13x13.
    neck = SEPC(in_channels=[4] * 2, out_channels=4, num_outs=2, Pconv_num=1).eval()
    x = [torch.randn(1, 4, 13, 13), torch.randn(1, 4, 7, 7)]
    c0, c1, _ = neck.Pconvs[0].Pconv
    up = F.interpolate(F.conv2d(x[1], c0.weight, c0.bias, padding=1), size=(13, 13),
                       mode="bilinear", align_corners=True)
    ref = F.relu(F.conv2d(x[0], c1.weight, c1.bias, padding=1) + up)
    torch.testing.assert_close(neck.Pconvs[0](x)[0], ref)


def test_ibn_equals_bn_over_concatenated_pyramid():
    feats = _pyramid(n=3, c=6, size=16)
    bn_a, bn_b = nn.BatchNorm2d(6), nn.BatchNorm2d(6)
    bn_b.load_state_dict(bn_a.state_dict())
    out = integrated_bn(feats, bn_a)
    # Reference: statistics over all pixels of all levels at once.
    flat = torch.cat([f.flatten(2) for f in feats], dim=2)  # (N, C, sum HW)
    mean = flat.mean(dim=(0, 2), keepdim=True)
    var = flat.var(dim=(0, 2), unbiased=False, keepdim=True)
    ref = (flat - mean) / torch.sqrt(var + bn_a.eps)
    torch.testing.assert_close(torch.cat([o.flatten(2) for o in out], dim=2), ref,
                               rtol=1e-5, atol=1e-5)
    bn_b(flat.unsqueeze(2))
    torch.testing.assert_close(bn_a.running_mean, bn_b.running_mean)
    torch.testing.assert_close(bn_a.running_var, bn_b.running_var)
    # Per-level BN would differ: the levels do not share statistics.
    assert not torch.allclose(out[4], nn.BatchNorm2d(6)(feats[4]), atol=1e-3)
    # Eval mode: the running statistics of the whole pyramid, not the batch's.
    bn_a.eval()
    out_eval = integrated_bn(feats, bn_a)
    ref_eval = (flat - bn_a.running_mean.view(1, -1, 1)) / torch.sqrt(
        bn_a.running_var.view(1, -1, 1) + bn_a.eps)
    torch.testing.assert_close(torch.cat([o.flatten(2) for o in out_eval], dim=2), ref_eval,
                               rtol=1e-5, atol=1e-5)
    assert [o.shape for o in out] == [f.shape for f in feats]


@pytest.mark.parametrize("padding,expect", [(0, 62), (1, 64)])
def test_lcconv_padding_option(padding, expect):
    neck = SEPC(in_channels=[8] * 5, out_channels=8, Pconv_num=1, lcconv_padding=padding).eval()
    out = neck(_pyramid(c=8, size=64))
    cls, loc = out[0]
    assert cls.shape[-1] == loc.shape[-1] == expect  # faithful 0 shrinks each level by 2 px
    assert len(out) == 5 and all(len(level) == 2 for level in out)


def _original_keys(ibn, pconv_deform, lcconv_deform):
    """The released checkpoints' neck names (as the SEPC release's sepc.py names them), written
    out independently."""
    keys = []
    for i in range(4):
        for j in range(3):
            keys += [f"Pconvs.{i}.Pconv.{j}.weight", f"Pconvs.{i}.Pconv.{j}.bias"]
            if pconv_deform:
                keys += [f"Pconvs.{i}.Pconv.{j}.conv_offset.weight",
                         f"Pconvs.{i}.Pconv.{j}.conv_offset.bias"]
        if ibn:
            keys += [f"Pconvs.{i}.bn.{n}" for n in
                     ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]
    for b in ("c", "l"):
        keys += [f"{b}conv.weight", f"{b}conv.bias"]
        if lcconv_deform:
            keys += [f"{b}conv.conv_offset.weight", f"{b}conv.conv_offset.bias"]
        if ibn:
            keys += [f"{b}bn.{n}" for n in
                     ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]
    return keys


@pytest.mark.parametrize("variant", list(VARIANT_ARGS))
def test_original_state_dict_loads_without_renaming(variant):
    args = VARIANT_ARGS[variant]
    keys = _original_keys(args.get("iBN", False), args.get("pconv_deform", False),
                          args.get("lcconv_deform", False))
    neck = SEPC(out_channels=16, in_channels=[16] * 5, **args)
    shapes = {k: v.shape for k, v in neck.state_dict().items()}
    assert sorted(shapes) == sorted(keys)
    original = {k: torch.randn(shapes[k]) if shapes[k] else torch.tensor(7) for k in keys}
    result = neck.load_state_dict(original, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    torch.testing.assert_close(neck.Pconvs[2].Pconv[1].weight, original["Pconvs.2.Pconv.1.weight"])


def _randomise(neck, seed=0):
    """Trained-looking state: non-zero offsets and BN statistics/affine far from identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in neck.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g))
                m.running_var.copy_(torch.rand(c, generator=g) * 2 + 0.2)
                m.weight.copy_(torch.randn(c, generator=g))
                m.bias.copy_(torch.randn(c, generator=g))
            elif isinstance(m, nn.Conv2d):  # the offset convs: offsets of about a pixel
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.05)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g))
        for name, p in neck.named_parameters():
            if name.endswith("Pconv.1.bias") or name.endswith("conv.bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return neck


@pytest.mark.parametrize("variant", ["pconv", "ibn", "sepc_lite", "sepc"])
@pytest.mark.parametrize("padding", [0, 1])
def test_fuse_folds_ibn_and_keeps_outputs(variant, padding):
    """Eval-mode iBN folded into the convs: same outputs to 1e-5, no BN left. Odd level sizes
    (P3-P7 of an 800x1344 image at stride 16) exercise the upsampled term and the varying term
    count at P3 and P7."""
    neck = _randomise(SEPC(in_channels=[8] * 5, out_channels=8, lcconv_padding=padding,
                           **VARIANT_ARGS[variant])).eval()
    g = torch.Generator().manual_seed(1)
    x = [torch.randn(2, 8, h, w, generator=g) for h, w in
         [(50, 84), (25, 42), (13, 21), (7, 11), (4, 6)]]
    with torch.no_grad():
        ref = neck(x)
        neck.fuse()
        out = neck(x)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in neck.modules())
    for (rc, rl), (oc, ol) in zip(ref, out):
        torch.testing.assert_close(oc, rc, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ol, rl, rtol=1e-5, atol=1e-5)


def test_fuse_refuses_training_mode_and_fuse_ibn_walks_a_model():
    neck = SEPC(in_channels=[8] * 5, out_channels=8, iBN=True)
    with pytest.raises(RuntimeError, match="eval"):
        neck.fuse()
    model = nn.Sequential(nn.Identity(), neck).eval()
    sepc.fuse_ibn(model)
    assert not neck.iBN and not hasattr(neck, "cbn") and not neck.Pconvs[0].ibn


def _conv_flops(module, inputs):
    from mmengine.analysis import FlopAnalyzer

    analyzer = FlopAnalyzer(module, (inputs,))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    return analyzer.by_operator()["conv"], analyzer.total()


def test_head_flops_match_the_paper_ratio():
    """4 PConvs + 1 cls/loc conv per branch = 0.99925x the stock 2 x 4-conv tower (C=256, an
    exact 2x pyramid); 4 stacked PConvs = 1.4985x four plain convs. Whole-module totals
    (upsampling, ReLU, ...) within 1% of the same figure."""
    from fixtures.towers import Tower  # the stock head minus its predictors (same in both)

    x = [torch.randn(1, 256, 64 >> i, 64 >> i) for i in range(5)]
    stock_conv, stock_total = _conv_flops(Tower().eval(), x)
    sepc_neck = SEPC(out_channels=256, lcconv_padding=1).eval()
    sepc_conv, sepc_total = _conv_flops(sepc_neck, x)
    assert sepc_conv / stock_conv == pytest.approx(0.99925, abs=2e-5)
    assert sepc_total / stock_total == pytest.approx(0.99925, rel=0.01)
    pconvs = nn.Sequential(*sepc_neck.Pconvs).eval()
    pconv_conv, _ = _conv_flops(pconvs, x)
    assert pconv_conv / (stock_conv / 2) == pytest.approx(1.4985, abs=2e-4)


# -- PConvNeck: the stand-alone module of the paper's two-stage claim --------------------------
#: Faster R-CNN's FPN levels P2..P6 (strides 4..64) of a 96x64 input: P6 is P5 max-pooled with
#: stride 2 (ceil), 3x2 -> 2x1, the size a stride-2 PConv term from P5 must also give.
P2_P6 = [(24, 16), (12, 8), (6, 4), (3, 2), (2, 1)]


def _centre_tap(neck):
    """Every PConv conv becomes the identity (weight 1 at the centre tap, bias 0): the stride-2
    term then reads the finer level's even pixels, the upsampled term the coarser level."""
    with torch.no_grad():
        for name, p in neck.named_parameters():
            p.zero_()
            if name.endswith("weight"):
                p[:, :, 1, 1] = torch.eye(p.shape[0], p.shape[1])


def test_pconv_neck_on_p2_p6_by_hand():
    """Constant levels 1, 2, 3, 4, 5 (P2..P6) through identity convs: each level sums itself
    and its neighbours (P2 has no finer one, P6 no coarser one), then ReLU. By hand, one PConv:
    3, 6, 9, 12, 9; a second on that: 9, 18, 27, 30, 21. Each level keeps its input's size."""
    x = [torch.full((1, 2, h, w), float(level + 1)) for level, (h, w) in enumerate(P2_P6)]
    for n, expect in [(1, [3, 6, 9, 12, 9]), (2, [9, 18, 27, 30, 21])]:
        neck = PConvNeck(in_channels=[2] * 5, out_channels=2, Pconv_num=n).eval()
        _centre_tap(neck)
        with torch.no_grad():
            out = neck(x)
        assert isinstance(out, tuple) and len(out) == 5
        assert out[0].shape == (1, 2, 24, 16) and out[-1].shape == (1, 2, 2, 1)  # P2, P6
        assert [tuple(o.shape[-2:]) for o in out] == P2_P6
        for o, v in zip(out, expect):
            torch.testing.assert_close(o, torch.full_like(o, float(v)), rtol=0, atol=0)


def _ref_pconv_neck(neck, x):
    """The PConv neck written out level by level from its weights (plain convs, no iBN)."""
    for module in neck.Pconvs:
        up, same, down = ((c.weight, c.bias) for c in module.Pconv)
        out = []
        for level, feat in enumerate(x):
            y = F.conv2d(feat, *same, padding=1)
            if level > 0:  # the finer level through the stride-2 conv
                y = y + F.conv2d(x[level - 1], *down, stride=2, padding=1)
            if level < len(x) - 1:  # the coarser level, upsampled to this one's exact size
                coarse = F.conv2d(x[level + 1], *up, padding=1)
                y = y + F.interpolate(coarse, size=feat.shape[-2:], mode="bilinear",
                                      align_corners=True)
            out.append(F.relu(y))
        x = out
    return x


def test_pconv_neck_on_p2_p6_equals_reference():
    """Random weights and inputs, 4 stacked PConvs (the paper's count), 3 -> 8 channels: the
    neck equals the written-out reference at every level, P2 (24x16) and P6 (2x1) included."""
    torch.manual_seed(0)
    neck = PConvNeck(in_channels=[3] * 5, out_channels=8).eval()
    with torch.no_grad():
        for p in neck.parameters():
            p.normal_(0, 0.3)
    g = torch.Generator().manual_seed(1)
    x = [torch.randn(2, 3, h, w, generator=g) for h, w in P2_P6]
    with torch.no_grad():
        out, ref = neck(x), _ref_pconv_neck(neck, x)
    assert [o.shape for o in out] == [torch.Size([2, 8, h, w]) for h, w in P2_P6]
    for o, r in zip(out, ref):
        torch.testing.assert_close(o, r, rtol=1e-5, atol=1e-5)
    assert out[-1].abs().sum() > 0 and out[0].abs().sum() > 0


def test_pconv_neck_names_ibn_fuse_and_refusals():
    """The SEPC neck's PConv names (no cls/loc convs); iBN folds; wrong pyramids are refused."""
    plain, ibn = PConvNeck(in_channels=[8] * 5, out_channels=8), PConvNeck(
        in_channels=[8] * 5, out_channels=8, iBN=True)
    sepc_keys = {k for k in SEPC(in_channels=[8] * 5, out_channels=8, iBN=True).state_dict()
                 if k.startswith("Pconvs.")}
    assert set(ibn.state_dict()) == sepc_keys
    assert not any("conv_offset" in k or "bn" in k for k in plain.state_dict())
    neck = _randomise(ibn).eval()
    x = [torch.randn(1, 8, h, w) for h, w in P2_P6]
    with torch.no_grad():
        ref = neck(x)
        sepc.fuse_ibn(nn.Sequential(neck))
        out = neck(x)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in neck.modules())
    for o, r in zip(out, ref):
        torch.testing.assert_close(o, r, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="expects 5 levels, got 4"):
        plain(x[:4])
    with pytest.raises(ValueError, match="4 in_channels for num_outs=5"):
        PConvNeck(in_channels=[8] * 4)
    with pytest.raises(ValueError, match="Pconv_num must be at least 1"):
        PConvNeck(Pconv_num=0)
