"""The scale-equalizing conv and the deformable conv behind it."""
import math

import pytest
import torch
import torch.nn.functional as F

from sepc.ops import SEPCConv, deform_conv2d, deform_conv2d_torch


def _rand(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("stride,padding", [(1, 1), (2, 1), (1, 0)])
def test_zero_offset_equals_plain_conv(stride, padding):
    x, w = _rand(2, 5, 9, 11), _rand(7, 5, 3, 3, seed=1)
    ref = F.conv2d(x, w, stride=stride, padding=padding)
    off = torch.zeros(2, 18, *ref.shape[-2:], dtype=x.dtype)
    for impl in ("torch", "mmcv"):
        out = deform_conv2d(x, off, w, stride, padding, impl=impl)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_integer_offset_moves_sampling_as_documented():
    # Offset channel 2k is dy, 2k+1 is dx of tap k (row-major). dy=+1 on every tap samples one
    # row lower: the same as a plain conv of the image shifted up by one row (zero at the bottom).
    x, w = _rand(1, 3, 8, 8), _rand(4, 3, 3, 3, seed=2)
    off = torch.zeros(1, 18, 8, 8, dtype=x.dtype)
    off[:, 0::2] = 1.0
    ref = F.conv2d(F.pad(x, (1, 1, 0, 2)), w)
    torch.testing.assert_close(deform_conv2d_torch(x, off, w, 1, 1), ref, rtol=1e-6, atol=1e-6)
    # dx=-1 on the centre tap only (k=4) moves only that tap one pixel left.
    off = torch.zeros(1, 18, 8, 8, dtype=x.dtype)
    off[:, 2 * 4 + 1] = -1.0
    w_centre = torch.zeros_like(w)
    w_centre[:, :, 1, 1] = w[:, :, 1, 1]
    ref = F.conv2d(F.pad(x[..., :-1], (1, 0)), w_centre, padding=1) + F.conv2d(
        x, w - w_centre, padding=1)
    torch.testing.assert_close(deform_conv2d_torch(x, off, w, 1, 1), ref, rtol=1e-6, atol=1e-6)


def _naive_dcn(x, off, w, stride, pad):
    """DCNv1 from its definition: bilinear sample of each tap, zero outside the image."""
    n, _, h, wd = x.shape
    out = torch.zeros(n, w.shape[0], *off.shape[-2:], dtype=x.dtype)
    for b in range(n):
        for ho in range(off.shape[-2]):
            for wo in range(off.shape[-1]):
                for k in range(9):
                    i, j = divmod(k, 3)
                    y = ho * stride - pad + i + off[b, 2 * k, ho, wo].item()
                    xx = wo * stride - pad + j + off[b, 2 * k + 1, ho, wo].item()
                    if y <= -1 or y >= h or xx <= -1 or xx >= wd:
                        continue
                    y0, x0 = math.floor(y), math.floor(xx)
                    for yy in (y0, y0 + 1):
                        for xc in (x0, x0 + 1):
                            if 0 <= yy < h and 0 <= xc < wd:
                                wgt = (1 - abs(y - yy)) * (1 - abs(xx - xc))
                                out[b, :, ho, wo] += wgt * (w[:, :, i, j] @ x[b, :, yy, xc])
    return out


@pytest.mark.parametrize("shape,stride", [((2, 3, 5, 6), 1), ((1, 3, 7, 7), 2),
                                          ((1, 3, 1, 1), 1), ((2, 3, 2, 3), 2)])
def test_torch_path_matches_the_definition(shape, stride):
    """Including 1x1 and 2x3 maps (P7 of small images), which mmcv's kernel refuses."""
    x, w = _rand(*shape), _rand(4, shape[1], 3, 3, seed=7)
    ho = (shape[2] + 2 - 3) // stride + 1
    wo = (shape[3] + 2 - 3) // stride + 1
    off = _rand(shape[0], 18, ho, wo, seed=8) * 1.5
    torch.testing.assert_close(
        deform_conv2d(x, off, w, stride, 1), _naive_dcn(x, off, w, stride, 1), rtol=1e-9, atol=1e-9
    )


@pytest.mark.parametrize("shape,stride", [((2, 6, 13, 10), 1), ((3, 4, 9, 9), 2),
                                          ((1, 4, 3, 4), 1), ((2, 4, 3, 5), 2)])
def test_torch_path_matches_mmcv_kernel(shape, stride):
    """Fractional offsets and borders: the fast CPU path equals mmcv's kernel to 1e-5."""
    x = _rand(*shape).float()
    w = _rand(5, shape[1], 3, 3, seed=3).float()
    ho = (shape[2] + 2 - 3) // stride + 1
    wo = (shape[3] + 2 - 3) // stride + 1
    off = (_rand(shape[0], 18, ho, wo, seed=4) * 2.5).float()
    ref = deform_conv2d(x, off, w, stride, 1, impl="mmcv")
    out = deform_conv2d(x, off, w, stride, 1, impl="torch")
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_torch_path_gradients_match_mmcv():
    x = _rand(2, 4, 7, 7).float().requires_grad_()
    w = _rand(3, 4, 3, 3, seed=5).float().requires_grad_()
    off = (_rand(2, 18, 7, 7, seed=6) * 1.7).float().requires_grad_()
    grads = []
    for impl in ("mmcv", "torch"):
        out = deform_conv2d(x, off, w, 1, 1, impl=impl)
        grads.append(torch.autograd.grad((out * out).sum(), (x, w, off)))
    for a, b in zip(*grads):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


def _training_grads(impl, x, off, w, stride):
    out = deform_conv2d(x, off, w, stride, 1, impl=impl)
    return (out, *torch.autograd.grad((out * out.cos()).sum(), (x, off, w)))


@pytest.mark.parametrize("shape,stride,scale", [((2, 6, 9, 8), 1, 1.5), ((3, 5, 8, 9), 2, 1.5),
                                                ((2, 4, 6, 7), 1, 6.0), ((2, 4, 7, 6), 2, 6.0)])
def test_training_path_output_and_gradients_match_mmcv(shape, stride, scale):
    """The grid_sample + bmm form: output and gradients (input, offset, weight) equal mmcv's CPU
    kernel to 1e-5 of their scale, offsets of up to ~6x the map included (taps outside: 0)."""
    x = _rand(*shape, seed=11).float().requires_grad_()
    w = (_rand(4, shape[1], 3, 3, seed=12) * 0.3).float().requires_grad_()
    ho, wo = (shape[2] - 1) // stride + 1, (shape[3] - 1) // stride + 1
    off = (_rand(shape[0], 18, ho, wo, seed=13) * scale).float().requires_grad_()
    ref = _training_grads("mmcv", x, off, w, stride)
    out = _training_grads("torch", x, off, w, stride)
    for name, a, b in zip(("output", "input", "offset", "weight"), out, ref):
        scale_ = b.abs().max()
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * float(scale_), msg=name)


@pytest.mark.parametrize("shape,stride,scale", [((2, 3, 5, 6), 1, 1.5), ((1, 2, 6, 5), 2, 4.0),
                                                ((2, 2, 1, 2), 1, 1.5)])
def test_training_path_gradcheck_float64(shape, stride, scale):
    x = _rand(*shape, seed=14).requires_grad_()
    w = _rand(3, shape[1], 3, 3, seed=15).requires_grad_()
    ho, wo = (shape[2] - 1) // stride + 1, (shape[3] - 1) // stride + 1
    off = (_rand(shape[0], 18, ho, wo, seed=16) * scale).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b, c: deform_conv2d_torch(a, b, c, stride, 1),
                                    (x, off, w))


def test_cached_grids_serve_each_shape_its_own():
    """The zero-offset grid is cached per layer shape and dtype: calls alternating between
    shapes, strides and dtypes in one process each equal the definition, every grid is built
    once, and training through it leaves it as built."""
    from sepc.ops.deform_conv import _grid_base

    cases = [((2, 3, 5, 6), 1), ((1, 3, 7, 7), 2), ((2, 3, 6, 5), 1), ((2, 3, 5, 6), 2)]
    inputs = []
    for i, (shape, stride) in enumerate(cases):
        ho, wo = (shape[2] - 1) // stride + 1, (shape[3] - 1) // stride + 1
        x, w = _rand(*shape, seed=20 + i), _rand(4, shape[1], 3, 3, seed=30 + i)
        off = _rand(shape[0], 18, ho, wo, seed=40 + i) * 1.5
        inputs += [(x, w, off, stride), (x.float(), w.float(), off.float(), stride)]
    _grid_base.cache_clear()
    for _ in range(2):
        for x, w, off, stride in inputs:
            x = x.clone().requires_grad_()
            out = deform_conv2d_torch(x, off, w, stride, 1)
            out.sum().backward()
            ref = _naive_dcn(x.detach().double(), off.double(), w.double(), stride, 1)
            tol = 1e-9 if x.dtype == torch.float64 else 1e-5
            torch.testing.assert_close(out.detach().double(), ref, rtol=tol, atol=tol)
    info = _grid_base.cache_info()
    assert (info.currsize, info.misses, info.hits) == (8, 8, 8)
    for x, _, off, stride in inputs:
        key = (tuple(x.shape[-2:]), tuple(off.shape[-2:]), (3, 3), (stride, stride), (1, 1),
               (1, 1), x.dtype, x.device)
        for cached, fresh in zip(_grid_base(*key), _grid_base.__wrapped__(*key)):
            assert torch.equal(cached, fresh)
    base, scale = _grid_base.__wrapped__((5, 6), (5, 6), (3, 3), (1, 1), (1, 1), (1, 1),
                                         torch.float64, torch.device("cpu"))
    # tap k=5, i.e. (1, 2), of output (2, 3) at zero offset samples pixel (y, x) = (2, 4)
    torch.testing.assert_close(base[5, 2, 3], torch.tensor([(2 * 4 + 1) / 6 - 1,
                                                            (2 * 2 + 1) / 5 - 1],
                                                           dtype=torch.float64))
    torch.testing.assert_close(scale, torch.tensor([2 / 6, 2 / 5], dtype=torch.float64))


def test_sepc_conv_gating_and_zero_init():
    conv = SEPCConv(4, 6, 3, stride=1, padding=1, part_deform=True).double()
    x = _rand(2, 4, 6, 6)
    plain = F.conv2d(x, conv.weight, conv.bias, padding=1)
    # At init the offsets are zero: every level equals the plain conv with the same weight.
    for level in range(5):
        torch.testing.assert_close(conv(level, x), plain)
    with torch.no_grad():
        conv.conv_offset.bias.fill_(0.5)
    torch.testing.assert_close(conv(0, x), plain)  # output level 0 (P3): always plain
    assert not torch.allclose(conv(1, x), plain)  # levels >= 1: deformable, same weight
    assert conv.is_deformable_at(1) and not conv.is_deformable_at(0)
    assert not SEPCConv(4, 6, part_deform=False).is_deformable_at(3)


def test_sepc_conv_parameter_count():
    assert sum(p.numel() for p in SEPCConv(256, 256, padding=1).parameters()) == 590_080
    deform = SEPCConv(256, 256, padding=1, part_deform=True)
    assert sum(p.numel() for p in deform.conv_offset.parameters()) == 41_490


@pytest.mark.parametrize("stride", [1, 2])
def test_inference_and_training_forms_agree_in_both_layouts(stride):
    """No grad: taps gathered into a tap image + strided conv; with grad: grid_sample + one
    matmul. Same values, in NCHW or channels-last (whose layout the output keeps)."""
    x, w = _rand(2, 6, 11, 9).float(), _rand(5, 6, 3, 3, seed=9).float()
    off = (_rand(2, 18, (11 - 1) // stride + 1, (9 - 1) // stride + 1, seed=10) * 2).float()
    ref = deform_conv2d(x, off, w, stride, 1, impl="mmcv")
    with torch.no_grad():
        cl = x.contiguous(memory_format=torch.channels_last)
        out_cl = deform_conv2d_torch(cl, off, w, stride, 1)
        assert out_cl.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(out_cl, ref, rtol=1e-5, atol=1e-5)
    train = deform_conv2d_torch(x, off.clone().requires_grad_(), w, stride, 1)
    assert train.requires_grad and train.is_contiguous()
    torch.testing.assert_close(train.detach(), ref, rtol=1e-5, atol=1e-5)


def test_the_default_implementation_is_switched_for_a_block_only():
    from sepc.ops import deform_conv

    before = deform_conv.DEFAULT_IMPL
    with pytest.raises(RuntimeError), deform_conv.using("torch"):
        assert deform_conv.DEFAULT_IMPL == "torch"
        raise RuntimeError("the block fails")
    assert deform_conv.DEFAULT_IMPL == before
