"""What a full cell will cost, from a pilot of it (``python -m bench pilot``).

A pilot runs the real cell for a few iterations with the profile's model, data pipeline, batch
per device and layout; the forecast scales what it measured to the full schedule:

    wall = start-up + iterations x seconds per iteration
           + validations x validation images x seconds per image (sharded over the devices)
           + the timing phase (both latency protocols at the profile's counts)

Seconds per iteration is the median after the first quarter of the pilot's iterations (warm-up:
allocator, cudnn autotuning, data-loader workers). The suggested ``--time`` adds 25% and 10
minutes, rounded up to a quarter hour; a time limit that is still too short costs a requeue from
the last checkpoint, not the cell.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass

MARGIN = 0.25
SLACK_MIN = 10
ROUND_MIN = 15


def steady_iteration_seconds(durations: list[float]) -> float | None:
    """Median duration of the iterations after the warm-up quarter (at least the first one is
    dropped when there are two or more)."""
    if not durations:
        return None
    skip = max(1, len(durations) // 4) if len(durations) > 1 else 0
    return statistics.median(durations[skip:])


def suggested_time_min(wall_s: float) -> int:
    """A SLURM time limit for a job forecast to take ``wall_s`` seconds, with margin."""
    minutes = wall_s / 60 * (1 + MARGIN) + SLACK_MIN
    return int(math.ceil(minutes / ROUND_MIN) * ROUND_MIN)


@dataclass(frozen=True)
class Forecast:
    """The full schedule of one cell, forecast from its pilot (seconds unless named)."""

    iters: int            # training iterations of the full schedule
    validations: int      # validation passes in it
    train_s: float
    val_s: float
    timing_s: float
    startup_s: float
    wall_s: float
    devices: int          # devices the full cell holds (nodes x tasks per node)
    gpus: int             # GPUs it asks SLURM for (nodes x GPUs per node; 0 on CPUs)
    gpu_hours: float      # wall x GPUs
    suggested_time_min: int

    def row(self) -> dict:
        return {f"forecast_{k}": (round(v, 3) if isinstance(v, float) else v)
                for k, v in asdict(self).items()}


def forecast(*, iter_s: float, iters: int, validations: int, val_s_per_image: float,
             val_images: int, devices: int, gpus: int, startup_s: float,
             timing_s: float) -> Forecast:
    """The full cell's wall time and GPU-hours.

    ``val_s_per_image`` is one device's time per validation image; the full cell's validation
    is sharded over its ``devices``.
    """
    train = iter_s * iters
    val = validations * val_images * val_s_per_image / max(1, devices)
    wall = startup_s + train + val + timing_s
    return Forecast(iters=iters, validations=validations, train_s=train, val_s=val,
                    timing_s=timing_s, startup_s=startup_s, wall_s=wall, devices=devices,
                    gpus=gpus, gpu_hours=wall / 3600 * gpus,
                    suggested_time_min=suggested_time_min(wall))


def schedule_length(train_cfg: dict, train_images: int, total_batch: int,
                    world_size: int) -> tuple[int, int]:
    """(training iterations, validation passes) of a resolved ``train_cfg``.

    An epoch has ``ceil(ceil(N / world) / images per device)`` iterations: mmengine's
    DefaultSampler pads every rank's shard to the same length.
    """
    if train_cfg["type"] == "IterBasedTrainLoop":
        iters = int(train_cfg["max_iters"])
        return iters, math.ceil(iters / int(train_cfg.get("val_interval", iters)))
    epochs = int(train_cfg["max_epochs"])
    per_device = total_batch // world_size
    per_epoch = math.ceil(math.ceil(train_images / world_size) / per_device)
    return epochs * per_epoch, math.ceil(epochs / int(train_cfg.get("val_interval", 1)))
