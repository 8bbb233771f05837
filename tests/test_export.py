"""`bench config --export`: each cell as a standalone mmdet 3.x config file, which builds with only
mmdet and sepc importable and trains with mmdet's own tools/train.py."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

#: Run in a fresh interpreter: build every exported model from its file alone, and say which
#: project modules were imported (none but sepc may be).
_BUILD = """
import json, sys
import mmdet, sepc
from mmengine.config import Config
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
register_all_modules()
built = {}
for path in sys.argv[1:]:
    cfg = Config.fromfile(path)
    model = MODELS.build(cfg.model)
    built[path.rsplit('/', 1)[-1]] = [type(model).__name__, type(model.bbox_head).__name__]
project = sorted({m.split('.')[0] for m in sys.modules} & {'bench', 'reports', 'experiments'})
print(json.dumps(dict(built=built, project=project)))
"""


def test_paper_cells_export_as_standalone_mmdet_configs(tmp_path, coco_1333):
    out = tmp_path / "cfgs"
    proc = subprocess.run([sys.executable, "-m", "bench", "config", "--export", str(out),
                           "--profile", "paper", "--data-root", str(coco_1333)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    files = sorted(out.glob("*.py"))
    assert len(files) == 15 and sorted(proc.stdout.split()) == sorted(map(str, files))
    from mmengine.config import Config

    cfg = Config.fromfile(str(out / "fsaf__sepc__s0.py"), import_custom_modules=False)
    assert cfg.custom_imports.imports == ["sepc"] and cfg.custom_hooks == []
    body = (out / "fsaf__sepc__s0.py").read_text().split("\n", 5)[-1]
    assert "bench." not in body and "CellProgressHook" not in body  # nothing of the harness
    run = subprocess.run([sys.executable, "-c", _BUILD, *map(str, files)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    res = json.loads(run.stdout.strip().splitlines()[-1])
    assert res["project"] == []  # built from the files with mmdet and sepc alone
    assert res["built"]["fsaf__sepc__s0.py"] == ["FSAF", "SEPCFSAFHead"]
    assert res["built"]["retinanet__baseline__s0.py"] == ["RetinaNet", "RetinaHead"]
    assert len(res["built"]) == 15


@pytest.mark.slow
def test_an_exported_smoke_cell_trains_with_mmdets_own_tools(tmp_path):
    import mmdet

    out = tmp_path / "cfgs"
    # the smoke cells start from the warm start: built (or found) first, as a sweep does
    subprocess.run([sys.executable, "-m", "bench.run.pretrain"], cwd=REPO, check=True,
                   capture_output=True, timeout=900)
    subprocess.run([sys.executable, "-m", "bench", "config", "--export", str(out), "--profile",
                    "smoke", "--detectors", "fsaf", "--variants", "sepc_lite"], cwd=REPO,
                   check=True, capture_output=True, timeout=300)
    from mmengine.config import Config

    assert "synthetic://" not in (out / "fsaf__sepc_lite__s0.py").read_text()
    cfg = Config.fromfile(str(out / "fsaf__sepc_lite__s0.py"), import_custom_modules=False)
    # the harness's scheme is replaced by the cached file, for the backbone and the FPN
    srcs = [cfg.model.backbone.init_cfg.checkpoint, cfg.model.neck[0].init_cfg.checkpoint]
    assert srcs[0] == srcs[1] and srcs[0].endswith(".pth") and Path(srcs[0]).is_file()
    train = Path(mmdet.__file__).parent / ".mim" / "tools" / "train.py"
    proc = subprocess.run([sys.executable, str(train), str(out / "fsaf__sepc_lite__s0.py"),
                           "--work-dir", str(tmp_path / "wd"), "--cfg-options",
                           "train_cfg.max_iters=3", "train_cfg.val_interval=3"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Iter(val) [100/100]" in proc.stdout + proc.stderr  # trained, then validated
    assert (tmp_path / "wd" / "iter_3.pth").is_file()


def test_a_smoke_export_without_its_warm_start_is_a_one_line_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bench", "config", "--export", str(tmp_path / "c"),
                           "--profile", "smoke", "--detectors", "fsaf", "--variants", "baseline"],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "SEPC_BENCH_CACHE": str(tmp_path / "empty")})
    assert proc.returncode == 2 and not (tmp_path / "c").exists()
    err = proc.stderr.strip().splitlines()[-1]
    assert err.startswith("error: warm start ") and "python -m bench.run.pretrain" in err
