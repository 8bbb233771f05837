import os

import pytest

# Deterministic and light on a 2-core machine.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session", autouse=True)
def _threads():
    import torch

    torch.set_num_threads(2)
    torch.manual_seed(0)
