"""The statistics room: numbers in, numbers out (no file I/O, nothing else of the project).

- :mod:`.records`: per-image COCOeval records of one detection set, and COCOeval.accumulate()
  re-run from them with image weights (exact to pycocotools on the identity resample);
- :mod:`.bootstrap`: the paired image-level bootstrap of variant minus baseline;
- :mod:`.claims`: the rule deciding whether a difference may be claimed (training noise and
  image sampling both);
- :mod:`.tide`: the TIDE error decomposition (Bolya et al., ECCV 2020) of one detection set.

The job (``bench``) and the reports both use it; reading and writing the store's files around
it is theirs (``reports.compare``).
"""
from reports.stats.bootstrap import (
    BootstrapResult,
    MetricDelta,
    bootstrap_detections,
    full_metrics,
    paired_bootstrap,
    resample_weights,
)
from reports.stats.records import (
    ALL_METRICS,
    DEFAULT_METRICS,
    EvalRecords,
    accumulate,
    covers,
    evaluate_records,
    load_coco_gt,
    records_from_arrays,
    records_from_cocoeval,
    records_to_arrays,
)
from reports.stats.tide import TideResult, tide

__all__ = [
    "ALL_METRICS",
    "DEFAULT_METRICS",
    "BootstrapResult",
    "EvalRecords",
    "MetricDelta",
    "accumulate",
    "bootstrap_detections",
    "covers",
    "full_metrics",
    "evaluate_records",
    "load_coco_gt",
    "paired_bootstrap",
    "records_from_arrays",
    "records_from_cocoeval",
    "records_to_arrays",
    "resample_weights",
    "tide",
    "TideResult",
]
