"""mmengine writes each module's initialisers straight into the file handlers of its current
logger. submitit, when first imported, reconfigures logging and closes every handler that
exists: a Runner's log file opened before that import broke every later ``init_weights`` in the
process (seen as 22 failures mid-suite once an import moved). Importing ``bench`` first must keep
such a log file open, whatever is imported next."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

SCRIPT = r"""
import logging, sys
import bench  # what every entry point imports first
from mmengine.logging import MMLogger
from mmengine.model import BaseModule
import torch.nn as nn

log = sys.argv[1]
logger = MMLogger.get_instance("a-runner", log_file=log)  # as a Runner opens its log file
# the imports that reconfigure:
import bench.schedule.slurm, bench.run.job, submitit  # noqa: E401,F401

class Net(BaseModule):
    def __init__(self):
        super().__init__(init_cfg=dict(type="Constant", layer="Conv2d", val=1.0))
        self.conv = nn.Conv2d(1, 1, 1)

Net().init_weights()
"""


def test_a_log_file_opened_after_import_bench_survives_submitit(tmp_path):
    log = tmp_path / "run.log"
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(log)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Initialization information" in log.read_text()
