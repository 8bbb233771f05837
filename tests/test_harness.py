"""The matrix, config resolution, the result store and bad input (no training here)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cellstore import CellStore
from bench.plan.cells import (
    DETECTORS,
    VARIANTS,
    Cell,
    MatrixError,
    baseline_seed_list,
    cells,
    parse_list,
    parse_seeds,
)
from bench.plan.config import config_hash
from bench.plan.options import Options
from bench.plan.resolve import resolve
from bench.plan.settings import load_profile

REPO = Path(__file__).resolve().parent.parent


def bench_cli(*args, check=False):
    proc = subprocess.run([sys.executable, "-m", "bench", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory):
    """A tiny COCO 2017 layout with real-COCO quirks (ids with gaps, crowd, grayscale...)."""
    import shutil

    from fixtures.coco_quirks import write_quirks_dataset

    root = write_quirks_dataset(tmp_path_factory.mktemp("coco")).root
    shutil.copytree(root / "val2017", root / "train2017")  # the same images serve as train split
    shutil.copy(root / "annotations/instances_val2017.json",
                root / "annotations/instances_train2017.json")
    return root


PAPER_DETECTORS = ["retinanet", "freeanchor", "fsaf"]
PAPER_VARIANTS = ["baseline", "pconv", "ibn", "sepc_lite", "sepc"]


def test_matrix_is_15_cells_in_table_order():
    cs = cells("smoke")
    assert len(cs) == 15
    assert [c.detector for c in cs[:5]] == ["retinanet"] * 5
    assert [c.variant for c in cs[:5]] == PAPER_VARIANTS
    assert len({c.key for c in cells("smoke", seeds=[0, 1, 2])}) == 45


def test_default_selection_is_the_papers_table_and_all_adds_the_rest():
    """No --detectors/--variants: the paper's 3 x 5; ATSS and SEPC without iBN only when named
    or with 'all' (the ``paper`` flag of the matrix entries, ``extra_variants`` of a row)."""
    assert parse_list(None, DETECTORS, "detector") == PAPER_DETECTORS
    assert parse_list(" ", VARIANTS, "variant") == PAPER_VARIANTS
    assert parse_list("all", DETECTORS, "detector") == [*PAPER_DETECTORS, "atss", "faster_rcnn",
                                                        "fcos"]
    assert parse_list("all", VARIANTS, "variant") == [*PAPER_VARIANTS, "sepc_noibn"]
    # a detector's row is the paper's columns plus its own extras: ATSS's published SEPC figure
    # is without iBN, so `--detectors atss` runs that variant too
    assert [c.key for c in cells("smoke", ["atss"])] == [
        f"atss__{v}__s0" for v in [*PAPER_VARIANTS, "sepc_noibn"]
    ]
    assert [c.variant for c in cells("smoke", ["fsaf", "atss"])].count("sepc_noibn") == 1
    assert [c.key for c in cells("smoke", ["atss"], ["sepc"])] == ["atss__sepc__s0"]
    every = cells("smoke", parse_list("all", DETECTORS, "detector"),
                  parse_list("all", VARIANTS, "variant"))
    # Faster R-CNN takes the baseline and PConv only (Detector.variants)
    assert len(every) == 24 + 2 + 6 and every[-1].key == "fcos__sepc_noibn__s0"
    assert [c.variant for c in every if c.detector == "faster_rcnn"] == ["baseline", "pconv"]
    rows = json.loads(bench_cli("plan", "--detectors", "atss", "--variants", "baseline,sepc_noibn",
                                "--baseline-seeds", "1", "--json", check=True).stdout)
    assert [(r["cell"], r["head"]) for r in rows] == [("atss__baseline__s0", "ATSSHead"),
                                                      ("atss__sepc_noibn__s0", "SEPCATSSHead")]
    # the smoke profile's baselines train two seeds (their stock heads are the noisiest cells)
    smoke = json.loads(bench_cli("plan", "--json", check=True).stdout)
    assert len(smoke) == 18 and [r["cell"] for r in smoke[:2]] == [
        "retinanet__baseline__s0", "retinanet__baseline__s1"]
    assert len(json.loads(bench_cli("plan", "--json", "--baseline-seeds", "1",
                                    check=True).stdout)) == 15
    assert "default: retinanet, freeanchor, fsaf)" in " ".join(
        bench_cli("plan", "--help", check=True).stdout.split())


def test_baselines_train_their_extra_seeds_after_the_ones_named():
    assert baseline_seed_list([0], 2) == [0, 1] and baseline_seed_list([1], 2) == [1, 2]
    assert baseline_seed_list([0, 7], 2) == [0, 7, 8, 9] and baseline_seed_list([3], 1) == [3]
    cs = cells("smoke", ["fsaf"], ["baseline", "sepc"], [0, 1], baseline_seeds=3)
    assert [c.key for c in cs] == [f"fsaf__baseline__s{s}" for s in range(6)] + [
        "fsaf__sepc__s0", "fsaf__sepc__s1"]
    with pytest.raises(MatrixError, match="must be >= 1"):
        baseline_seed_list([0], 0)
    # a 0 on the command line is refused in one line, not read as "the profile's default"
    bad = bench_cli("plan", "--baseline-seeds", "0")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1] == (
        "error: baseline seeds per seed must be >= 1, not 0")


def test_parse_lists_and_seeds():
    assert parse_list("fsaf,retinanet", DETECTORS, "detector") == ["fsaf", "retinanet"]
    assert parse_seeds("3") == [0, 1, 2] and parse_seeds("0,7") == [0, 7]
    for bad in ("0", "x", "1,1"):
        with pytest.raises(MatrixError):
            parse_seeds(bad)
    with pytest.raises(MatrixError, match="unknown detector 'yolo'"):
        parse_list("retinanet,yolo", DETECTORS, "detector")
    with pytest.raises(MatrixError, match="unknown variant"):
        Cell("smoke", "retinanet", "sepc_heavy")


def test_paper_configs_carry_the_published_recipe(coco_root):
    for det, clip in (("retinanet", 35), ("freeanchor", 35), ("fsaf", 10)):
        for var in VARIANTS:
            cfg = resolve(Cell("paper", det, var), Options(data_root=str(coco_root)))
            assert cfg.optim_wrapper.optimizer.type == "SGD"
            assert cfg.optim_wrapper.optimizer.lr == 0.01
            assert cfg.optim_wrapper.optimizer.momentum == 0.9
            assert cfg.optim_wrapper.optimizer.weight_decay == 1e-4
            assert cfg.optim_wrapper.clip_grad.max_norm == clip
            warm, steps = cfg.param_scheduler
            assert warm.end == 500 and abs(warm.start_factor - 1 / 3) < 1e-9
            assert steps.milestones == [8, 11] and cfg.train_cfg.max_epochs == 12
            assert cfg.model.backbone.depth == 50 and cfg.model.backbone.frozen_stages == 1
            assert cfg.model.backbone.norm_eval is True
            assert cfg.model.backbone.init_cfg.checkpoint == "torchvision://resnet50"
            assert cfg.train_dataloader.batch_size == VARIANTS[var].imgs_per_gpu
            assert cfg.model.bbox_head.num_classes == 3  # from the annotation file
            if var != "baseline":
                assert cfg.model.neck[1].lcconv_padding == 0  # faithful by default
    cfg = resolve(Cell("paper", "retinanet", "baseline"), Options(data_root=str(coco_root)))
    assert cfg.model.bbox_head.loss_bbox == dict(type="SmoothL1Loss", beta=0.11, loss_weight=1.0)
    assert cfg.model.bbox_head.anchor_generator.octave_base_scale == 4
    fa = resolve(Cell("paper", "freeanchor", "sepc"), Options(data_root=str(coco_root)))
    assert list(fa.model.bbox_head.bbox_coder.target_stds) == [0.1, 0.1, 0.2, 0.2]
    assert fa.model.bbox_head.loss_bbox.loss_weight == 0.75


def test_variant_switches_in_configs(coco_root):
    o = Options(data_root=str(coco_root))
    neck = resolve(Cell("paper", "fsaf", "sepc_lite"), o).model.neck
    assert neck[0].type == "FPN" and neck[1].type == "SEPC"
    assert (neck[1].iBN, neck[1].pconv_deform, neck[1].lcconv_deform) == (True, False, True)
    assert resolve(Cell("paper", "fsaf", "baseline"), o).model.neck.type == "FPN"
    assert resolve(Cell("paper", "fsaf", "sepc"), o).model.bbox_head.type == "SEPCFSAFHead"
    fixed = resolve(Cell("paper", "fsaf", "sepc"), Options(data_root=str(coco_root),
                                                           lcconv_padding=1))
    assert fixed.model.neck[1].lcconv_padding == 1


def test_config_hash_is_stable_and_sensitive(coco_root):
    o = Options(data_root=str(coco_root))
    a = config_hash(resolve(Cell("paper", "retinanet", "ibn"), o, work_dir="/x"))
    b = config_hash(resolve(Cell("paper", "retinanet", "ibn"), o, work_dir="/y"))
    c = config_hash(resolve(Cell("paper", "retinanet", "ibn", seed=1), o))
    d = config_hash(resolve(Cell("paper", "retinanet", "ibn"), Options(data_root=str(coco_root),
                                                                      lcconv_padding=1)))
    assert a == b and len({a, c, d}) == 3


def test_plan_paper_json_lists_15_cells(coco_root):
    proc = bench_cli("plan", "--profile", "paper", "--data-root", str(coco_root), "--json",
                     check=True)
    rows = json.loads(proc.stdout)
    assert len(rows) == 15
    by = {(r["detector"], r["variant"]): r for r in rows}
    assert by[("retinanet", "baseline")]["gpus"] == 8
    assert by[("retinanet", "baseline")]["imgs_per_gpu"] == 2
    assert by[("fsaf", "sepc")]["gpus"] == 4 and by[("fsaf", "sepc")]["imgs_per_gpu"] == 4
    assert all(r["lr"] == 0.01 and r["max_epochs"] == 12 for r in rows)
    assert by[("fsaf", "pconv")]["clip_grad"] == 10
    assert len({r["config_hash"] for r in rows}) == 15


@pytest.mark.parametrize("args,message", [
    (["--profile", "nope"], "unknown profile 'nope'"),
    (["--detectors", "yolo"], "unknown detector 'yolo'"),
    (["--variants", "sepc,big"], "unknown variant 'big'"),
    (["--seeds", "two"], "--seeds 'two'"),
    (["--profile", "paper"], "needs --data-root"),
    (["--data-root", "/nonexistent/coco"], "data root does not exist: /nonexistent/coco"),
    (["--pretrained", "/nonexistent/r50.pth"], "pretrained checkpoint not found"),
])
def test_bad_input_is_one_clear_line(args, message, tmp_path):
    proc = bench_cli("run", "--results", str(tmp_path / "r"), *args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not (tmp_path / "r").exists()  # nothing queued, nothing written


def test_a_store_trained_another_way_is_refused_before_anything_runs(tmp_path, capsys):
    """A done cell is skipped as done: asked for under another --max-iters (or batch, or lr),
    its old training would be tabulated as this request's."""
    from bench.cli import main

    results = tmp_path / "r"
    iters = load_profile("smoke").settings.max_iters  # the profile's own recipe
    CellStore(results, Cell("smoke", "retinanet", "baseline")).write(
        status="done", train_iters=iters, total_batch=4, lr=0.002)
    sel = ["--profile", "smoke", "--detectors", "retinanet", "--variants", "baseline",
           "--pretrained", "none", "--results", str(results)]
    assert main(["run", *sel, "--dry-run"]) == 0
    assert "skip retinanet__baseline__s0: done" in capsys.readouterr().out
    for verb, extra in (("run", ["--dry-run"]), ("run", []), ("table", ["--run-missing"])):
        assert main([verb, *sel, "--max-iters", "300", *extra]) == 2, (verb, extra)
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), lines
        assert f"retinanet__baseline__s0 ({iters} iterations, not 300)" in lines[0], lines
    assert [p.name for p in (results / "retinanet__baseline__s0").iterdir()] == ["result.json"]
    assert main(["run", *sel, "--max-iters", "300", "--dry-run", "--force"]) == 0
    assert "would run retinanet__baseline__s0" in capsys.readouterr().out


def test_bad_data_roots(tmp_path, coco_root):
    import shutil

    from bench.data.coco import DataError, open_coco_root

    root = tmp_path / "coco"
    shutil.copytree(coco_root, root)
    (root / "annotations/instances_val2017.json").write_text('{"images": [], "annot')
    open_coco_root.cache_clear()
    with pytest.raises(DataError, match="malformed annotation file .*instances_val2017.json"):
        open_coco_root(root)
    (root / "annotations/instances_val2017.json").write_text('{"images": []}')
    with pytest.raises(DataError, match="no annotations, categories key"):
        open_coco_root(root)
    (root / "annotations/instances_val2017.json").unlink()
    with pytest.raises(DataError, match="annotation file missing"):
        open_coco_root(root)
    shutil.rmtree(root / "val2017")
    with pytest.raises(DataError, match="lacks the image folder val2017/"):
        open_coco_root(root)


def test_store_writes_atomically_and_merges(tmp_path, monkeypatch):
    store = CellStore(tmp_path, Cell("smoke", "fsaf", "ibn", 2))
    store.write(status="running")
    store.write(status="done", AP=31.5)
    row = json.loads(store.result_path.read_text())
    assert row["status"] == "done" and row["AP"] == 31.5 and row["variant"] == "ibn"
    assert row["cell_key"] == "fsaf__ibn__s2" and row["seed"] == 2
    # A write that fails half-way (its bytes in the temp file, not yet on disk) leaves the
    # previous complete file and no temp file behind.
    import reports.schema

    written = []

    def disk_full(fd: int) -> None:
        written.append(os.fstat(fd).st_size)
        raise OSError("disk full")

    monkeypatch.setattr(reports.schema.os, "fsync", disk_full)
    with pytest.raises(OSError, match="disk full"):
        store.write(status="done", AP=99.0)
    monkeypatch.undo()
    assert written and written[0] > 0  # it failed inside the write, after the data went out
    assert json.loads(store.result_path.read_text())["AP"] == 31.5
    assert [p.name for p in store.dir.iterdir()] == ["result.json"]


def test_load_returns_one_row_per_cell(tmp_path):
    from bench import load

    for i, var in enumerate(["baseline", "pconv"]):
        CellStore(tmp_path, Cell("smoke", "retinanet", var)).write(status="done", AP=30.0 + i,
                                                                   params=123 + i)
    df = load(tmp_path)
    assert len(df) == 2
    assert df["variant"].tolist() == ["baseline", "pconv"]  # the table's order
    assert df["AP"].tolist() == [30.0, 31.0] and df["params"].tolist() == [123, 124]
    assert (df["profile"] == "smoke").all() and (df["status"] == "done").all()
    assert df["cell_key"].tolist() == ["retinanet__baseline__s0", "retinanet__pconv__s0"]
    assert df["AP50"].isna().all()  # never written: missing, not 0


def test_profile_settings_are_parsed_once_with_every_default_and_no_unknown_key():
    """A profile's bench=dict is a frozen Settings: one place holds each default, a misspelt
    key (at any depth) is one line naming it, never a silent fall-back to a default."""
    import dataclasses

    from bench.plan.settings import Settings, parse_settings

    s = parse_settings({"threads": 1, "latency": {"iters": 7}, "pilot": {"latency": {"iters": 2}}},
                       "profile 'x'")
    assert s.threads == 1 and s.latency.iters == 7 and s.latency.warmup == 20
    assert s.pilot.latency.iters == 2 and s.pilot.latency.warmup == 20  # over the profile's
    assert s.total_batch == Settings().total_batch == 16 and s.slurm.time_min == 60
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.threads = 2
    for raw, where in (({"treads": 1}, "profile 'x': unknown setting 'treads'"),
                       ({"latency": {"iter": 1}}, "profile 'x' latency: unknown setting 'iter'"),
                       ({"slurm": {"time": 1}}, "profile 'x' slurm: unknown setting 'time'"),
                       ({"pilot": {"slurm": {"qoss": 1}}}, "profile 'x' pilot slurm: unknown"),
                       ({"warmstart": {"detector": "retinanet", "variant": "baseline",
                                       "iters": 1, "seeds": 2}},
                        "profile 'x' warmstart: unknown setting 'seeds'")):
        with pytest.raises(MatrixError, match=where.replace("(", r"\(")) as err:
            parse_settings(raw, "profile 'x'")
        assert len(str(err.value).splitlines()) == 1
    # every profile parses, its released cells' settings too
    for name in ("smoke", "paper", "paper-modern"):
        settings = load_profile(name).settings
        assert isinstance(settings, Settings)
    assert load_profile("smoke").settings.threads == 1
