"""Running: a Plan becomes a result row, inside the job's process (bench/run/job.py, top to
bottom): train, or convert an authors' checkpoint; evaluate; measure; write the row. Also the
warm start's build, DDP over a job's tasks, the latency protocols, a local sweep's interleaved
timing, a pilot's forecast and ``bench perf``."""
