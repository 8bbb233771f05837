"""The rows beyond the paper's one-stage table, added as data: Faster R-CNN (the paper's
two-stage claim, PConv as a stand-alone neck) and FCOS (anchor-free, every variant). Which cells
they have, what planning makes of them in every profile (layouts, sizes, warm start, box
conventions), the standalone configs they export, the guard against a pyramid whose levels
are not the heads' (jshilong/SEPC#22), and, end to end, a few iterations of both rows into the
table and the report."""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main
from bench.plan import plan
from bench.plan import settings as plan_settings
from bench.plan.cells import DETECTORS, VARIANTS, Cell, MatrixError, cells, parse_list
from bench.plan.config import build_config
from bench.plan.levels import check_levels, pyramid
from bench.plan.options import Options
from bench.plan.resolve import resolve

REPO = Path(__file__).resolve().parent.parent
NEW = ["faster_rcnn", "fcos"]


def _cfg(profile: str, detector: str, variant: str):
    return build_config(Cell(profile, detector, variant), Options(), data=False)


# -- the matrix: which cells a row has ---------------------------------------------------------
def test_each_row_has_the_cells_that_apply_to_it():
    """Faster R-CNN's row is the baseline and PConv (iBN and the SEPC parts do not apply to a
    stand-alone neck before an RPN and RoI head); FCOS's every variant, the paper's by default.
    A selection leaves a row's others out; a cell of one of them, or a selection of none, is
    refused with one line."""
    assert [c.variant for c in cells("smoke", ["faster_rcnn"])] == ["baseline", "pconv"]
    every = parse_list("all", VARIANTS, "variant")
    assert [c.variant for c in cells("smoke", ["faster_rcnn"], every)] == ["baseline", "pconv"]
    assert [c.variant for c in cells("smoke", ["fcos"])] == [
        "baseline", "pconv", "ibn", "sepc_lite", "sepc"]
    assert [c.key for c in cells("smoke", NEW, ["sepc", "pconv"])] == [
        "faster_rcnn__pconv__s0", "fcos__sepc__s0", "fcos__pconv__s0"]
    with pytest.raises(MatrixError, match="faster_rcnn has no sepc_lite cell: that variant does "
                                          r"not apply to it \(its variants: baseline, pconv\)"):
        Cell("smoke", "faster_rcnn", "sepc_lite")
    with pytest.raises(MatrixError, match="no cell selected: --variants ibn,sepc does not apply "
                                          "to --detectors faster_rcnn"):
        cells("smoke", ["faster_rcnn"], ["ibn", "sepc"])
    with pytest.raises(MatrixError, match="has no ibn cell"):
        Cell.from_key("smoke", "faster_rcnn__ibn__s0")


# -- what planning makes of them -----------------------------------------------------------------
def test_the_pconv_neck_feeds_faster_rcnns_own_heads_in_every_profile():
    """The PConv variant: [FPN P2-P6, PConvNeck] before mmdet's RPN and RoI head (no head swap,
    no cls/loc convs); the smoke profile sizes the parts Faster R-CNN has (no bbox_head key),
    halves its anchors and RoI level scale; `paper` puts every box convention of mmdet 1.1 on
    the RPN, the RoI head, RoIAlign and both NMS stages; `paper-modern` keeps mmdet 3.x's."""
    smoke = _cfg("smoke", "faster_rcnn", "pconv").model
    fpn, neck = smoke.neck
    assert (fpn.type, fpn.get("start_level", 0), fpn.num_outs) == ("FPN", 0, 5)
    assert neck == dict(type="PConvNeck", in_channels=[32] * 5, out_channels=32, num_outs=5,
                        Pconv_num=4, iBN=False, pconv_deform=False)
    assert "bbox_head" not in smoke and smoke.rpn_head.type == "RPNHead"
    assert (smoke.rpn_head.in_channels, smoke.rpn_head.anchor_generator.scales) == (32, [4])
    extractor = smoke.roi_head.bbox_roi_extractor
    assert (extractor.out_channels, extractor.finest_scale) == (32, 28)
    assert smoke.roi_head.bbox_head.type == "Shared2FCBBoxHead"
    assert _cfg("smoke", "faster_rcnn", "baseline").model.neck.type == "FPN"

    paper = _cfg("paper", "faster_rcnn", "pconv").model
    assert paper.neck[1].in_channels == [256] * 5
    assert paper.rpn_head.anchor_generator.type == "LegacyAnchorGenerator"
    assert paper.rpn_head.bbox_coder.type == "LegacyDeltaXYWHBBoxCoder"
    assert paper.roi_head.bbox_head.bbox_coder.type == "LegacyDeltaXYWHBBoxCoder"
    assert (paper.roi_head.bbox_roi_extractor.roi_layer.aligned,
            paper.roi_head.bbox_roi_extractor.roi_layer.sampling_ratio) == (False, 2)
    for stage in ("rpn", "rcnn"):
        assert paper.train_cfg[stage].assigner.iou_calculator.type == "LegacyBboxOverlaps2D"
        assert paper.test_cfg[stage].nms.offset == 1
    # mmdet 1.1's recipe in the _base_, whatever the profile
    assert paper.rpn_head.loss_bbox == dict(type="SmoothL1Loss", beta=1.0 / 9.0, loss_weight=1.0)
    assert paper.train_cfg.rpn_proposal.max_per_img == 2000
    modern = _cfg("paper-modern", "faster_rcnn", "pconv").model
    assert modern.rpn_head.anchor_generator.type == "AnchorGenerator"
    assert modern.roi_head.bbox_roi_extractor.roi_layer == dict(type="RoIAlign", output_size=7,
                                                               sampling_ratio=0)
    assert "offset" not in modern.test_cfg.rcnn.nms


def test_fcos_is_mmdets_with_the_tables_backbone_and_sizes():
    """mmdet's FCOS R-50 1x on torchvision's R-50 (every row's), the SEPC head's centre-ness on
    mmdet's branch (the classification one), and in the smoke profile its size ranges halved."""
    paper = _cfg("paper", "fcos", "sepc").model
    assert (paper.backbone.style, paper.data_preprocessor.bgr_to_rgb) == ("pytorch", True)
    assert paper.bbox_head.type == "SEPCFCOSHead" and paper.bbox_head.stacked_convs == 0
    assert not paper.bbox_head.get("centerness_on_reg", False)
    assert paper.neck[1].type == "SEPC" and paper.test_cfg.nms.offset == 1
    smoke = _cfg("smoke", "fcos", "baseline").model
    assert smoke.bbox_head.regress_ranges[0] == (-1, 32)
    assert smoke.bbox_head.regress_ranges[-1][0] == 256


def test_the_warm_start_loads_only_into_an_fpn_of_its_levels():
    """The smoke warm start (RetinaNet's backbone + FPN at P3-P7): FCOS's FPN has its levels
    (its extra level reads P5, a shape the loader skips, as ATSS's), Faster R-CNN's P2-P6 does
    not: it starts from its initialiser, its backbone from the warm start."""
    for det, with_neck in (("retinanet", True), ("atss", True), ("fcos", True),
                           ("faster_rcnn", False)):
        model = resolve(Cell("smoke", det, "pconv"), Options(), data=False).model
        assert model.backbone.init_cfg.prefix == "backbone."
        assert bool(model.neck[0].get("init_cfg")) is with_neck, det


def test_paper_plan_of_every_detector_has_its_layouts(coco_1333):
    """`bench plan --profile paper --detectors all`: 28 cells, the new rows' layouts from
    their variants (8 GPUs x 2 images, 4 x 4 with iBN; total batch 16), Faster R-CNN at
    mmdet's lr 0.02 with both of its heads named."""
    chosen = cells("paper", parse_list("all", DETECTORS, "detector"))
    rows = {p.key: p.row() for p in plan(chosen, Options(data_root=str(coco_1333)))}
    assert len(rows) == 15 + 6 + 2 + 5
    faster = rows["faster_rcnn__pconv__s0"]
    assert (faster["gpus"], faster["imgs_per_gpu"], faster["total_batch"]) == (8, 2, 16)
    assert faster["lr"] == 0.02 and faster["head"] == "RPNHead/Shared2FCBBoxHead"
    assert faster["clip_grad"] == 35 and faster["max_epochs"] == 12
    ibn = rows["fcos__ibn__s0"]
    assert (ibn["gpus"], ibn["imgs_per_gpu"], ibn["head"]) == (4, 4, "SEPCFCOSHead")
    assert rows["fcos__baseline__s0"]["head"] == "FCOSHead"
    proc = subprocess.run([sys.executable, "-m", "bench", "plan", "--profile", "paper",
                           "--detectors", "all", "--data-root", str(coco_1333)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for key in ("faster_rcnn__baseline__s0", "faster_rcnn__pconv__s0", "fcos__sepc__s0"):
        assert key in proc.stdout


#: Build each exported config in a fresh interpreter from its file alone; say which project
#: modules were imported (none but sepc may be).
_BUILD = """
import json, sys
import mmdet, sepc
from mmengine.config import Config
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
register_all_modules()
built = {}
for path in sys.argv[1:]:
    model = MODELS.build(Config.fromfile(path).model)
    neck = model.neck[-1] if hasattr(model.neck, '__getitem__') else model.neck
    parts = [type(model).__name__, type(neck).__name__]
    for name in ('bbox_head', 'rpn_head', 'roi_head'):
        if getattr(model, name, None) is not None:
            parts.append(type(getattr(model, name)).__name__)
    built[path.rsplit('/', 1)[-1]] = parts
project = sorted({m.split('.')[0] for m in sys.modules} & {'bench', 'reports', 'experiments'})
print(json.dumps(dict(built=built, project=project)))
"""


@pytest.mark.parametrize("profile", ["paper", pytest.param("paper-modern",
                                                            marks=pytest.mark.slow)])
def test_exported_configs_build_with_only_mmdet_and_sepc(tmp_path, coco_1333, profile):
    """`bench config --export` of the new rows' SEPC cells: R-50 models that build from their
    files with mmdet and sepc alone."""
    out = tmp_path / "cfgs"
    proc = subprocess.run([sys.executable, "-m", "bench", "config", "--export", str(out),
                           "--profile", profile, "--detectors", "faster_rcnn,fcos",
                           "--variants", "pconv,sepc", "--data-root", str(coco_1333)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    files = sorted(out.glob("*.py"))
    assert [f.stem for f in files] == ["faster_rcnn__pconv__s0", "fcos__pconv__s0",
                                       "fcos__sepc__s0"]
    # this checkout's sepc (an installed one may be another checkout's); nothing else of the
    # project may be imported although it could be
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-c", _BUILD, *map(str, files)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=900, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    res = json.loads(run.stdout.strip().splitlines()[-1])
    assert res["project"] == []
    assert res["built"]["faster_rcnn__pconv__s0.py"] == ["FasterRCNN", "PConvNeck", "RPNHead",
                                                          "StandardRoIHead"]
    assert res["built"]["fcos__sepc__s0.py"] == ["FCOS", "SEPC", "SEPCFCOSHead"]


# -- the guard: a pyramid whose levels are not the heads' (jshilong/SEPC#22) --------------------
def _with_per_detector(monkeypatch, detector: str, delta: dict) -> None:
    """The smoke profile with ``delta`` laid over ``detector``'s config (per_detector)."""
    real = plan_settings._profile_cached

    def edited(name: str):
        p = real(name)
        per = {**p.settings.per_detector, detector: delta}
        return dataclasses.replace(p, settings=dataclasses.replace(p.settings, per_detector=per))

    monkeypatch.setattr(plan_settings, "_profile_cached", edited)


@pytest.mark.parametrize("neck,expect", [
    # jshilong/SEPC#22's config: FPN from C3 with extra convs (P3-P7) under the RPN's 4-64
    (dict(start_level=1, add_extra_convs="on_input"),
     "rpn_head's anchor strides [4, 8, 16, 32, 64] do not match the neck's levels at strides "
     "[8, 16, 32, 64, 128] (FPN start_level=1, num_outs=5 over the backbone's strides "
     "[4, 8, 16, 32])"),
    # a level short: four outputs for five anchor strides
    (dict(num_outs=4),
     "rpn_head's anchor strides [4, 8, 16, 32, 64] do not match the neck's 4 levels at strides "
     "[4, 8, 16, 32]"),
])
def test_a_pyramid_off_the_heads_strides_is_refused_before_anything_runs(
        monkeypatch, capsys, tmp_path, neck, expect):
    _with_per_detector(monkeypatch, "faster_rcnn", dict(model=dict(neck=neck)))
    for command in ("plan", "run"):
        assert main([command, "--profile", "smoke", "--detectors", "faster_rcnn", "--variants",
                     "pconv", "--results", str(tmp_path / "r"), *(["--dry-run"] if command
                                                                  == "run" else [])]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: smoke faster_rcnn/pconv: "), lines
        assert expect in lines[0] and "jshilong/SEPC#22" in lines[0]
    assert not (tmp_path / "r").exists()


def test_the_level_check_reads_every_head_and_neck_generally():
    """One-stage anchors, anchor-free points and RoI strides alike; every cell of the matrix
    in every profile passes."""
    model = _cfg("smoke", "retinanet", "sepc").model
    assert pyramid(model)[:2] == (5, [8, 16, 32, 64, 128])
    shifted = copy.deepcopy(model)
    shifted.bbox_head.anchor_generator.strides = [4, 8, 16, 32, 64]
    with pytest.raises(MatrixError, match=r"x: bbox_head's anchor strides \[4, 8, 16, 32, 64\]"):
        check_levels(shifted, "x")
    fcos = _cfg("smoke", "fcos", "pconv").model
    fcos.neck[1].num_outs = 4
    with pytest.raises(MatrixError, match=r"bbox_head's strides \[8, 16, 32, 64, 128\] do not "
                                          "match the neck's 4 levels"):
        check_levels(fcos, "x")
    faster = _cfg("smoke", "faster_rcnn", "baseline").model
    faster.roi_head.bbox_roi_extractor.featmap_strides = [8, 16, 32, 64]
    with pytest.raises(MatrixError, match=r"roi_head's RoI featmap_strides \[8, 16, 32, 64\]"):
        check_levels(faster, "x")
    for profile in ("smoke", "paper", "paper-modern"):
        for cell in cells(profile, list(DETECTORS), list(VARIANTS)):
            check_levels(build_config(cell, Options(), data=False).model, cell.key)


def test_every_model_key_of_a_profile_is_a_part_some_detector_has():
    """A profile's model delta sizes the parts a detector has and skips the others (Faster
    R-CNN has no bbox_head): a key no detector has would be a misspelling skipped everywhere."""
    from mmengine.config import Config

    bases = [Config.fromfile(str(plan_settings.load_profile("paper").base(d))).model
             for d in DETECTORS]
    for name in plan_settings.profiles():
        for key in plan_settings.load_profile(name).delta.get("model", {}):
            assert any(key in m for m in bases), (name, key)


# -- end to end ------------------------------------------------------------------------------
@pytest.mark.slow
def test_both_rows_train_evaluate_and_appear_in_the_table_and_report(tmp_path):
    """`bench table --detectors faster_rcnn,fcos --run-missing` at a few iterations: every cell
    of both rows trains, evaluates (COCO AP, TIDE), is timed, and reads in the table and the
    report; Faster R-CNN's inapplicable variants read n/a."""
    results = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "bench", "table", "--profile", "smoke",
                           "--detectors", "faster_rcnn,fcos", "--variants", "baseline,pconv,sepc",
                           "--run-missing", "--max-iters", "6", "--jobs", "1", "--results",
                           str(results)], cwd=REPO, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    keys = ["faster_rcnn__baseline__s0", "faster_rcnn__pconv__s0", "fcos__baseline__s0",
            "fcos__pconv__s0", "fcos__sepc__s0"]
    for key in keys:
        row = json.loads((results / key / "result.json").read_text())
        assert row["status"] == "done", (key, row.get("error"))
        for col in ("AP", "AP50", "latency_ms", "params", "tide_Miss"):
            assert row[col] is not None, (key, col)
    text = proc.stdout
    assert "Faster R-CNN  ours" in text and "FCOS          ours" in text
    line = next(x for x in text.splitlines() if x.startswith("Faster R-CNN  ours"))
    assert line.split()[-3:] == ["n/a", "n/a", "n/a"]
    page = (results / "report" / "report.html").read_text(encoding="utf-8")
    assert 'data-detector="faster_rcnn" data-row="ours"' in page
    assert 'data-detector="fcos" data-row="ours"' in page
