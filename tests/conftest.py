import os
import time

import pytest

# Deterministic and light on a 2-core machine.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session", autouse=True)
def _threads():
    import torch

    torch.set_num_threads(2)
    torch.manual_seed(0)


def wait_for(pred, timeout: float, what: str, poll: float = 0.5):
    """Poll ``pred`` until it returns something truthy (returned), or fail after ``timeout``."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        value = pred()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(scope="session")
def smoke_warmstart():
    """The smoke profile's warm start (bench/warmstart.py), built once per machine (minutes, then
    cached): built here, before a slow test's cells (or SLURM jobs) would wait for it."""
    from bench.warmstart import ensure, threads

    return ensure("smoke", threads=threads("smoke"))


@pytest.fixture(autouse=True)
def _warm_start_for_slow_tests(request):
    """Slow tests run smoke cells (locally or as SLURM jobs), which start from the warm start."""
    if request.node.get_closest_marker("slow"):
        request.getfixturevalue("smoke_warmstart")
