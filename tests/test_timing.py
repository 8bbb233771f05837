"""Which cells a local sweep times together afterwards (bench/run/timing.py), and what a group that
cannot be timed does. The timing itself runs end to end in tests/test_e2e_local.py."""
from bench.cellstore import CellStore
from bench.plan.cells import Cell
from bench.run.timing import time_local, untimed_groups


def _done(results, det, var, **row):
    CellStore(results, Cell("smoke", det, var)).write(status="done", executor="local", AP=5.0,
                                                      **row)


def test_groups_with_a_local_cell_not_timed_interleaved(tmp_path):
    _done(tmp_path, "fsaf", "baseline", latency_protocol="interleaved", latency_ms=10.0)
    _done(tmp_path, "fsaf", "pconv", latency_protocol="interleaved", latency_ms=11.0)
    _done(tmp_path, "retinanet", "baseline", latency_protocol="interleaved", latency_ms=10.0)
    _done(tmp_path, "retinanet", "sepc")  # trained, never timed
    # a SLURM cell times itself; a failed one has nothing to time
    CellStore(tmp_path, Cell("smoke", "freeanchor", "baseline")).write(
        status="done", executor="slurm", latency_protocol="per-job", latency_ms=9.0)
    CellStore(tmp_path, Cell("smoke", "freeanchor", "pconv")).write(status="failed",
                                                                    executor="local")
    cells = [Cell("smoke", d, "baseline") for d in ("retinanet", "freeanchor", "fsaf")]
    assert untimed_groups(tmp_path, cells) == [("smoke", "retinanet")]


def test_a_group_that_cannot_be_timed_is_an_error_line_and_keeps_its_rows(tmp_path, capsys):
    _done(tmp_path, "fsaf", "baseline")  # no checkpoint in its work dir
    time_local(tmp_path, [Cell("smoke", "fsaf", "baseline")], show_progress=False)
    err = capsys.readouterr().err
    assert "error: timing smoke/fsaf failed: FileNotFoundError" in err and "no checkpoint" in err
    row = CellStore(tmp_path, Cell("smoke", "fsaf", "baseline")).read()
    assert row["status"] == "done" and row["AP"] == 5.0 and "latency_ms" not in row
    assert untimed_groups(tmp_path, [Cell("smoke", "fsaf", "baseline")])  # retried next time
