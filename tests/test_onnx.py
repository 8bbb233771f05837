"""ONNX export (bench/run/onnx.py): every graph holds standard ops only, ONNX Runtime's raw
head outputs equal PyTorch's (a smoke model per detector at two sizes, the 15 paper models and
the Faster R-CNN and FCOS ones at 800x1216; a two-stage detector's RoI graph on its proposals
too), the deformable conv's graph equals mmcv's CPU kernel, the RoI graph's RoiAlign equals
mmcv's in both of its modes, and the commands `bench export` and `bench perf --runtime` check
their input. The trained smoke cells' parity (raw outputs and COCO AP on the validation images)
is `make onnx-check`, which CI runs after `make table`."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

from bench.cli import build_parser, main
from bench.plan.cells import DETECTORS, VARIANTS, Cell, MatrixError, parse_list
from bench.run import benchmark as perf
from bench.run import latency, onnx
from fixtures.weights import perturb
from sepc.ops import deform_conv2d

CELLS = [(d, v) for d in parse_list(None, DETECTORS, "detector")
         for v in parse_list(None, VARIANTS, "variant")]
CPU = torch.device("cpu")


def _graph(model: nn.Module, path) -> tuple[nn.Module, object]:
    """(the unfused PyTorch model, the ONNX path of its fused copy): the graph as exported."""
    fused = latency.fuse_for_inference(copy.deepcopy(model))
    return model, onnx.export_onnx(fused, path)


def _samples(image: torch.Tensor) -> list:
    """Data samples of a batch of ``image``'s size (what decoding proposals reads)."""
    from mmdet.structures import DetDataSample

    hw = tuple(image.shape[-2:])
    return [DetDataSample(metainfo=dict(img_shape=hw, ori_shape=hw, scale_factor=(1.0, 1.0),
                                        batch_input_shape=hw, pad_shape=hw))
            for _ in range(len(image))]


def _max_diff(model: nn.Module, path, image: torch.Tensor) -> tuple[float, float]:
    """(max abs difference of ONNX Runtime's raw outputs to PyTorch's, largest |output|); a
    two-stage detector's RoI graph included, on PyTorch's own levels and proposals."""
    ref = onnx.TorchGraphs(model)
    diff = onnx.raw_diff(model, ref, onnx.OrtGraphs(path, torch.get_num_threads()), image,
                         _samples(image))
    assert diff < float("inf"), "output count or shapes differ"
    return diff, max(float(r.abs().max()) for r in ref.forward(image))


class _DCN(nn.Module):
    def __init__(self, weight: torch.Tensor, stride: int) -> None:
        super().__init__()
        self.weight, self.stride = nn.Parameter(weight), stride

    def forward(self, x: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        return deform_conv2d(x, offset, self.weight, self.stride, 1)


@pytest.mark.parametrize("stride", [1, 2])
def test_deform_conv_graph_matches_mmcv_kernel(tmp_path, stride):
    """Random offsets of up to +-6 px on 13x10 maps, some taps far outside (+-20 px): the
    exported GridSample + MatMul graph on ONNX Runtime equals mmcv's CPU kernel to 1e-5."""
    g = torch.Generator().manual_seed(stride)
    x = torch.randn(2, 6, 13, 10, generator=g)
    w = torch.randn(5, 6, 3, 3, generator=g)
    ho, wo = (13 - 1) // stride + 1, (10 - 1) // stride + 1
    off = (torch.rand(2, 18, ho, wo, generator=g) * 12 - 6)
    off[:, :, ::3, ::2] += 20 * torch.sign(torch.randn(2, 18, 1, 1, generator=g))
    path = tmp_path / "dcn.onnx"
    torch.onnx.export(_DCN(w, stride).eval(), (x, off), str(path), dynamo=False,
                      opset_version=onnx.OPSET, input_names=["x", "offset"],
                      dynamic_axes={"x": {0: "n", 2: "h", 3: "w"},
                                    "offset": {0: "n", 2: "ho", 3: "wo"}})
    ops = {op for _, op in onnx.op_types(path)}
    assert {"GridSample", "MatMul"} <= ops and not onnx.custom_ops(path)
    sess = onnx.session(path, 1)
    out = sess.run(None, {"x": x.numpy(), "offset": off.numpy()})[0]
    ref = deform_conv2d(x, off, w, stride, 1, impl="mmcv")
    assert (off.abs() > 13).any()  # some taps sample wholly outside the image
    np.testing.assert_allclose(out, ref.numpy(), rtol=1e-5, atol=1e-5)
    eager = deform_conv2d(x, off, w, stride, 1, impl="onnx")  # what the export traces
    torch.testing.assert_close(eager, ref, rtol=1e-5, atol=1e-5)


def test_op_types_catch_a_custom_domain(tmp_path):
    """mmdeploy's DCNv1 node (domain mmdeploy) is what the standard-op check must refuse."""
    import onnx as onnx_lib
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Relu", ["x"], ["y"]),
             helper.make_node("MMCVDeformConv2d", ["y", "y"], ["z"], domain="mmdeploy")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                           [1])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1])])
    path = tmp_path / "custom.onnx"
    onnx_lib.save(helper.make_model(graph), str(path))
    assert onnx.custom_ops(path) == ["mmdeploy::MMCVDeformConv2d"]
    assert ("ai.onnx", "Relu") in onnx.op_types(path)


#: One smoke model per detector here (every variant's part is in one of them); all 15 trained
#: smoke cells are exported and checked by `make onnx-check`, which CI runs after `make table`.
SMOKE = [("retinanet", "sepc"), ("freeanchor", "sepc_lite"), ("fsaf", "ibn"), ("fcos", "sepc"),
         ("faster_rcnn", "pconv")]


@pytest.fixture(scope="module")
def smoke_graphs(tmp_path_factory):
    """Smoke models (random, perturbed weights) and their exported graphs."""
    folder = tmp_path_factory.mktemp("smoke-onnx")
    return {(d, v): _graph(perturb(perf.build_detector(perf.SIZES["smoke"], d, v, CPU)),
                           folder / f"{d}__{v}.onnx") for d, v in SMOKE}


def test_smoke_graphs_are_standard_and_equal_pytorch_at_any_size(smoke_graphs):
    """One graph serves a batch of two 256x256 images and a 192x320 one (dynamic axes): raw
    head outputs within 1e-4 of PyTorch's unfused model."""
    g = torch.Generator().manual_seed(0)
    images = [torch.randn(2, 3, 256, 256, generator=g), torch.randn(1, 3, 192, 320, generator=g)]
    diffs = {}
    for key, (model, path) in smoke_graphs.items():
        assert not onnx.custom_ops(path), key
        diffs[key] = max(_max_diff(model, path, im)[0] for im in images)
    print("smoke max abs diffs:", {f"{d}/{v}": f"{x:.1e}" for (d, v), x in diffs.items()})
    assert max(diffs.values()) <= onnx.RAW_TOL, diffs


@pytest.mark.parametrize("detector,variant,logits", [
    ("retinanet", "sepc_lite", "bbox_head.retina_cls"),
    ("faster_rcnn", "pconv", "roi_head.bbox_head.fc_cls"),  # in the second (RoI) graph
])
def test_a_wrong_graph_fails_the_parity_check(tmp_path, detector, variant, logits):
    """check_cell (what `bench export --check` runs) on validation images: the model's own
    graph passes; a graph whose class logits are off by 1e-3 fails the raw-output tolerance."""
    from bench.plan.options import Options

    model, cfg = onnx.build_cell(Cell("smoke", detector, variant), Options(val_images=4), None)
    _, path = _graph(perturb(model), tmp_path / "own.onnx")
    own = onnx.check_cell(model, cfg, path, torch.get_num_threads())
    assert own["max_abs_diff"] <= onnx.RAW_TOL and own["AP_diff"] <= onnx.AP_TOL
    assert own["images"] == 4
    wrong = copy.deepcopy(model)
    with torch.no_grad():
        wrong.get_submodule(logits).bias.add_(1e-3)
    _, path = _graph(wrong, tmp_path / "wrong.onnx")
    assert onnx.check_cell(model, cfg, path, torch.get_num_threads())["max_abs_diff"] > onnx.RAW_TOL


@pytest.mark.parametrize("aligned,ratio", [(True, 0), (False, 2)])
def test_roi_graph_pools_as_mmcv_in_both_modes(tmp_path, aligned, ratio):
    """The RoI graph's standard RoiAlign against mmdet's extractor (mmcv's kernel): half-pixel
    RoIs with adaptive sampling (mmdet 3.x's) and mmdet 1.1's unshifted ones with 2 samples (the
    paper profile's), on RoIs below one feature pixel, partly outside the image, of every level
    and, in a second batch, all of one level (three levels pool nothing)."""
    model = perturb(perf.build_detector(perf.SIZES["smoke"], "faster_rcnn", "baseline", CPU))
    for layer in model.roi_head.bbox_roi_extractor.roi_layers:
        layer.aligned, layer.sampling_ratio = aligned, ratio
    path = onnx.export_onnx(model, tmp_path / "faster.onnx")
    assert [p.name for p in onnx.graph_paths(path)] == ["faster.onnx", "faster.roi.onnx"]
    assert ("ai.onnx", "RoiAlign") in onnx.op_types(onnx.roi_path(path))
    assert not onnx.custom_ops(onnx.roi_path(path))
    image = torch.randn(2, 3, 192, 256, generator=torch.Generator().manual_seed(0))
    ref, graphs = onnx.TorchGraphs(model), onnx.OrtGraphs(path, 1)
    feats = ref.forward(image)[:4]
    every = torch.tensor([[0, 10, 10, 10.6, 10.9], [1, 3.2, 4.1, 5.0, 5.5],  # < 1 px at P2
                          [0, -20, -8, 30, 40], [1, 200, 150, 300, 260],  # partly outside
                          [0, 5, 5, 60, 70], [1, 0, 0, 150, 120], [0, -30, -20, 280, 230]])
    one_level = torch.tensor([[0, 4, 4, 20, 20], [1, 50, 60, 70, 75]], dtype=torch.float32)
    for rois in (every, one_level):
        got, want = graphs.roi(feats, rois), ref.roi(feats, rois)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)
    levels = model.roi_head.bbox_roi_extractor.map_roi_levels(every, 4)
    assert set(levels.tolist()) == {0, 1, 2, 3}
    assert set(model.roi_head.bbox_roi_extractor.map_roi_levels(one_level, 4).tolist()) == {0}


@pytest.fixture(scope="module", params=parse_list(None, DETECTORS, "detector"))
def paper_parity(request, tmp_path_factory):
    """The 5 paper models of one detector (R-50, 80 classes, random perturbed weights) exported,
    run once on ONNX Runtime at 800x1216 and compared with PyTorch; one graph on disk at a time.
    One thread each (a second waits for a descheduled one on shared cores), one detector per
    fixture: each stays well inside pytest's timeout on a loaded machine."""
    folder = tmp_path_factory.mktemp("paper-onnx")
    image = torch.randn(1, 3, 800, 1216, generator=torch.Generator().manual_seed(0))
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    rows = {}
    try:
        for d, v in [c for c in CELLS if c[0] == request.param]:
            model, path = _graph(perturb(perf.build_detector(perf.SIZES["paper-1216"], d, v,
                                                             CPU)), folder / "model.onnx")
            diff, scale = _max_diff(model, path, image)
            rows[d, v] = dict(custom=onnx.custom_ops(path), diff=diff, scale=scale)
            path.unlink()
    finally:
        torch.set_num_threads(saved)
    print("paper max abs diffs (largest output):",
          {f"{d}/{v}": f"{r['diff']:.1e} ({r['scale']:.0f})" for (d, v), r in rows.items()})
    return rows


@pytest.mark.slow
def test_faster_rcnn_and_fcos_paper_graphs_equal_pytorch_at_800x1216(tmp_path):
    """The paper-size R-50 models of the two rows outside the paper's table, as the paper
    profile builds them (Faster R-CNN's RoIs pooled as mmdet 1.1's, unshifted with 2 samples):
    standard ops only, within the tolerance of the paper models above."""
    image = torch.randn(1, 3, 800, 1216, generator=torch.Generator().manual_seed(0))
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for d, v in [("faster_rcnn", "baseline"), ("faster_rcnn", "pconv"), ("fcos", "sepc")]:
            model, path = _graph(perturb(perf.build_detector(perf.SIZES["paper-1216"], d, v,
                                                             CPU)), tmp_path / "model.onnx")
            if d == "faster_rcnn":
                layer = model.roi_head.bbox_roi_extractor.roi_layers[0]
                assert (layer.aligned, layer.sampling_ratio) == (False, 2)
            assert not any(onnx.custom_ops(p) for p in onnx.graph_paths(path)), (d, v)
            diff, scale = _max_diff(model, path, image)
            assert diff <= max(onnx.RAW_TOL, 1e-5 * scale), (d, v, diff, scale)
    finally:
        torch.set_num_threads(saved)


@pytest.mark.slow
def test_paper_graphs_hold_standard_ops_only(paper_parity):
    assert {k: r["custom"] for k, r in paper_parity.items() if r["custom"]} == {}


@pytest.mark.slow
def test_paper_graphs_equal_pytorch_at_800x1216(paper_parity):
    """The 5 variants of a detector within 1e-4, or 1e-5 of the outputs' largest magnitude
    where that is larger: random R-50 weights with drawn BN statistics give outputs up to ~50 (a
    trained head's logits are a few units), and folding BN alone moves them by ~2e-4 there (fp32
    rounding, 4e-6 relative)."""
    over = {k: r for k, r in paper_parity.items()
            if r["diff"] > max(onnx.RAW_TOL, 1e-5 * r["scale"])}
    assert len(paper_parity) == 5 and not over, over


def test_export_command_checks_input_then_writes_graphs(tmp_path, capsys):
    for argv, msg in [(["--random", "--check"], "does not apply to --random"),
                      (["--threads", "0", "--random"], "--threads 0"),
                      (["--detectors", "yolo", "--random"], "unknown detector"),
                      ([], "no trained model")]:
        assert main(["export", "--profile", "smoke", "--results", str(tmp_path / "none"),
                     "--onnx", str(tmp_path / "out"), *argv]) == 2, argv
        assert msg in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing written before the checks
    assert main(["export", "--profile", "smoke", "--detectors", "fsaf", "--variants", "sepc",
                 "--random", "--onnx", str(tmp_path / "out")]) == 0
    doc = json.loads((tmp_path / "out" / "export.json").read_text())
    (row,) = doc["rows"]
    assert row["cell"] == "fsaf__sepc__s0" and row["custom_ops"] == []
    assert "GridSample" in row["ops"]
    assert (tmp_path / "out" / "fsaf__sepc__s0.onnx").is_file() and doc["opset"] == onnx.OPSET
    # a two-stage cell: two graphs, RoiAlign among the standard ops
    assert main(["export", "--profile", "smoke", "--detectors", "faster_rcnn", "--variants",
                 "pconv", "--random", "--onnx", str(tmp_path / "two")]) == 0
    (row,) = json.loads((tmp_path / "two" / "export.json").read_text())["rows"]
    assert [p.split("/")[-1] for p in row["graphs"]] == ["faster_rcnn__pconv__s0.onnx",
                                                         "faster_rcnn__pconv__s0.roi.onnx"]
    assert row["custom_ops"] == [] and "RoiAlign" in row["ops"]


def test_perf_runtime_option_is_checked():
    parse = build_parser().parse_args
    for argv, msg in [(["--runtime", "tensorrt"], "unknown runtime 'tensorrt'"),
                      (["--runtime", "onnxruntime", "--channels-last"], "no --channels-last")]:
        with pytest.raises(MatrixError, match=msg):
            perf.settings_from(parse(["perf", "--device", "cpu", *argv]))
    s, *_ = perf.settings_from(parse(["perf", "--device", "cpu", "--runtime",
                                      "onnxruntime,torch"]))
    assert s.runtimes == ("onnxruntime", "torch")


@pytest.mark.slow
def test_perf_times_both_runtimes_interleaved(tmp_path):
    from reports.perf import perf_markdown

    rc = main(["perf", "--sizes", "smoke", "--detectors", "retinanet", "--variants", "pconv",
               "--runtime", "torch,onnxruntime", "--device", "cpu", "--threads", "1",
               "--warmup", "0", "--reps", "2", "--batch", "2", "--batch-warmup", "0",
               "--batch-reps", "1", "--no-flops", "--no-memory", "--out", str(tmp_path), "--quiet"])
    assert rc == 0
    doc = json.loads((tmp_path / "perf.json").read_text())
    assert [(r["runtime"], r["variant"]) for r in doc["rows"]] == [
        ("torch", "baseline"), ("torch", "pconv"), ("onnxruntime", "baseline"),
        ("onnxruntime", "pconv")]
    assert all(r["step_ratio"] > 0 and len(r["step_times_ms"]) == 2 for r in doc["rows"])
    assert doc["rows"][2]["step_ratio"] == 1.0 and "onnxruntime" in doc["meta"]
    md = perf_markdown(doc)
    assert "| retinanet | PConv | onnxruntime |" in md and "by runtime" in md
