"""The training noise of each profile, as data: how far one cell's metrics move between seeds.

Why: with one seed per cell, the report's summary can only claim a difference that stands out
from the training's own noise, which a single run cannot measure (reports/stats/claims.py, rule
``profile``; docs/statistics.md). Each entry says what it was measured on, when, and with which
command, and the report prints it beside every claim that uses it. An entry applies to the
profile's cells trained with ``iters`` iterations (``None``: the profile's own schedule, however
long); a store trained another way gets no profile spread, and its one-seed claims are not made.

``python -m bench spread --profile P --seeds 3`` trains the missing seeds and prints a new entry.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class SeedSpread:
    """The seed standard deviation of one cell's metrics, pooled over the cells it was
    measured on (AP points), with its degrees of freedom (``inf``: taken from elsewhere)."""

    profile: str
    iters: int | None
    sd: dict[str, float]
    dof: float
    measured: str  # date, or where the value comes from
    command: str  # what measured it (or would, on a cluster)
    basis: str  # cells x seeds, commit and machine, or the source of an external value
    sd_max: dict[str, float] = field(default_factory=dict)  # the noisiest single cell's sd

    def __hash__(self) -> int:  # the dicts make the generated hash fail; one entry per recipe
        return hash((self.profile, self.iters, self.measured))

    def describe(self, metric: str = "AP") -> str:
        dof = "taken as known" if math.isinf(self.dof) else f"{self.dof:g} degrees of freedom"
        worst = (f", the noisiest cell {self.sd_max[metric]:.2f}" if metric in self.sd_max
                 else "")
        return (f"seed spread {self.sd[metric]:.2f} {metric} per cell{worst} ({dof}; "
                f"{self.basis}; {self.measured}; `{self.command}`)")


SEED_SPREADS: tuple[SeedSpread, ...] = (
    # Measured here: the 15 smoke cells with seeds 0, 1 and 2 and the three baselines with seed 3
    # too, at the default `make table`'s recipe (1,200 iterations), pooled. The baselines' stock
    # heads are the noisiest cells (FSAF's read 27.2, 19.2, 18.2 and 20.2 AP), hence their
    # second seed in `make table` (docs/statistics.md, docs/performance.md "Seed spread").
    SeedSpread(
        profile="smoke", iters=1200,
        sd={"AP": 2.213, "AP50": 4.002, "AP75": 2.267, "AR100": 1.168}, dof=33,
        measured="2026-12-08",
        command=("python -m bench spread --profile smoke --seeds 0,1,2 --results RESULTS "
                 "(seeds 0-2 of every cell, seed 3 of the baselines)"),
        basis=("12 cells x 3 seeds + 3 baselines x 4 seeds, commits 7f933c3 and 3ec8e84, Intel "
               "Xeon (AVX-512), x86_64, 2 cores"),
        sd_max={"AP": 4.119, "AP50": 7.821, "AP75": 3.895, "AR100": 3.516}),
    # The previous default, 1,500 iterations (`make table ITERS=1500`), measured the same way on
    # an AMD EPYC VM (channels-last training). Its noisiest cell was RetinaNet's baseline (24.7,
    # 16.2 and 24.9 AP).
    SeedSpread(
        profile="smoke", iters=1500,
        sd={"AP": 2.449, "AP50": 4.376, "AP75": 2.868, "AR100": 1.017}, dof=18,
        measured="2026-12-04",
        command=("python -m bench spread --profile smoke --seeds 0,1,2 --results RESULTS "
                 "(seeds 0 and 1 of every cell, seed 2 of the baselines)"),
        basis=("15 cells x 2 seeds + 3 baselines x 1, commits 84c9c1b and 239c38c, x86_64, "
               "2 cores"),
        sd_max={"AP": 4.966, "AP50": 9.796, "AP75": 5.564, "AR100": 2.616}),
    # Not measured here (COCO R-50 1x costs ~1,500 GPU-hours a sweep): maintainers' statements of
    # COCO AP from run to run for one recipe. mmdetection #3496: "the fluctuation is very little
    # (less than 0.3 mAP)"; detectron2 #457: RetinaNet at 800x1333 "can vary from 35.8 - 36.3"
    # ("a bit larger than normal"). Their upper end taken as the standard deviation.
    SeedSpread(
        profile="paper", iters=None, sd={"AP": 0.3}, dof=math.inf,
        measured="not measured here: maintainers' reports",
        command=("python -m bench run --profile paper --seeds 3 --executor slurm; then "
                 "python -m bench spread --profile paper --seeds 3"),
        basis="mmdetection #3496 (under 0.3 AP), detectron2 #457 (RetinaNet 35.8-36.3)"),
    SeedSpread(
        profile="paper-modern", iters=None, sd={"AP": 0.3}, dof=math.inf,
        measured="not measured here: maintainers' reports",
        command=("python -m bench run --profile paper-modern --seeds 3 --executor slurm; then "
                 "python -m bench spread --profile paper-modern --seeds 3"),
        basis="mmdetection #3496 (under 0.3 AP), detectron2 #457 (RetinaNet 35.8-36.3)"),
)


def seed_spread(profile: str, iters: int | None) -> SeedSpread | None:
    """The entry for ``profile``'s cells trained ``iters`` iterations, or None."""
    for s in SEED_SPREADS:
        if s.profile == profile and (s.iters is None or s.iters == iters):
            return s
    return None
