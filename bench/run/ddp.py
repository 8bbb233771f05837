"""One cell as several processes: DDP over the tasks of a SLURM job (NCCL on GPUs, gloo on CPUs).

mmengine's own SLURM launcher is the path on GPUs. Without GPUs it cannot be used: both of its
launchers call ``torch.cuda.set_device`` before ``init_process_group``, which fails on a CPU
build of torch. So on CPUs the job joins the process group itself (gloo, with the rank, world
size and master address derived from SLURM's variables as mmengine derives them) and hands
mmengine a Runner whose launcher is not ``'none'``: ``Runner.setup_env`` then finds the group
initialised and skips its own ``init_dist``. CPU modules also need ``device_ids=None`` in the
DDP wrapper (mmengine's default is ``[LOCAL_RANK]``).

Only rank 0 writes the result store (``bench.cellstore`` refuses other ranks), the checkpoints and
the detections (mmengine does both on rank 0 only); :class:`WriteAudit` records what the other
ranks opened for writing inside the cell's folder, so that a test can see it was nothing.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path


@dataclass(frozen=True)
class World:
    rank: int
    local_rank: int
    size: int


def world() -> World:
    """This process's place in the job: SLURM's task variables, else torch's launcher's."""
    env = os.environ
    if int(env.get("SLURM_NTASKS", "1")) > 1:
        return World(int(env["SLURM_PROCID"]), int(env.get("SLURM_LOCALID", "0")),
                     int(env["SLURM_NTASKS"]))
    if int(env.get("WORLD_SIZE", "1")) > 1:
        return World(int(env["RANK"]), int(env.get("LOCAL_RANK", "0")), int(env["WORLD_SIZE"]))
    return World(0, 0, 1)


def rank() -> int:
    return world().rank


def master_port() -> int:
    """Array tasks sharing a node must not share a port (mmengine's default is 29500)."""
    return 20000 + int(os.environ.get("SLURM_JOB_ID", "0")) % 20000


def _master_addr() -> str:
    nodes = os.environ.get("SLURM_NODELIST") or os.environ.get("SLURM_JOB_NODELIST")
    if not nodes:
        return "127.0.0.1"
    out = subprocess.run(["scontrol", "show", "hostname", nodes], capture_output=True,
                         text=True, timeout=60)
    return out.stdout.split()[0] if out.returncode == 0 and out.stdout.split() else "127.0.0.1"


def setup(cfg) -> str | None:
    """Make ``cfg`` train on all tasks of the job; returns the backend, None for one process."""
    import torch

    w = world()
    if w.size == 1:
        return None
    os.environ.setdefault("MASTER_PORT", str(master_port()))
    cfg.launcher = "slurm"
    if torch.cuda.is_available():
        return "nccl"  # mmengine's SLURM launcher: set_device(local rank), then NCCL
    import torch.distributed as dist

    os.environ.setdefault("MASTER_ADDR", _master_addr())
    os.environ.update(RANK=str(w.rank), LOCAL_RANK=str(w.local_rank), WORLD_SIZE=str(w.size))
    if not dist.is_initialized():
        dist.init_process_group("gloo", rank=w.rank, world_size=w.size,
                                timeout=timedelta(minutes=30))
    cfg.model_wrapper_cfg = dict(type="MMDistributedDataParallel", device_ids=None,
                                 broadcast_buffers=False, find_unused_parameters=False)
    return "gloo"


def gather(obj) -> list | None:
    """Every rank's ``obj`` on rank 0 (None elsewhere); ``[obj]`` without a process group."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out


def teardown() -> None:
    """Leave the process group, so that rank 0 times the model alone and every rank exits
    cleanly."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


class WriteAudit:
    """Files a process opens for writing under ``root`` (Python-level opens: ``open``,
    ``os.open``, hence mmengine's checkpoint and dump writers and ``tempfile``)."""

    _WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def __init__(self, root: str | Path) -> None:
        self.root = str(Path(root).resolve())
        self.paths: list[str] = []
        self.active = False

    def start(self) -> WriteAudit:
        self.active = True
        sys.addaudithook(self._hook)  # cannot be removed: ``active`` switches it off
        return self

    def stop(self) -> list[str]:
        self.active = False
        return sorted(set(self.paths))

    def _hook(self, event: str, args: tuple) -> None:
        if not self.active or event != "open" or not args or not isinstance(args[0], (str, Path)):
            return
        path, mode = str(args[0]), args[1]
        flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            mode is None and flags & self._WRITE_FLAGS)
        if writes and os.path.abspath(path).startswith(self.root):
            self.paths.append(os.path.abspath(path))
