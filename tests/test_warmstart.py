"""The smoke warm start (bench/plan/warmstart.py, bench/run/pretrain.py): what it trains on,
what cells load from it, and the cache's behaviour: reused when intact, rebuilt when partial or
corrupt, built once by concurrent users. Built here with a few iterations in a private cache
folder ($SEPC_BENCH_CACHE)."""
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.plan import warmstart
from bench.plan.cells import DETECTORS, VARIANTS, Cell
from bench.plan.options import Options
from bench.plan.resolve import resolve
from bench.plan.weights import PretrainedError
from bench.run import pretrain

REPO = Path(__file__).resolve().parent.parent
ITERS = 3


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    """The smoke profile's warm start at ITERS iterations, in a cache folder of the test's own."""
    real = warmstart.settings
    monkeypatch.setattr(warmstart, "settings",
                        lambda name: dataclasses.replace(real(name), iters=ITERS))
    monkeypatch.setenv(warmstart.CACHE_ENV, str(tmp_path / "cache"))
    warmstart.recipe.cache_clear()
    yield warmstart.key("smoke")
    warmstart.recipe.cache_clear()


def test_trains_on_the_training_split_only():
    cfg = warmstart.training_config("smoke", iters=5)
    assert cfg.train_dataloader.dataset.ann_file.endswith("instances_train2017.json")
    for name in ("val_dataloader", "val_cfg", "val_evaluator", "test_dataloader", "test_cfg",
                 "test_evaluator"):
        assert cfg[name] is None, name
    assert cfg.train_cfg.max_iters == 5 and "val_interval" not in cfg.train_cfg
    assert cfg.model.backbone.init_cfg is None and "init_cfg" not in cfg.model.neck
    assert "val2017" not in json.dumps(cfg.to_dict(), default=str)


def test_every_cell_starts_from_the_same_backbone_and_fpn():
    """Every cell's backbone, and the FPN of every cell whose FPN builds the warm start's levels
    (all but Faster R-CNN's P2-P6, which starts from its initialiser)."""
    uri = warmstart.uri("smoke")
    assert uri == f"synthetic://{warmstart.key('smoke')}" and len(uri) == len("synthetic://") + 16
    for det in DETECTORS:
        for var in (v for v in VARIANTS if DETECTORS[det].takes(v)):
            cfg = resolve(Cell("smoke", det, var))
            fpn = cfg.model.neck[0] if isinstance(cfg.model.neck, list) else cfg.model.neck
            assert fpn["type"] == "FPN"
            assert cfg.model.backbone.init_cfg == dict(type="Pretrained", checkpoint=uri,
                                                       prefix="backbone.")
            if det == "faster_rcnn":
                assert "init_cfg" not in fpn
                continue
            assert fpn["init_cfg"] == dict(type="Pretrained", checkpoint=uri, prefix="neck.")
            assert "init_cfg" not in cfg.model.bbox_head  # heads: their own initialisers
    none = resolve(Cell("smoke", "retinanet", "sepc"), Options(pretrained="none"))
    assert none.model.backbone.init_cfg is None and "init_cfg" not in none.model.neck[0]


def test_key_covers_knobs_code_and_config(monkeypatch, tmp_path):
    from bench.plan.settings import load_profile

    k, blob = warmstart.recipe("smoke", None)
    recipe = json.loads(blob)
    assert recipe["data"] == load_profile("smoke").settings.data  # the generator's knobs
    assert len(recipe["versions"]) == 3
    assert str(REPO) not in blob  # the same key in every clone of the repository
    assert warmstart.key("smoke", iters=7) != k  # the schedule moves it

    def key_now() -> str:
        warmstart.recipe.cache_clear()
        try:
            return warmstart.key("smoke")
        finally:
            warmstart.recipe.cache_clear()

    # a warm-start setting moves it (a model delta the cells never see; one that changes the
    # config: the smoke FPN already has num_outs 5)
    real = warmstart.settings
    monkeypatch.setattr(warmstart, "settings", lambda name: dataclasses.replace(
        real(name), model={**real(name).model, "neck": {"out_channels": 16}}))
    assert key_now() != k
    monkeypatch.setattr(warmstart, "settings", real)
    assert key_now() == k
    # and so does the code that trains it: the same files elsewhere give the same key, one
    # changed byte another
    for rel in warmstart.CODE:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes((REPO / rel).read_bytes())
    monkeypatch.setattr(warmstart, "REPO", tmp_path)
    assert key_now() == k
    code = tmp_path / warmstart.CODE[0]
    code.write_bytes(code.read_bytes() + b"\n# trains otherwise\n")
    assert key_now() != k


def test_profile_without_a_warm_start_is_a_clear_error():
    with pytest.raises(PretrainedError, match="defines no warm start"):
        warmstart.key("paper")


def test_build_reuse_load_and_corruption(tiny):
    messages = []
    path = pretrain.ensure("smoke", echo=messages.append)
    assert len(messages) == 2 and "building" in messages[0], messages
    weights, meta = warmstart.paths(tiny)
    assert path == weights and warmstart.check_entry(tiny) is None
    info = json.loads(meta.read_text())
    assert info["iters"] == ITERS and info["sha256"] and info["recipe"]["data"]["n_train"] == 400
    state = torch.load(weights, weights_only=True)["state_dict"]
    assert state and all(k.startswith(("backbone.", "neck.")) for k in state)
    # the build's logger stays mmengine's current one; its log file went with its work folder,
    # so no handler of it may be left for a later init_weights to write into
    import logging

    from mmengine.logging import MMLogger

    assert not [h for h in MMLogger.get_current_instance().handlers
                if isinstance(h, logging.FileHandler)]

    # intact: reused, nothing trained
    messages.clear()
    assert pretrain.ensure("smoke", echo=messages.append) == weights and not messages

    # a cell's model loads exactly the entry's backbone and FPN, whatever its variant
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    register_all_modules()
    model = MODELS.build(resolve(Cell("smoke", "fsaf", "sepc")).model)
    model.init_weights()
    own = model.state_dict()
    for k, v in state.items():
        mine = own[k.replace("neck.", "neck.0.", 1) if k.startswith("neck.") else k]
        assert torch.equal(mine, v), k

    # corrupt weights, or weights without their metadata (a build killed before its commit):
    # refused by the loader, and rebuilt by the next ensure
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert "sha256" in warmstart.check_entry(tiny)
    with pytest.raises(PretrainedError, match="not usable"):
        pretrain.load_entry(warmstart.uri("smoke"))
    meta.unlink()
    assert "interrupted" in warmstart.check_entry(tiny)
    with pytest.raises(PretrainedError, match="not usable"):
        pretrain.load_entry(warmstart.uri("smoke"))
    messages.clear()
    pretrain.ensure("smoke", echo=messages.append)
    assert "interrupted" in messages[0] and warmstart.check_entry(tiny) is None


@pytest.mark.slow
def test_concurrent_users_build_it_once(tmp_path):
    """Two processes asking at once (a local sweep's two cells, SLURM array tasks on one node):
    one builds under the lock, the other waits and uses the same entry."""
    code = ("import dataclasses; from bench.plan import warmstart as w; "
            f"w.settings = (lambda real: lambda n: dataclasses.replace(real(n), iters={ITERS}))"
            "(w.settings); from bench.run.pretrain import ensure; "
            "print(ensure('smoke', threads=1), flush=True)")
    env = dict(os.environ, **{warmstart.CACHE_ENV: str(tmp_path)}, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert sum("building the smoke warm start" in o for o in outs) == 1, outs
    paths = {o.strip().splitlines()[-1] for o in outs}
    assert len(paths) == 1 and Path(paths.pop()).is_file()
    assert len(list(tmp_path.glob("pretrained/*.pth"))) == 1
