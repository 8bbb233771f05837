"""The ablation matrix as configs: ``_base_/`` per detector (derived from mmdet's own configs),
``profiles/`` per profile (a delta on top, plus the harness settings under ``bench``). Variants
are applied by ``bench.configs`` from the table in ``bench.matrix``."""
from pathlib import Path

ROOT = Path(__file__).resolve().parent
