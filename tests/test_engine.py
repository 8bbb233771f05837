"""sepc/engine.py: the training aids a config names."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from sepc.engine import channels_last_is_safe

# The smoke ResNet's first downsample conv (8 -> 16 channels, 1x1, stride 2, 64x64 maps) under
# ChannelsLastHook in a real mmengine Runner, then backward: on an AVX-512 CPU oneDNN 3.12's NHWC
# kernel for it corrupts the heap (the process aborts), so the hook must leave the model NCHW.
SCRIPT = """
import torch, torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner
from sepc.engine import ChannelsLastHook

class Net(BaseModel):  # a stem, then the smoke ResNet's first downsample conv
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.down = nn.Conv2d(8, 16, 1, 2, bias=False)
    def forward(self, x, mode='tensor'):
        return self.down(self.stem(x))

torch.set_num_threads(1)
runner = Runner(model=Net(), work_dir=__WORK__)
ChannelsLastHook().before_run(runner)
x = torch.randn(4, 3, 64, 64)  # NCHW, as mmdet's data preprocessor hands it over
for _ in range(5):
    runner.model(x).sum().backward()
nhwc = runner.model.stem(x).is_contiguous(memory_format=torch.channels_last)
print('channels_last' if nhwc else 'nchw')
"""


def _train(tmp_path, **env) -> subprocess.CompletedProcess:
    script = SCRIPT.replace("__WORK__", repr(str(tmp_path / "work")))
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env})


def test_channels_last_hook_stays_nchw_where_onednn_would_corrupt_the_heap(tmp_path):
    env = {k: "" for k in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")}
    proc = _train(tmp_path, **env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    avx512 = torch.cpu._is_avx512_supported()
    assert proc.stdout.split()[-1] == ("nchw" if avx512 else "channels_last")
    assert ("training in NCHW" in proc.stdout + proc.stderr) == avx512
    assert (channels_last_is_safe() is None) == (not avx512)


def test_channels_last_hook_trains_nhwc_below_avx512(tmp_path):
    """ONEDNN_MAX_CPU_ISA=AVX2 keeps oneDNN off its AVX-512 kernels: channels-last is safe."""
    proc = _train(tmp_path, ONEDNN_MAX_CPU_ISA="AVX2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-1] == "channels_last"


@pytest.mark.skipif(not torch.cpu._is_avx512_supported(), reason="needs an AVX-512 CPU")
def test_the_onednn_fault_is_real_here(tmp_path):
    """Why the hook checks: the same conv in NHWC on AVX-512, without the hook, aborts. When a
    torch upgrade fixes oneDNN this test fails, and the check can go."""
    script = ("import torch, torch.nn as nn\ntorch.set_num_threads(1)\n"
              "conv = nn.Conv2d(8, 16, 1, 2, bias=False).to(memory_format=torch.channels_last)\n"
              "x = torch.randn(4, 8, 64, 64).contiguous(memory_format=torch.channels_last)\n"
              "for _ in range(5):\n    conv(x.requires_grad_(True)).sum().backward()\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "ONEDNN_MAX_CPU_ISA": ""})
    assert proc.returncode != 0, "oneDNN no longer faults: ChannelsLastHook's check can go"
