"""The ablation matrix as configs: ``_base_/`` per detector (derived from mmdet's own configs),
``profiles/`` per profile (a delta on top, plus the harness settings under ``bench``). Variants
are applied by ``bench.plan.config`` from the table in ``bench.plan.cells``."""
from pathlib import Path

ROOT = Path(__file__).resolve().parent
