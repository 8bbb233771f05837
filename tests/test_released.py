"""Released checkpoints: manifest, exact conversion and evaluation through the harness.

No original checkpoint can be downloaded here, so the tests write their own: a smoke-size model
of each of the 15 cells, randomly initialised (offset convs and BN statistics included, so every
tensor matters), saved under mmdet-1.x names in the mmdet-1.x file layout. The validation split is
the COCO-quirks set (category ids with gaps, a crowd region, an image without boxes; no train
split: evaluation needs none) whose ground truth is rewritten from the source models' own top
detections, so that AP is far from 0.
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import sepc  # noqa: F401
from bench.cli import main as bench_main
from bench.plan import plan_cell
from bench.plan.cells import DETECTORS, VARIANTS, Cell, cells
from bench.plan.manifest import ManifestError, load_manifest, released_cells
from bench.plan.options import Options
from bench.plan.resolve import resolve
from bench.run.released import load_released
from reports.schema import METRICS
from sepc.checkpoint import (
    CheckpointConversionError,
    read_mmdet1_checkpoint,
)

REPO = Path(__file__).resolve().parent.parent
CELLS = [(c.detector, c.variant) for c in cells("paper")]  # the table the authors released


def _cfg(root: Path, det: str, var: str):
    return resolve(Cell("smoke", det, var, source="released"), Options(data_root=str(root)))


def _build(cfg, seed: int):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    register_all_modules()
    torch.manual_seed(seed)
    return MODELS.build(cfg.model).eval()


def _source_model(cfg, seed: int):
    """Random weights where every tensor matters: non-zero offset convs (the deformable layers
    move their taps), BN statistics away from 0/1, classification biases giving detections."""
    from torch.nn.modules.batchnorm import _BatchNorm

    model = _build(cfg, seed)
    model.init_weights()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(torch.randn_like(p) * (0.05 if "conv_offset" in name else 0.01))
        model.bbox_head.retina_cls.bias.add_(4.0)  # scores ~0.4, above the 0.05 threshold
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model


def _dataset(cfg):
    from mmdet.registry import DATASETS

    return DATASETS.build(cfg.val_dataloader.dataset)


def _run(model, dataset, n: int | None = None):
    """Raw head outputs and predictions of each validation image, batch 1 as the harness, from
    one forward each (the detector's own predict, with its head outputs kept)."""
    from mmengine.dataset import pseudo_collate

    raw, preds = [], []
    with torch.no_grad():
        for i in range(len(dataset) if n is None else n):
            data = model.data_preprocessor(pseudo_collate([dataset[i]]), False)
            outs = model._forward(data["inputs"])
            metas = [s.metainfo for s in data["data_samples"]]
            results = model.bbox_head.predict_by_feat(*outs, batch_img_metas=metas, rescale=True)
            raw.append(outs)
            preds += model.add_pred_to_datasample(data["data_samples"], results)
    return raw, preds


def _flat(raw) -> list[torch.Tensor]:
    return [t for image in raw for level in image for t in level]


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """15 mmdet-1.x checkpoints, a manifest naming them, and a validation split whose ground
    truth is the union of each source model's two best boxes per image."""
    from fixtures.coco_quirks import write_quirks_dataset
    from fixtures.mmdet1_layout import authors_state_dict, save_authors_checkpoint

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what a smoke job uses: identical arithmetic on both sides
    base = tmp_path_factory.mktemp("released")
    q = write_quirks_dataset(base / "coco")
    root = q.root
    ckpts = base / "checkpoints"
    ckpts.mkdir()
    manifest, cfgs, raws, preds = {}, {}, {}, {}
    dataset = None
    for i, (det, var) in enumerate(CELLS):
        cfg = cfgs[(det, var)] = _cfg(root, det, var)
        model = _source_model(cfg, seed=100 + i)
        dataset = dataset or _dataset(cfg)  # the same split and pipeline for every cell
        name = f"{det}-{var}.pth"
        # laid out as the authors' modules name it (fixtures.mmdet1_layout), every other file
        # with DataParallel's "module." prefix: the conversion's renaming rules are exercised
        state = authors_state_dict(model, cfg, prefix="module." if i % 2 else "")
        save_authors_checkpoint(state, ckpts / name, classes=q.classes)
        manifest.setdefault(det, {})[var] = name
        raws[(det, var)], preds[(det, var)] = _run(model, dataset)
    (ckpts / "released.toml").write_text(
        "".join(
            f"[{d}]\n" + "".join(f'{v} = "{n}"\n' for v, n in vs.items())
            for d, vs in manifest.items()
        )
    )

    ann = json.loads(q.ann_file.read_text())
    anns = [a for a in ann["annotations"] if a["iscrowd"]]
    for cell_preds in preds.values():
        for sample in cell_preds:
            if sample.img_id == q.empty_image_id:
                continue
            inst = sample.pred_instances
            for j in inst.scores.argsort(descending=True)[:2].tolist():
                x1, y1, x2, y2 = inst.bboxes[j].tolist()
                w, h = x2 - x1 + 1, y2 - y1 + 1  # mmdet 1.x's box size, as LegacyCocoMetric writes
                anns.append(dict(id=len(anns) + 1000, image_id=sample.img_id, iscrowd=0,
                                 category_id=q.cat_ids[int(inst.labels[j])],
                                 bbox=[x1, y1, w, h], area=w * h))
    ann["annotations"] = anns
    q.ann_file.write_text(json.dumps(ann))
    yield dict(root=root, ckpts=ckpts, cfgs=cfgs, dataset=dataset, raws=raws, preds=preds)
    torch.set_num_threads(threads)


def _source_metrics(cfg, preds) -> dict[str, float]:
    """The source model evaluated directly: its predictions through the cell's own metric."""
    from mmengine.evaluator import Evaluator

    from reports.schema import COCO_METRIC_ITEMS as AP_KEYS

    dataset = _dataset(cfg)
    evaluator = Evaluator(cfg.val_evaluator)
    evaluator.dataset_meta = dataset.metainfo
    evaluator.process(data_samples=preds)
    metrics = evaluator.evaluate(len(dataset))
    return {AP_KEYS[k.split("bbox_", 1)[1]]: round(100 * float(v), 3) for k, v in metrics.items()
            if k.split("bbox_", 1)[-1] in AP_KEYS}


# -- conversion: outputs of the converted model == outputs of the source ---------------------
def test_every_cell_converts_to_identical_outputs(released):
    """All 15 cells: the mmdet-1.x file loaded through the released path (variant check, exact
    key mapping, strict load) into a differently initialised model reproduces the source model's
    raw head outputs and its detections bit for bit; the offsets do move the deformable taps."""
    from fixtures.mmdet1_layout import layout

    ckpts, dataset = released["ckpts"], released["dataset"]
    for i, (det, var) in enumerate(CELLS):
        path = ckpts / f"{det}-{var}.pth"
        state = read_mmdet1_checkpoint(path)
        # the file holds the authors' layout (tests/fixtures/mmdet1_layout.py), prefixed or not
        cfg = released["cfgs"][(det, var)]
        assert {k.removeprefix("module.") for k in state} == set(layout(cfg))
        model = _build(cfg, seed=i)
        load_released(model, state, var, path)
        raw, preds = _run(model, dataset)
        src_raw = _flat(released["raws"][(det, var)])
        assert all(torch.equal(a, b) for a, b in zip(_flat(raw), src_raw, strict=True))
        for a, b in zip(preds, released["preds"][(det, var)], strict=True):
            for key in ("bboxes", "scores", "labels"):
                assert torch.equal(a.pred_instances[key], b.pred_instances[key]), (det, var, key)
        assert sum(len(p.pred_instances) for p in preds) > 0, (det, var)
        if VARIANTS[var].pconv_deform or VARIANTS[var].lcconv_deform:
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if "conv_offset" in name:
                        p.zero_()
            plain = _flat(_run(model, dataset, n=1)[0])
            assert not all(torch.equal(a, b) for a, b in zip(plain, src_raw)), (det, var)


def test_source_models_score_well_above_zero(released):
    """The AP comparison is not 0 == 0: each source model finds its share of the ground truth."""
    metrics = _source_metrics(
        released["cfgs"][("fsaf", "sepc")], released["preds"][("fsaf", "sepc")]
    )
    assert metrics["AP"] > 1.0 and metrics["AR100"] > 1.0, metrics


def test_released_cell_job_gives_the_source_models_ap(released, tmp_path, monkeypatch):
    """One released cell's job, in this process: converted, evaluated, timed, its row written
    (all 15 through `bench run` as separate jobs: the slow test below)."""
    from bench.cellstore import CellStore
    from bench.run.job import CellJob

    monkeypatch.setenv("SEPC_CELL_DIR", "")
    opts = Options(data_root=str(released["root"]), checkpoints=str(released["ckpts"]))
    cell = Cell("smoke", "freeanchor", "sepc", source="released")
    row = CellJob(tmp_path / "res")(plan_cell(cell, opts))
    assert row == CellStore(tmp_path / "res", cell).read() and row["status"] == "done"
    want = _source_metrics(released["cfgs"][("freeanchor", "sepc")],
                           released["preds"][("freeanchor", "sepc")])
    assert {m: row[m] for m in METRICS} == want and want["AP"] > 1.0
    assert row["source"] == "released" and row["lcconv_padding"] == 0
    assert row["data_root"] == str(released["root"]) and row.get("train_iters") is None
    assert row["latency_ms"] > 0 and row["flops"] > 0


@pytest.mark.slow
def test_released_sweep_gives_the_source_models_ap(released, tmp_path):
    """`python -m bench run --from-checkpoints DIR` on all 15 cells: each cell is evaluated and
    timed without training, its row is source='released' with the checkpoint's hash, and its
    COCO metrics equal the source model's evaluated directly. A broken checkpoint fails only its
    own cell (the others finish) and --retry-failed reruns it once repaired."""
    root, ckpts, results = released["root"], released["ckpts"], tmp_path / "results"
    good = ckpts / "fsaf-ibn.pth"
    broken = tmp_path / "fsaf-ibn.pth"
    shutil.copy(good, tmp_path / "good.pth")
    state = read_mmdet1_checkpoint(good)
    state["neck.1.extra.weight"] = torch.zeros(1)
    torch.save({"meta": {}, "state_dict": state}, broken)
    shutil.copy(broken, good)
    args = [sys.executable, "-m", "bench", "run", "--profile", "smoke", "--data-root", str(root),
            "--from-checkpoints", str(ckpts), "--results", str(results), "--jobs", "2", "--quiet"]
    try:
        proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=1200)
    finally:
        shutil.copy(tmp_path / "good.pth", good)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "14/15 cells done" in proc.stdout
    row = json.loads((results / "fsaf__ibn__s0__released" / "result.json").read_text())
    assert row["status"] == "failed" and "neck.1.extra.weight" in row["error"], row["error"]

    proc = subprocess.run(args + ["--retry-failed"], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for det, var in CELLS:
        row = json.loads((results / f"{det}__{var}__s0__released" / "result.json").read_text())
        assert row["status"] == "done", (det, var, row.get("error"))
        assert row["source"] == "released" and row["lcconv_padding"] in (None, 0)
        assert row["checkpoint"] == str(ckpts / f"{det}-{var}.pth")
        assert len(row["checkpoint_sha256"]) == 64 and row.get("train_iters") is None
        assert row["latency_ms"] > 0 and row["params"] > 0
        want = _source_metrics(released["cfgs"][(det, var)], released["preds"][(det, var)])
        assert {m: row[m] for m in METRICS} == want, (det, var)
        assert want["AP"] > 0, (det, var)


# -- the mmdet 1.x conventions of the released path -----------------------------------------
def _authors_decode(priors, deltas, max_shape):
    """The release's TBLRCoder.decode (sepc/self_mmdet/core/build_coders.py), written out."""
    out = []
    for (x1, y1, x2, y2), (b, t, l, r) in zip(priors.tolist(), deltas.tolist()):  # noqa: E741
        cx, cy = (x1 + x2 + 1) / 2, (y1 + y2 + 1) / 2
        w, h = x2 - x1 + 1, y2 - y1 + 1
        box = [cx - l * w, cy - t * h, cx + r * w - 1, cy + b * h - 1]
        hi = [max_shape[1] - 1, max_shape[0] - 1] * 2
        out.append([min(max(v, 0), m) for v, m in zip(box, hi)])
    return torch.tensor(out)


def test_legacy_tblr_coder_is_the_releases():
    from sepc.legacy import LegacyCocoMetric, LegacyTBLRBBoxCoder

    g = torch.Generator().manual_seed(0)
    xy = torch.rand(50, 2, generator=g) * 200
    priors = torch.cat([xy, xy + 8 + torch.rand(50, 2, generator=g) * 64], dim=1).round()
    deltas = torch.rand(50, 4, generator=g) * 3
    coder = LegacyTBLRBBoxCoder()
    boxes = coder.decode(priors, deltas, max_shape=(180, 240))
    torch.testing.assert_close(boxes, _authors_decode(priors, deltas, (180, 240)))
    # channel 0 is the bottom distance, not the top one (the release swapped them)
    one = coder.decode(priors[:1], torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    assert one[0, 1] == (priors[0, 1] + priors[0, 3] + 1) / 2  # top edge at the centre
    inside = coder.decode(priors, deltas)
    torch.testing.assert_close(coder.encode(priors, inside), deltas, rtol=1e-5, atol=1e-5)
    assert LegacyCocoMetric.xyxy2xywh(None, torch.tensor([2.0, 3.0, 11.0, 7.0]).numpy()) == \
        [2.0, 3.0, 10.0, 5.0]


def test_released_cells_use_mmdet1_conventions(released, tmp_path):
    from bench.data.coco import DataError
    from bench.plan import plan
    from bench.schedule.slurm import SlurmOptions, slurm_parameters

    opts = Options(data_root=str(released["root"]))
    with pytest.raises(DataError, match="lacks the image folder train2017/"):
        resolve(Cell("paper", "fsaf", "sepc"), opts)  # training needs the train split
    full = tmp_path / "coco"
    shutil.copytree(released["root"], full)
    shutil.copytree(full / "val2017", full / "train2017")
    shutil.copy(full / "annotations/instances_val2017.json",
                full / "annotations/instances_train2017.json")
    full_opts = Options(data_root=str(full))
    # the rows with anchors and a SEPC cell (Faster R-CNN's row has none; FCOS has no anchors)
    anchored = [d for d in DETECTORS if DETECTORS[d].takes("sepc") and d != "fcos"]
    assert {"retinanet", "freeanchor", "fsaf", "atss"} <= set(anchored)
    for det in anchored:
        for profile in ("smoke", "paper"):
            cfg = resolve(Cell(profile, det, "sepc", source="released"), opts)
            head = cfg.model.bbox_head
            assert head.anchor_generator.type == "LegacyAnchorGenerator"
            assert head.anchor_generator.center_offset == 0.5
            assert head.bbox_coder.type == ("LegacyTBLRBBoxCoder" if det == "fsaf"
                                            else "LegacyDeltaXYWHBBoxCoder")
            assert cfg.model.test_cfg.nms.offset == 1 and cfg.model.test_cfg.min_bbox_size == -1
            assert cfg.val_evaluator.type == cfg.test_evaluator.type == "LegacyCocoMetric"
            assert cfg.model.neck[1].lcconv_padding == 0  # the smoke profile's own is 1
            assert cfg.model.backbone.init_cfg is None  # all weights from the checkpoint
        trained = resolve(Cell("paper-modern", det, "sepc"), full_opts)  # mmdet 3.x's own
        assert trained.model.bbox_head.anchor_generator.type == "AnchorGenerator"
        assert trained.val_evaluator.type == "CocoMetric"
    # FreeAnchor keeps its target stds under the legacy coder
    cfg = resolve(Cell("paper", "freeanchor", "ibn", source="released"), opts)
    assert list(cfg.model.bbox_head.bbox_coder.target_stds) == [0.1, 0.1, 0.2, 0.2]
    cell = Cell("paper", "retinanet", "sepc", source="released")
    params = slurm_parameters(plan_cell(cell, opts), SlurmOptions())
    assert params["gpus_per_node"] == 1 and params["timeout_min"] == 120
    assert slurm_parameters(plan_cell(Cell("paper", "retinanet", "sepc"), full_opts),
                            SlurmOptions())["gpus_per_node"] == 4
    assert plan([cell], opts)[0].gpus == 1
    assert plan([Cell("paper", "retinanet", "sepc")], full_opts)[0].gpus == 4


# -- bad input: one-line errors before anything runs ------------------------------------------
def _cli(capsys, *args) -> tuple[int, str, str]:
    rc = bench_main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_names_missing_and_found_checkpoints(released, capsys, tmp_path):
    ckpts = tmp_path / "ckpts"
    ckpts.mkdir()
    shutil.copy(released["ckpts"] / "retinanet-sepc.pth", ckpts / "sepc_retinanet.pth")
    rc, out, err = _cli(capsys, "run", "--profile", "smoke", "--data-root", str(released["root"]),
                        "--from-checkpoints", str(ckpts), "--detectors", "retinanet",
                        "--results", str(tmp_path / "res"), "--dry-run")
    assert rc == 0, err
    assert out.strip() == "would run retinanet__sepc__s0__released"
    assert "no checkpoint for retinanet/baseline: no entry in" in err  # not released
    assert f"no checkpoint for retinanet/pconv: pconv_retinanet.pth is not in {ckpts}" in err


@pytest.mark.parametrize("manifest,message", [
    ("[retinanet\nsepc = 'a.pth'\n", "not valid TOML"),
    ("[retinanet]\nsepc_heavy = 'a.pth'\n", "unknown variant 'sepc_heavy' in [retinanet]"),
    ("[yolo]\nsepc = 'a.pth'\n", "unknown detector [yolo]"),
    ("[retinanet]\nsepc = 3\n", "[retinanet] sepc must be a file name"),
    ("retinanet = 'a.pth'\n", "must be a [retinanet] table"),
    ("# nothing\n", "names no checkpoint"),
])
def test_bad_manifest_is_a_one_line_error(capsys, tmp_path, manifest, message):
    (tmp_path / "released.toml").write_text(manifest)
    rc, out, err = _cli(capsys, "run", "--from-checkpoints", str(tmp_path), "--dry-run")
    assert rc == 2 and message in err and err.startswith("error: manifest "), err
    assert len(err.strip().splitlines()) == 1 and not out


@pytest.mark.parametrize("args,message", [
    (["--from-checkpoints", "/no/such/dir"], "--from-checkpoints /no/such/dir: no such folder"),
    (["--from-checkpoints", "{empty}"], "no checkpoint of manifest"),
    (["--from-checkpoints", "{empty}", "--manifest", "/no/such.toml"], "manifest not found"),
    (["--from-checkpoints", "{empty}", "--seeds", "3"], "--seeds does not apply"),
    (["--from-checkpoints", "{empty}", "--lcconv-padding", "1"], "with the faithful padding 0"),
    (["--manifest", "x.toml"], "--manifest needs --from-checkpoints"),
])
def test_bad_released_options_are_one_line_errors(capsys, tmp_path, args, message):
    args = [a.format(empty=tmp_path) for a in args]
    rc, out, err = _cli(capsys, "run", "--profile", "smoke", *args, "--dry-run")
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_compare_names_released_cells(tmp_path):
    """`bench compare` tells a released cell from the trained one of the same name."""
    from bench.cli import _cell_rows

    for key in ("retinanet__sepc__s0__released", "retinanet__sepc__s0"):
        (tmp_path / key).mkdir()
        (tmp_path / key / "result.json").write_text(json.dumps({"cell_key": key, "status": "done"}))

    def keys(name):
        return [r["cell_key"] for r in _cell_rows(tmp_path, name)]

    assert keys("retinanet/sepc/released") == ["retinanet__sepc__s0__released"]
    assert keys("retinanet/sepc/0/released") == ["retinanet__sepc__s0__released"]
    assert keys("retinanet/sepc") == keys("retinanet/sepc/0") == ["retinanet__sepc__s0"]


def test_manifest_lookup_order(tmp_path):
    from bench.plan.manifest import DEFAULT_MANIFEST, find_manifest

    assert find_manifest(tmp_path).path == DEFAULT_MANIFEST
    default = load_manifest(DEFAULT_MANIFEST)
    assert len(default.files) == 13  # the authors released 13 models
    assert ("retinanet", "baseline") not in default.files and ("fsaf", "baseline") in default.files
    (tmp_path / "released.toml").write_text("[fsaf]\nsepc = 'mine.pth'\n")
    assert find_manifest(tmp_path).files == {("fsaf", "sepc"): "mine.pth"}
    other = tmp_path / "other.toml"
    other.write_text("[fsaf]\nibn = 'x.pth'\n")
    assert find_manifest(tmp_path, other).files == {("fsaf", "ibn"): "x.pth"}
    with pytest.raises(ManifestError, match="no checkpoint of manifest"):
        released_cells("paper", ["fsaf"], ["sepc"], tmp_path)


# -- bad checkpoints: the cell fails, naming the keys -----------------------------------------
def _load(released, det, var, state, name="x.pth"):
    model = _build(released["cfgs"][(det, var)], seed=0)
    load_released(model, state, var, Path(name))


def test_checkpoint_with_extra_or_missing_keys_names_them(released):
    state = read_mmdet1_checkpoint(released["ckpts"] / "retinanet-ibn.pth")
    extra = dict(state, **{"bbox_head.extra_conv.weight": torch.zeros(1)})
    with pytest.raises(CheckpointConversionError,
                       match=r"^x.pth: 1 checkpoint keys map to nothing in the model: "
                             r"bbox_head.extra_conv.weight$"):
        _load(released, "retinanet", "ibn", extra)
    missing = {k: v for k, v in state.items() if k != "neck.0.fpn_convs.2.conv.bias"}
    with pytest.raises(
        CheckpointConversionError,
        match="1 model keys missing from the checkpoint: neck.0.fpn_convs.2.conv.bias",
    ):
        _load(released, "retinanet", "ibn", missing)
    fsaf = read_mmdet1_checkpoint(released["ckpts"] / "fsaf-ibn.pth")
    with pytest.raises(CheckpointConversionError, match=r"shape mismatches: bbox_head.retina_cls"
                                                        r".weight \(3, 32, 3, 3\) vs model \(27,"):
        _load(released, "retinanet", "ibn", fsaf)


@pytest.mark.parametrize("ckpt,cell,message", [
    ("sepc", "ibn", "neck is SEPC's (SEPC neck, iBN, deformable PConvs, deformable cls/loc "
                    "convs), the cell is iBN+PConv (SEPC neck, iBN); keys iBN+PConv has no place "
                    "for: neck.1.Pconvs.0.Pconv.0.conv_offset.bias"),
    ("ibn", "sepc_lite", "SEPC-lite needs what the checkpoint lacks: neck.1.{cconv,lconv}"
                         ".conv_offset.* (deformable cls/loc convs)"),
    ("pconv", "ibn", "iBN+PConv needs what the checkpoint lacks: neck.1.*.bn/cbn/lbn (iBN)"),
    ("sepc_lite", "baseline", "the cell is Baseline (plain FPN); keys Baseline has no place for: "
                              "neck.1.Pconvs.0.Pconv.0.bias"),
])
def test_variant_mismatch_names_the_keys(released, ckpt, cell, message):
    state = read_mmdet1_checkpoint(released["ckpts"] / f"freeanchor-{ckpt}.pth")
    with pytest.raises(CheckpointConversionError) as err:
        _load(released, "freeanchor", cell, state)
    assert message in str(err.value) and str(err.value).startswith("x.pth: the checkpoint's neck")


def test_failed_conversion_fails_its_cell_with_the_message(released, tmp_path, monkeypatch):
    """In the job: the manifest maps a SEPC file to the iBN cell; the cell's row records the
    failure and the keys before any image is read."""
    from bench.cellstore import CellStore
    from bench.run.job import CellJob

    monkeypatch.setenv("SEPC_CELL_DIR", "")
    manifest = tmp_path / "m.toml"
    manifest.write_text("[retinanet]\nibn = 'retinanet-sepc.pth'\n")
    opts = Options(data_root=str(released["root"]), checkpoints=str(released["ckpts"]),
                   manifest=str(manifest))
    cell = Cell("smoke", "retinanet", "ibn", source="released")
    with pytest.raises(CheckpointConversionError):
        CellJob(tmp_path / "res")(plan_cell(cell, opts))
    row = CellStore(tmp_path / "res", cell).read()
    assert row["status"] == "failed" and row["source"] == "released"
    assert row["error"].startswith(
        "CheckpointConversionError: retinanet-sepc.pth: the checkpoint's neck is SEPC's"
    ), row["error"]
    assert "conv_offset" in row["error"] and not (CellStore(tmp_path / "res", cell).dir /
                                                   "detections.bbox.json").exists()


def test_a_checkpoint_laid_out_by_the_authors_code_loads_into_every_released_cell(tmp_path):
    """The AP tests above write their 1.x files from the source models' tensors; here every
    tensor is random and distinct, and the 1.x key layout comes from the authors' mmdetection
    1.1 modules (fixtures.mmdet1_layout:
    ResNet, FPN ConvModules, the list neck neck.0/neck.1, the SEPC neck's own names, RetinaHead's
    retina_cls/retina_reg and stacked convs). Every tensor must load, strictly, to the place the
    authors' name says, in all 15 released cells."""
    from fixtures.coco_quirks import write_quirks_dataset
    from fixtures.mmdet1_layout import random_state_dict

    root = write_quirks_dataset(tmp_path / "coco").root
    for i, (det, var) in enumerate(CELLS):
        cfg = _cfg(root, det, var)
        state = random_state_dict(cfg, seed=i)
        path = tmp_path / f"{det}-{var}.pth"
        torch.save({"meta": {"mmdet_version": "1.1.0", "config": f"{var}_{det}.py"},
                    "state_dict": state}, path)
        model = _build(cfg, seed=0)
        load_released(model, read_mmdet1_checkpoint(path), var, path)
        loaded = model.state_dict()
        assert set(loaded) == set(state), (det, var, sorted(set(loaded) ^ set(state))[:6])
        wrong = [k for k, v in state.items() if not torch.equal(loaded[k], v)]
        assert not wrong, (det, var, wrong[:6])
