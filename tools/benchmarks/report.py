"""How long the report takes to build: synthetic stores of 15 and 1,500 cells.

    .venv/bin/python -m tools.benchmarks.report [--repeat 3] [--keep DIR]

Targets: 15 cells < 5 s, 1,500 cells < 60 s (a sweep of 100 seeds, or of
many profiles). Each store is written first (not timed) by the tests' fixture
writer; then the whole report (table, md/csv/tex, 3 PNG plots per profile,
HTML) is built "cold" (``python -m reports DIR -q`` in a new interpreter:
what a user waits for, imports included; with its CPU seconds, which a busy
machine does not inflate) and "warm" (``build_report`` in this process, best
of --repeat).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from reports.build import build_report
from tests.fixtures.results import write_smoke_results, write_synthetic_results

CASES = (
    (
        "15 cells (smoke fixture: 3 seeds on 2 cells, failed/pending/missing)",
        lambda d: write_smoke_results(d),
    ),
    ("15 cells x 1 seed", lambda d: write_synthetic_results(d, seeds=1)),
    ("1,500 cells: 15 cells x 100 seeds", lambda d: write_synthetic_results(d, seeds=100)),
    (
        "1,500 cells: 100 profiles x 15 cells",
        lambda d: write_synthetic_results(d, profile_names=[f"p{i:03d}" for i in range(100)]),
    ),
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--repeat", type=int, default=2, help="warm builds per store (best is reported)"
    )
    ap.add_argument(
        "--keep", metavar="DIR", help="write the stores here and keep them (default: a temp dir)"
    )
    args = ap.parse_args(argv)
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-report-"))
    print(f"stores under {base}")
    print(
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (wall times stretch "
        "with load; cpu s does not)"
    )
    print(f"{'store':<72} {'files':>6} {'write s':>8} {'cold s':>7} {'cpu s':>6} {'warm s':>7}")
    results = []
    for i, (name, writer) in enumerate(CASES):
        d = base / f"store{i}"
        t0 = time.perf_counter()
        writer(d)
        t_write = time.perf_counter() - t0
        n = sum(1 for _ in d.glob("*/result.json"))
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "reports", str(d), "-q"],
            cwd=Path(__file__).resolve().parents[2],
            check=True,
        )
        t_cold = time.perf_counter() - t0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_cold = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        warm = []
        for _ in range(max(1, args.repeat)):
            t0 = time.perf_counter()
            build_report(d)
            warm.append(time.perf_counter() - t0)
        results.append((name, n, t_write, t_cold, min(warm)))
        print(
            f"{name:<72} {n:>6} {t_write:>8.2f} {t_cold:>7.2f} {cpu_cold:>6.2f} {min(warm):>7.2f}",
            flush=True,
        )
    if not args.keep:
        import shutil

        shutil.rmtree(base, ignore_errors=True)
    ok = all(cold < (5 if n < 100 else 60) for _name, n, _w, cold, _warm in results)
    print("targets (15 cells < 5 s, 1,500 cells < 60 s, cold):", "met" if ok else "MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
