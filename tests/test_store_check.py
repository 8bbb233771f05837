"""The store knows what each cell trained, and one process at a time claims a cell.

A done cell whose stored config differs from the request's is refused before anything runs,
naming the first differing field (it used to be skipped as done and tabulated as the request:
``--lcconv-padding 0`` printed the padding-1 table). Two sweeps started together never both
train a cell: its check and claim are one step under a per-cell lock."""
import dataclasses
import multiprocessing
import os

import pytest

from bench.cellstore import CellStore, Claims
from bench.cli import main
from bench.flow import first_difference
from bench.plan import plan_cell
from bench.plan import settings as plan_settings
from bench.plan.cells import Cell
from bench.plan.config import hashed_config
from bench.plan.options import Options
from bench.schedule.state import select
from reports.schema import atomic_write_json

CELL = Cell("smoke", "retinanet", "pconv")
SEL = ["--profile", "smoke", "--detectors", "retinanet", "--variants", "pconv"]


def _done_as_requested(results, opts: Options = Options()) -> None:
    """A done cell as the job of a request with ``opts`` leaves it: its row (hash, recipe) and
    the config it ran."""
    p = plan_cell(CELL, opts)
    store = CellStore(results, CELL)
    store.write(status="done", config_hash=p.config_hash, train_iters=p.train_iters,
                total_batch=p.layout.total_batch, lr=p.lr, AP=10.0)
    atomic_write_json(store.config_path, hashed_config(p.config))


def _one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_the_same_request_skips_the_done_cell(tmp_path, capsys):
    _done_as_requested(tmp_path)
    assert main(["run", *SEL, "--results", str(tmp_path), "--dry-run"]) == 0
    assert "skip retinanet__pconv__s0: done" in capsys.readouterr().out


@pytest.mark.parametrize("verb", ["run", "table"])
def test_another_lcconv_padding_is_refused_naming_the_field(tmp_path, capsys, verb):
    _done_as_requested(tmp_path)  # the smoke profile's padding 1
    extra = ["--dry-run"] if verb == "run" else ["--run-missing"]
    assert main([verb, *SEL, "--results", str(tmp_path), "--lcconv-padding", "0", *extra]) == 2
    line = _one_error_line(capsys)
    assert "retinanet__pconv__s0 (model.neck.1.lcconv_padding 1, not 0)" in line, line
    assert "--results DIR" in line
    assert not (tmp_path / "report").exists()  # nothing tabulated, nothing run


def test_other_starting_weights_are_refused(tmp_path, capsys):
    _done_as_requested(tmp_path)  # the smoke warm start
    assert main(["run", *SEL, "--results", str(tmp_path), "--pretrained", "none",
                 "--dry-run"]) == 2
    line = _one_error_line(capsys)
    assert "retinanet__pconv__s0 (model.backbone.init_cfg {'checkpoint': 'synthetic://" in line
    assert ", not None)" in line and "--force" in line
    # --force is the explicit way: it trains the cell again under the new request
    assert main(["run", *SEL, "--results", str(tmp_path), "--pretrained", "none", "--dry-run",
                 "--force"]) == 0
    assert "would run retinanet__pconv__s0" in capsys.readouterr().out


def test_a_profile_edit_is_refused(tmp_path, capsys, monkeypatch):
    """The store was trained before the profile changed (here: its weight decay)."""
    _done_as_requested(tmp_path)
    real = plan_settings._profile_cached

    def edited(name: str):
        p = real(name)
        delta = {**p.delta, "optim_wrapper": {**p.delta["optim_wrapper"]}}
        delta["optim_wrapper"]["optimizer"] = {**delta["optim_wrapper"]["optimizer"],
                                               "weight_decay": 2e-4}
        return dataclasses.replace(p, delta=delta)

    monkeypatch.setattr(plan_settings, "_profile_cached", edited)
    assert main(["run", *SEL, "--results", str(tmp_path), "--dry-run"]) == 2
    line = _one_error_line(capsys)
    assert "(optim_wrapper.optimizer.weight_decay 0.0001, not 0.0002)" in line, line


def test_a_row_without_its_config_names_the_hashes(tmp_path, capsys):
    """Rows of an older harness keep only the hash: the refusal says so in those terms."""
    CellStore(tmp_path, CELL).write(status="done", config_hash="0123456789")
    assert main(["run", *SEL, "--results", str(tmp_path), "--dry-run"]) == 2
    assert "retinanet__pconv__s0 (config 0123456789, not " in _one_error_line(capsys)


def test_first_difference_walks_dicts_and_lists_in_order():
    assert first_difference({"a": 1, "b": [1, {"c": 2}]}, {"a": 1, "b": [1, {"c": 3}]}) == \
        "b.1.c 2, not 3"
    assert first_difference({"a": 1}, {"a": 1, "z": 0}) == "z absent, not 0"
    assert first_difference({"a": [1]}, {"a": [1, 2]}) == "a [1], not [1, 2]"
    assert first_difference({"a": 1}, {"a": 1}) is None


def _claimant(results, start, out) -> None:
    """One process of a sweep: claim and select the cell at the same moment as the other."""
    claims = Claims(results)
    start.wait()
    todo, skipped = select([CELL], results, claims, queued={})
    out.put((os.getpid(), [c.key for c in todo],
             {k: (s.kind, s.why) for k, s in skipped.items()}))
    start.wait()  # hold the claim until both have decided
    claims.release_all()


def test_two_claimants_started_together_run_the_cell_once(tmp_path):
    ctx = multiprocessing.get_context("fork")
    start, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_claimant, args=(tmp_path, start, out)) for _ in range(2)]
    for p in procs:
        p.start()
    got = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    winners = [pid for pid, todo, _ in got if todo == [CELL.key]]
    assert len(winners) == 1, got
    (loser,) = [skipped for _pid, todo, skipped in got if not todo]
    assert loser == {CELL.key: ("claimed", f"running (pid {winners[0]})")}
    # released: the next sweep claims it again
    with Claims(tmp_path) as claims:
        assert select([CELL], tmp_path, claims, queued={})[0] == [CELL]


def test_a_cell_that_is_not_run_is_released(tmp_path):
    CellStore(tmp_path, CELL).write(status="done")
    with Claims(tmp_path) as mine:
        assert select([CELL], tmp_path, mine, queued={})[1][CELL.key].kind == "done"
        assert Claims(tmp_path).take(CELL) is None  # nobody holds a done cell
