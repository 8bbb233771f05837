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


def require(service: str, available: bool, target: str) -> None:
    """At a test module's top: without ``service`` the module is skipped with one line naming
    the make target that provides it; under CI=true a missing service fails the run instead."""
    if available:
        return
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail(f"{service} is missing, and CI requires it: make {target}", pytrace=False)
    pytest.skip(f"needs {service}: make {target}", allow_module_level=True)


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
def coco_1333(tmp_path_factory):
    """A small COCO-layout folder at the paper's image size (1333x800), from the synthetic
    generator: what the paper profile reads, without COCO."""
    from bench.data.synthetic import generate

    return generate(tmp_path_factory.mktemp("coco1333") / "coco", n_train=8, n_val=4,
                    image_size=(1333, 800), size_range=(16.0, 500.0), size_jitter=0.1)


@pytest.fixture(scope="session")
def r50_file(tmp_path_factory):
    """A local ResNet-50 checkpoint in torchvision's key layout (random weights): what
    ``--pretrained PATH`` takes on nodes without network."""
    import torch
    from mmdet.models.backbones import ResNet

    path = tmp_path_factory.mktemp("r50") / "resnet50.pth"
    torch.manual_seed(0)
    torch.save(ResNet(depth=50).state_dict(), path)
    return path


@pytest.fixture(scope="session")
def smoke_warmstart():
    """The smoke profile's warm start (bench/run/pretrain.py), built once per machine (minutes, then
    cached): built here, before a slow test's cells (or SLURM jobs) would wait for it."""
    from bench.plan.settings import load_profile
    from bench.run.pretrain import ensure

    return ensure("smoke", threads=load_profile("smoke").settings.threads)


@pytest.fixture(autouse=True)
def _warm_start_for_slow_tests(request):
    """Slow tests run smoke cells (locally or as SLURM jobs), which start from the warm start."""
    if request.node.get_closest_marker("slow"):
        request.getfixturevalue("smoke_warmstart")
