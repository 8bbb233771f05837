"""A profile's harness settings (its ``bench=dict(...)``), parsed once into frozen dataclasses.

Every default is here and nowhere else: the job, the timing, the scheduler and the warm start
read these fields instead of looking keys up in a dict with a default of their own. An unknown
key is a one-line error naming the profile, so a misspelt setting never silently falls back.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

from bench.plan.cells import Cell, MatrixError
from bench.plan.conventions import CONVENTIONS
from experiments import ROOT as EXPERIMENTS

PROFILES_DIR = EXPERIMENTS / "profiles"
SCHEDULES = ("epochs", "iters")


def profiles() -> list[str]:
    """The profile names (``experiments/profiles/<name>.py``)."""
    return sorted(p.stem for p in PROFILES_DIR.glob("*.py") if not p.stem.startswith("_"))


def _build(cls: type, raw: dict, where: str) -> Any:
    """``cls(**raw)``, refusing a key ``cls`` has no field for with one line."""
    known = [f.name for f in fields(cls)]
    unknown = [k for k in raw if k not in known]
    if unknown:
        raise MatrixError(f"{where}: unknown setting {unknown[0]!r} (known: {', '.join(known)})")
    return cls(**raw)


@dataclass(frozen=True)
class Latency:
    """The two latency protocols' sizes and counts (bench/run/latency.py)."""

    size: tuple[int, int] = (800, 1344)  # model step: the input padded to this size
    warmup: int = 20
    iters: int = 100
    paper_batch: int = 8  # the paper's protocol: batches from the validation loader
    paper_skip: int = 100
    paper_iters: int = 200

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", tuple(self.size))

    def seconds(self, step_ms: float, paper_ms: float) -> float:
        """How long both protocols take at these counts, given one call's time of each."""
        return ((self.warmup + self.iters) * step_ms
                + (self.paper_skip + self.paper_iters) * paper_ms * self.paper_batch) / 1e3


@dataclass(frozen=True)
class Slurm:
    """sbatch defaults of a profile's cells (the command line overrides each)."""

    time_min: int = 60
    cpus_per_task: int = 2
    mem_gb: float = 8.0
    nodes: int = 1
    gpus_per_node: int = 1  # of a fixed-batch profile; otherwise one per task
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    array_parallelism: int = 64
    signal_delay_s: int = 90


@dataclass(frozen=True)
class WarmStart:
    """The detector x variant a profile's warm start trains, and for how long
    (bench/run/pretrain.py)."""

    detector: str
    variant: str
    iters: int
    seed: int = 0
    model: dict = field(default_factory=dict)  # a model delta for the warm start alone


@dataclass(frozen=True)
class Pilot:
    """What a pilot (``bench pilot``) changes: a short timing and a short time limit."""

    latency: Latency
    slurm: Slurm


@dataclass(frozen=True)
class Settings:
    """One profile's harness settings; see experiments/profiles/*.py for what each profile sets."""

    description: str = ""
    data: dict = field(default_factory=dict)  # kind synthetic (+ the generator's knobs) or coco
    pretrained: str | None = None  # starting weights (bench/plan/weights.py)
    warmstart: WarmStart | None = None
    fixed_batch: int | None = None  # one device, this many images, whatever the variant
    total_batch: int = 16  # else: devices = total_batch / the variant's images per GPU
    lcconv_padding: int = 0
    conventions: str = "mmdet3"  # box conventions (bench/plan/conventions.py)
    bases: dict = field(default_factory=dict)  # detector -> another _base_ config
    min_size: int = 4  # training images with a smaller side are skipped
    test_pad: dict = field(default_factory=dict)  # "detector/variant" -> test padding multiple
    schedule: str = "epochs"  # the _base_'s epochs, or max_iters iterations
    max_iters: int | None = None
    val_interval: int | None = None  # iterations between validations (default: at the end)
    checkpoint_interval: int = 50
    channels_last: bool = False
    baseline_seeds: int = 1  # seeds of each baseline per seed named (bench/plan/cells.py)
    threads: int | None = None  # torch threads per cell; None: torch's default (every core)
    workers: int = 2  # data-loader workers
    per_detector: dict = field(default_factory=dict)  # detector -> config delta
    image_scale: int | tuple | None = None  # resize scale (default: 1333x800, or the data's)
    latency: Latency = field(default_factory=Latency)
    slurm: Slurm = field(default_factory=Slurm)
    pilot: Pilot = field(default_factory=lambda: Pilot(Latency(), Slurm()))
    released: dict = field(default_factory=dict)  # overrides of these settings for released cells

    def __post_init__(self) -> None:
        if self.conventions not in CONVENTIONS:
            raise MatrixError(f"unknown conventions {self.conventions!r} "
                              f"(known: {', '.join(CONVENTIONS)})")
        if self.schedule not in SCHEDULES:
            raise MatrixError(f"unknown schedule {self.schedule!r} (known: {', '.join(SCHEDULES)})")
        if self.schedule == "iters" and not self.max_iters:
            raise MatrixError("schedule 'iters' needs max_iters")
        if self.baseline_seeds < 1:
            raise MatrixError(f"baseline_seeds must be >= 1, not {self.baseline_seeds}")

    @property
    def synthetic(self) -> bool:
        return self.data.get("kind") == "synthetic"

    def train_iters(self, budget: int | None) -> int | None:
        """Iterations a cell trains given an iteration ``budget`` (``--max-iters``, a pilot's),
        where the settings say it; None for an epoch schedule without one (its length needs
        the dataset)."""
        if budget:
            return int(budget)
        return int(self.max_iters) if self.schedule == "iters" else None


def parse_settings(raw: dict, where: str) -> Settings:
    """A profile's ``bench`` dict as :class:`Settings` (``where`` names it in an error)."""
    raw = copy.deepcopy(raw)
    latency = _build(Latency, raw.pop("latency", {}), f"{where} latency")
    slurm = _build(Slurm, raw.pop("slurm", {}), f"{where} slurm")
    pilot = raw.pop("pilot", {})
    unknown = [k for k in pilot if k not in ("latency", "slurm")]
    if unknown:
        raise MatrixError(f"{where} pilot: unknown setting {unknown[0]!r} (known: latency, slurm)")
    raw["pilot"] = Pilot(
        _build(Latency, {**dataclasses.asdict(latency), **pilot.get("latency", {})},
               f"{where} pilot latency"),
        _build(Slurm, {**dataclasses.asdict(slurm), **pilot.get("slurm", {})},
               f"{where} pilot slurm"))
    if raw.get("warmstart"):
        raw["warmstart"] = _build(WarmStart, raw["warmstart"], f"{where} warmstart")
    return _build(Settings, dict(raw, latency=latency, slurm=slurm), where)


@dataclass(frozen=True)
class Profile:
    """A profile: its settings, and the config delta it lays over each detector's ``_base_``."""

    name: str
    settings: Settings
    delta: dict = field(repr=False)

    def base(self, detector: str) -> Path:
        """The detector's ``_base_`` config: its own, or the one the profile names for it."""
        name = self.settings.bases.get(detector, detector)
        path = EXPERIMENTS / "_base_" / f"{name}.py"
        if not path.is_file():
            raise MatrixError(f"profile {self.name!r}: no base config {name!r} for {detector} "
                              f"(experiments/_base_/{name}.py)")
        return path


@lru_cache(maxsize=16)
def _profile_cached(name: str) -> Profile:
    from mmengine.config import Config

    path = PROFILES_DIR / f"{name}.py"
    if not path.is_file():
        raise MatrixError(f"unknown profile {name!r} (known: {', '.join(profiles())})")
    delta = Config.fromfile(str(path)).to_dict()
    raw = delta.pop("bench", {})
    settings = parse_settings(raw, f"profile {name!r}")
    if settings.released:  # checked now, not when a released cell first asks for them
        _released_settings(name, raw)
    return Profile(name, settings, delta)


def load_profile(name: str) -> Profile:
    """The profile ``name`` (parsed once per process; the delta is the caller's own copy)."""
    p = _profile_cached(name)
    return Profile(p.name, p.settings, copy.deepcopy(p.delta))


_RELEASED: dict[str, Settings] = {}


def _released_settings(name: str, raw: dict) -> Settings:
    """The profile's ``bench`` dict with its ``released`` dict laid over it (top-level keys
    replaced whole), parsed."""
    if name not in _RELEASED:
        over = {k: v for k, v in raw.items() if k != "released"}
        _RELEASED[name] = parse_settings({**over, **raw["released"]}, f"profile {name!r} released")
    return _RELEASED[name]


def cell_settings(cell: Cell) -> Settings:
    """The settings a cell runs under: a released cell's are overridden by the profile's
    ``released`` dict (one device, its own time limit, image size, ...)."""
    settings = _profile_cached(cell.profile).settings
    if cell.source == "released" and settings.released:
        return _RELEASED[cell.profile]
    return settings


def cell_profile(cell: Cell) -> Profile:
    """The cell's profile, with :func:`cell_settings` as its settings."""
    p = load_profile(cell.profile)
    return Profile(p.name, cell_settings(cell), p.delta)


def cell_conventions(cell: Cell) -> str:
    """The box conventions a cell is built in: the authors' checkpoints were trained in mmdet
    1.1's, whatever the profile's."""
    return "mmdet1" if cell.source == "released" else cell_settings(cell).conventions
