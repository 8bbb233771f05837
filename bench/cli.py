"""``python -m bench``: plan, run, pilot, status, cancel, table, config, compare, perf, export.
``--help`` on each."""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from bench.cellstore import CellStore
from bench.plan.cells import (
    DETECTORS,
    VARIANTS,
    MatrixError,
    list_help,
    parse_list,
    parse_seeds,
)
from bench.plan.options import Options, check_log
from bench.plan.settings import load_profile, profiles
from bench.repo import default_results


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("matrix")
    g.add_argument("--profile", default="smoke", help=f"one of: {', '.join(profiles())} "
                   "(default: smoke)")
    g.add_argument("--results", type=Path, help="result store (default: results/<profile>)")
    g.add_argument("--data-root", help="a COCO-layout folder (annotations/instances_{train,val}"
                   "2017.json, train2017/, val2017/); default: the profile's own data")
    g.add_argument("--detectors", help=list_help(DETECTORS))
    g.add_argument("--variants", help=list_help(VARIANTS))
    g.add_argument("--seeds", help="a count (3 -> seeds 0,1,2) or a list (0,7); default: 0")
    g.add_argument("--baseline-seeds", type=int, metavar="N",
                   help="the baselines train N seeds per seed named (the seeds and the next "
                   "ones: their stock heads are the noisiest cells); default: the profile's "
                   "(smoke 2, else 1)")
    g.add_argument("--pretrained", help="starting weights: torchvision://resnet50, a local "
                   "checkpoint path, synthetic:// (the profile's warm start) or none "
                   "(default: the profile's)")
    g.add_argument("--lcconv-padding", type=int, choices=(0, 1),
                   help="cls/loc conv padding: 0 = faithful to the released models, "
                   "1 = corrected (default: the profile's)")
    g.add_argument("--log", metavar="NAMES", help="training curves also to these backends, "
                   "offline, into each cell's folder: tensorboard, mlflow (comma-separated; "
                   "default: only mmengine's own scalars.json)")
    g.add_argument("--max-iters", type=int, help="train this many iterations instead of the "
                   "profile's schedule (an epoch schedule becomes an iteration schedule with its "
                   "steps at the same fractions: another config, another hash)")
    g = p.add_argument_group("layout (one process per device; the total batch nodes x tasks x "
                             "images per device sets the lr, scaled linearly from the profile's)")
    g.add_argument("--nodes", type=int, help="nodes per cell (default: the profile's, 1)")
    g.add_argument("--tasks-per-node", type=int, help="processes per node; with GPUs one per GPU "
                   "(default: the profile's: 8, or 4 with iBN, for paper; 1 for smoke)")
    g.add_argument("--gpus-per-node", type=int, help="GPUs per node asked from SLURM, one task "
                   "each (default: the profile's; 0 = CPU processes, gloo)")
    g = p.add_argument_group("released checkpoints")
    g.add_argument("--from-checkpoints", metavar="DIR", help="the authors' mmdet-1.1 "
                   "checkpoints in DIR instead of training: the cells with a file there are "
                   "converted, evaluated and timed (source 'released')")
    g.add_argument("--manifest", metavar="FILE", help="which file is which cell (TOML; default: "
                   "DIR/released.toml, else experiments/released.toml, the authors' models)")


def _selection(args, notes: list[str] | None = None,
               sweep_default: bool = False) -> tuple[list, Path, Options]:
    """The cells, results folder and options the arguments name; ``notes`` collects the
    selected released cells that have no checkpoint. ``sweep_default``: with no cell named on
    the command line, the cells the results folder's sweep.json recorded (if any)."""
    if args.profile not in profiles():
        raise MatrixError(f"unknown profile {args.profile!r} (known: {', '.join(profiles())})")
    detectors = parse_list(args.detectors, DETECTORS, "detector")
    variants = parse_list(args.variants, VARIANTS, "variant") if args.variants else None
    if args.from_checkpoints:
        from bench.plan.manifest import released_cells

        for flag, value in (("--seeds", args.seeds), ("--baseline-seeds", args.baseline_seeds),
                            ("--pretrained", args.pretrained),
                            ("--max-iters", args.max_iters)):
            if value is not None:
                raise MatrixError(f"{flag} does not apply to --from-checkpoints (nothing "
                                  "trains: one released model per cell)")
        if args.lcconv_padding == 1:
            raise MatrixError("--lcconv-padding 1 does not apply to --from-checkpoints: the "
                              "released models were trained with the faithful padding 0")
        chosen, missing = released_cells(args.profile, detectors,
                                         variants or parse_list(None, VARIANTS, "variant"),
                                         args.from_checkpoints, args.manifest)
        if notes is not None:
            notes.extend(missing)
    elif args.manifest:
        raise MatrixError("--manifest needs --from-checkpoints DIR")
    else:
        from bench import cells  # the profile's baseline seeds unless --baseline-seeds

        chosen = cells(args.profile, detectors, variants, parse_seeds(args.seeds),
                       args.baseline_seeds)
    results = (args.results or default_results(args.profile)).resolve()
    if sweep_default and not (args.detectors or args.variants or args.seeds
                              or args.baseline_seeds is not None or args.from_checkpoints):
        chosen = _sweep_cells(args.profile, results) or chosen
    opts = Options(data_root=args.data_root, pretrained=args.pretrained,
                   lcconv_padding=args.lcconv_padding, max_iters=args.max_iters,
                   nodes=args.nodes, tasks_per_node=args.tasks_per_node,
                   gpus_per_node=args.gpus_per_node,
                   log=check_log(tuple(n.strip() for n in (args.log or "").split(",")
                                       if n.strip())),
                   checkpoints=(str(Path(args.from_checkpoints).expanduser().resolve())
                                if args.from_checkpoints else None),
                   manifest=(str(Path(args.manifest).expanduser().resolve())
                             if args.manifest else None))
    if opts.pretrained:
        from bench.plan.weights import check_pretrained

        check_pretrained(opts.pretrained)
    return chosen, results, opts


def _sweep_cells(profile: str, results: Path) -> list:
    """The cells sweep.json records in ``results``, in table order."""
    from bench.plan.cells import Cell
    from reports.schema import read_json

    keys = (read_json(results / "sweep.json") or {}).get("cells", {})
    return sorted(Cell.from_key(profile, k) for k in keys)


def _print_notes(notes: list[str]) -> None:
    for line in notes:
        print(f"no checkpoint for {line} (shown as missing)", file=sys.stderr)


def _print_rows(rows: list[dict], as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows, indent=1, default=str))
        return
    if not rows:
        print("(nothing)")
        return
    cols = list(rows[0])
    text = [[("" if r[c] is None else str(r[c])) for c in cols] for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in text)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for t in text:
        print("  ".join(v.ljust(w) for v, w in zip(t, widths)))


# -- commands --------------------------------------------------------------------------------
def cmd_plan(args) -> int:
    from bench.plan import lr_notes, plan

    notes: list[str] = []
    chosen, _, opts = _selection(args, notes)
    _print_notes(notes)
    planned = plan(chosen, opts)
    _print_lr_notes(lr_notes(planned))
    _print_rows([p.row() for p in planned], args.json)
    if not args.json:  # before GPU-days: what one seed per cell can and cannot confirm
        from reports.comparable import confirmable_lines

        for line in confirmable_lines(args.profile):
            print(line, file=sys.stderr)
    return 0


def _print_lr_notes(lines: list[str], file=None) -> None:
    for line in lines:
        print(f"note: {line}", file=file or sys.stderr)


def _slurm_options(args):
    from bench.schedule.slurm import SlurmOptions

    return SlurmOptions(partition=args.partition, account=args.account, qos=args.qos,
                        time_min=args.time, cpus_per_task=args.cpus_per_task, mem_gb=args.mem_gb,
                        constraint=args.constraint, array_parallelism=args.array_parallelism,
                        extra=args.sbatch_arg or [])


def cmd_run(args) -> int:
    from bench.flow import run_cells
    from bench.plan import lr_notes, plan

    notes: list[str] = []
    chosen, results, opts = _selection(args, notes)
    _print_notes(notes)
    # Resolves every config: bad input (names, data, layout) fails here, before anything runs.
    plans = plan(chosen, opts)

    def go(out) -> None:  # every check passed: the lr notes, then what is run or submitted
        if out.cancelled:
            print(f"cancelled {len(out.cancelled)} queued SLURM jobs first: "
                  f"{' '.join(out.cancelled)}")
        # stdout, with the rest of what the run does: stderr holds only a refusal's one line
        _print_lr_notes(lr_notes(plans), file=sys.stdout)
        if args.dry_run and args.executor == "slurm":
            for params, group in out.groups:
                print(json.dumps(dict(cells=[p.key for p in group], sbatch=params), indent=1))
        elif args.dry_run:
            print("\n".join(f"would run {p.key}" for p in out.todo) or "nothing to run")

    out = run_cells(plans, results, args.executor, force=args.force,
                    retry_failed=args.retry_failed, jobs=_jobs(args) if args.executor == "local"
                    else 1, slurm=_slurm_options(args), dry_run=args.dry_run,
                    progress=not args.quiet, refresh_report=True,
                    on_skip=lambda key, skip: print(f"skip {key}: {skip.why}"), on_go=go)
    if args.dry_run:
        return 0
    if not out.todo:
        print(f"nothing to run: {len(chosen)} cells in {results} (--force to rerun)")
        return 0
    if args.executor == "slurm":
        for key, jid in out.statuses.items():
            print(f"submitted {key}: job {jid}")
        print(f"{len(out.statuses)} cells submitted; `python -m bench status --profile "
              f"{args.profile} --results {results}` shows progress")
        return 0
    bad = {k: s for k, s in out.statuses.items() if s != "done"}
    print(f"{len(out.statuses) - len(bad)}/{len(out.statuses)} cells done in {results}")
    return 1 if bad else 0


def cmd_pilot(args) -> int:
    """Each cell for a few iterations, then the forecast of the full sweep's cost."""
    import dataclasses

    from bench.flow import check_local
    from bench.plan import plan_cell
    from bench.schedule.local import run_local
    from bench.schedule.slurm import queued_cells, submit_slurm
    from bench.schedule.state import reset
    from reports.forecast import read_pilots, render_text

    notes: list[str] = []
    chosen, results, opts = _selection(args, notes)
    _print_notes(notes)
    store = results / "pilot"
    if args.show:
        print(render_text(read_pilots(results)))
        return 0
    if args.iters < 1 or args.val_images < 1:
        raise MatrixError("--iters and --val-images must be at least 1")
    if args.max_iters is not None:
        raise MatrixError("--max-iters does not apply to a pilot: --iters sets its length, and "
                          "the forecast is for the profile's full schedule")
    if any(c.source == "released" for c in chosen):
        raise MatrixError("a pilot trains: it does not apply to --from-checkpoints")
    pilot = dataclasses.replace(opts, pilot_iters=args.iters, val_images=args.val_images)
    if args.executor == "local":  # one process; the forecast is for the cell's own layout
        pilot = dataclasses.replace(pilot, nodes=1, tasks_per_node=1, gpus_per_node=None)
    # the full cells, then their pilots: data, names and layout checked before anything runs
    pilots = [plan_cell(c, pilot, full=plan_cell(c, opts)) for c in chosen]
    if args.executor == "local":
        check_local(pilots)
    # A pilot is a measurement: it runs again every time, unless its last one is still queued.
    queued = queued_cells(store)
    todo = [p for p in pilots if p.key not in queued]
    for key in (p.key for p in pilots if p.key in queued):
        print(f"skip {key}: pilot {queued[key]}", file=sys.stderr)
    for p in todo:
        reset(store, p.cell)
    store.mkdir(parents=True, exist_ok=True)
    print(f"pilot of {len(todo)} cells of profile {args.profile}: {args.iters} iterations, "
          f"{args.val_images} validation images each -> {store}", file=sys.stderr)
    if args.executor == "slurm":
        ids = submit_slurm(todo, store, _slurm_options(args))
        for key, jid in ids.items():
            print(f"submitted pilot {key}: job {jid}", file=sys.stderr)
        if args.no_wait:
            print(f"`python -m bench pilot --show --profile {args.profile} --results {results}` "
                  "prints the forecast once they finish")
            return 0
        _wait_for([p.cell for p in todo], store)
    else:
        run_local(todo, store, jobs=_jobs(args), progress=not args.quiet)
    print(render_text(read_pilots(results)))
    rows = [(CellStore(store, p.cell).read() or {}).get("status") for p in todo]
    return 0 if all(r == "done" for r in rows) else 1


def _wait_for(cells_: list, store: Path, poll_s: float = 5.0) -> None:
    """Until every cell has ended (done, failed, cancelled), a line whenever one changes."""
    import time

    from bench.schedule.state import status_rows
    from reports.schema import ACTIVE

    seen: dict[str, str] = {}
    try:
        while True:
            rows = status_rows(cells_, store)
            for r in rows:
                if seen.get(r["cell"]) != r["status"]:
                    seen[r["cell"]] = r["status"]
                    print(f"{r['cell']}: {r['status']} {r['detail']}".rstrip(), file=sys.stderr)
            if all(r["status"].split()[0] not in (*ACTIVE, "not") for r in rows):
                return
            time.sleep(poll_s)
    except KeyboardInterrupt:
        print("\nstopped waiting; the pilot jobs go on (`bench pilot --show` prints the "
              "forecast later, `bench cancel --results RESULTS/pilot` cancels them)",
              file=sys.stderr)
        raise SystemExit(130) from None


def _jobs(args) -> int:
    """--jobs, else as many cells at once as the cores hold at the profile's threads per cell."""
    if args.jobs:
        return args.jobs
    from bench.schedule.state import env_threads

    return max(1, env_threads() // (load_profile(args.profile).settings.threads or env_threads()))


def cmd_status(args) -> int:
    from bench.schedule.state import status_rows

    chosen, results, _ = _selection(args, sweep_default=True)
    _print_rows(status_rows(chosen, results), args.json)
    return 0


def cmd_cancel(args) -> int:
    from bench.schedule.slurm import cancel

    chosen, results, _ = _selection(args)
    ids = cancel(results, [c.key for c in chosen])
    print(f"cancelled {len(ids)} SLURM jobs" + (f": {' '.join(ids)}" if ids else ""))
    return 0


def _classes(args, chosen, results: Path, opts) -> list[str] | None:
    """``--classes``, checked against the store's classes and the dataset's categories (when
    its annotation file is there): an unknown name fails before any cell runs."""
    if not args.classes:
        return None
    from reports.breakdown import check_classes
    from reports.store import read_results

    categories: list[str] = []
    if chosen:
        from bench.plan.resolve import resolve

        ann = Path(resolve(chosen[0], opts).val_evaluator["ann_file"])
        if ann.is_file():
            categories = [c["name"] for c in json.loads(ann.read_text())["categories"]]
    return check_classes(
        read_results(results),
        [c.strip() for c in args.classes.split(",") if c.strip()],
        also_known=categories,
    )


def _run_missing(args, chosen: list, results: Path, opts: Options) -> None:
    """Train, here, the chosen cells the store does not have yet (``--run-missing``)."""
    from bench.flow import check_store, run_cells
    from bench.plan import plan

    plans = plan(chosen, opts)
    _classes(args, chosen, results, opts)  # an unknown class fails before any cell runs
    # a done cell of another recipe is not this request's: said before anything runs
    way_out = ("tabulate it with the options it was trained with, or pass --results DIR for "
               "this request")
    check_store(plans, results, way_out)

    def skipped(key: str, skip) -> None:  # never a cell the scheduler still holds
        if skip.kind in ("queued", "claimed"):
            print(f"not run here: {key}: {skip.why}", file=sys.stderr)

    def elsewhere(out) -> None:
        if out.several_devices:
            print(f"not run here: {len(out.several_devices)} missing cells of profile "
                  f"{args.profile} train on several devices "
                  f"({out.several_devices[0].layout.describe()}); submit them with "
                  f"`python -m bench run --executor slurm --profile {args.profile}`",
                  file=sys.stderr)

    def go(out) -> None:
        elsewhere(out)
        print(f"running {len(out.todo)} missing cells of profile {args.profile} into {results}",
              file=sys.stderr)

    out = run_cells(plans, results, "local", jobs=_jobs(args), progress=True,
                    refresh_report=True, leave_several_devices=True, way_out=way_out,
                    on_skip=skipped, on_go=go)
    if not out.todo:
        elsewhere(out)  # a sweep stopped while timing: its cells are timed now
        from bench.run.timing import time_local

        time_local(results, chosen)


def cmd_spread(args) -> int:
    """Each selected cell's seed spread, pooled: the profile's training noise for one-seed
    claims (experiments/noise.py), printed as the entry to put there."""
    from reports.compare import measured_spread
    from reports.store import read_results

    if args.seeds is None:
        args.seeds = "3"
    chosen, results, opts = _selection(args)
    if len({c.seed for c in chosen}) < 2:
        raise MatrixError("--seeds must name at least two seeds (e.g. 3, or 0,1,2)")
    if args.run_missing:
        _run_missing(args, chosen, results, opts)
    wanted = {c.key for c in chosen}
    df = read_results(results) if results.is_dir() else None
    if df is None or df.empty:
        raise MatrixError(f"no results in {results} (pass --run-missing to train the seeds)")
    df = df[df["cell_key"].isin(wanted)]
    per_cell, spreads, worst = measured_spread(df)
    print(per_cell.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    iters = sorted({int(i) for i in df["train_iters"].dropna()})
    if len(iters) != 1:
        raise MatrixError(f"the cells trained different numbers of iterations ({iters}): one "
                          "spread is for one recipe")
    from bench.cellstore import now

    # what the spread was measured on, as the store holds it (not as the request asked)
    shape = " + ".join(f"{n} cells x {k} seeds" for k, n in sorted(
        per_cell["seeds"].value_counts().items(), key=lambda kv: -kv[1]))
    commits = ", ".join(sorted({str(c)[:7] for c in df.get("git_commit", []) if c})) or "unknown"
    entry = dict(
        profile=args.profile, iters=iters[0],
        sd={m: round(sp.sd, 3) for m, sp in spreads.items()},
        dof=next(iter(spreads.values())).dof, measured=now()[:10],
        command="python -m bench " + shlex.join(args.argv),
        basis=f"{shape}, commit {commits}, {_machine()}",
        sd_max={m: round(v, 3) for m, v in worst.items()})
    from reports.schema import atomic_write_json

    atomic_write_json(results / "seed_spread.json", entry)
    print(f"\npooled over {len(per_cell)} cells: " + ", ".join(
        f"{m} sd {sp.sd:.2f} ({sp.dof:g} dof)" for m, sp in spreads.items()))
    print("\nthe entry for experiments/noise.py (also in "
          f"{results / 'seed_spread.json'}):\n    SeedSpread(" + ", ".join(
              f"{k}={v!r}" for k, v in entry.items()) + "),")
    return 0


def _machine() -> str:
    import os
    import platform

    model = ""
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((line.split(":", 1)[1].strip() for line in fh
                          if line.startswith("model name")), "")
    except OSError:
        pass
    return ", ".join(filter(None, [model, platform.machine(),
                                   f"{len(os.sched_getaffinity(0))} cores"]))


def cmd_table(args) -> int:
    from reports.build import build_report

    notes: list[str] = []
    chosen, results, opts = _selection(args, notes)
    _print_notes(notes)
    if args.run_missing:
        _run_missing(args, chosen, results, opts)
    if not results.is_dir():
        print(f"error: no results in {results} (run `python -m bench run --profile "
              f"{args.profile}` or pass --run-missing)", file=sys.stderr)
        return 2
    paths = build_report(results, args.out or results / "report", echo=True,
                         classes=_classes(args, chosen, results, opts))
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def cmd_config(args) -> int:
    """Print each cell's resolved config, or write each as an mmdet config file (--export)."""
    from bench.plan.export import export_config
    from bench.plan.resolve import resolve

    chosen, _, opts = _selection(args)
    if args.export:
        for cell in chosen:
            print(export_config(cell, opts, args.export))
        return 0
    from bench.plan.config import config_hash

    for cell in chosen:
        cfg = resolve(cell, opts)
        print(f"# {cell.key}  config_hash={config_hash(cfg)}")
        print(cfg.pretty_text)
    return 0


def _cell_rows(results: Path, name: str) -> list[dict]:
    """The done rows a compare argument names: a cell folder or key (one seed), or
    detector/variant[/seed][/released] (without a seed: every seed in the store)."""
    from reports.schema import cell_key, read_json

    path = Path(name)
    if (path / "result.json").is_file():
        rows, where = [read_json(path / "result.json")], path.parent
        if where.resolve() != results.resolve():
            raise MatrixError(f"cell {name!r} is not in the results folder {results} (pass "
                              f"--results {where})")
    else:
        parts = name.split("/")
        source = parts.pop() if len(parts) > 2 and parts[-1] == "released" else "trained"
        if len(parts) == 1:
            keys = [name]
        elif len(parts) == 3 and parts[2].isdigit():
            keys = [cell_key(parts[0], parts[1], int(parts[2]), source)]
        elif len(parts) == 2:
            keys = sorted(d.name for d in results.iterdir() if d.is_dir() and _is_seed_of(
                d.name, parts[0], parts[1], source)) if results.is_dir() else []
        else:
            raise MatrixError(f"cell {name!r}: expected a key (retinanet__sepc__s0), "
                              "detector/variant[/seed][/released] or a cell folder")
        rows = [r for r in (read_json(results / k / "result.json") for k in keys) if r]
    if not rows:
        raise MatrixError(f"no result for cell {name!r} in {results}")
    for row in rows:
        if row.get("status") != "done":
            raise MatrixError(f"cell {row.get('cell_key')} is {row.get('status')}, not done")
    return rows


def _is_seed_of(key: str, detector: str, variant: str, source: str) -> bool:
    from reports.schema import parse_cell_key

    try:
        k = parse_cell_key(key)
    except ValueError:
        return False
    return (k["detector"], k["variant"], k["source"]) == (detector, variant, source)


def cmd_compare(args) -> int:
    """A minus B by the report summary's claim rule: training noise and image sampling."""
    from reports.compare import compare_cells

    results = (args.results or default_results(args.profile)).resolve()
    a, b = _cell_rows(results, args.a), _cell_rows(results, args.b)
    try:
        res = compare_cells(a, b, results, metrics=("AP", "AP50", "AP75", "AR100"),
                            n_boot=args.n_boot, seed=args.seed, level=args.level)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        raise MatrixError(f"cannot compare {args.a} with {args.b}: {exc}") from None
    if args.json:
        print(json.dumps(dict(a=[r["cell_key"] for r in a], b=[r["cell_key"] for r in b],
                              n_images=res.n_images, n_boot=res.n_boot, level=res.level,
                              metrics={m: dict(vars(iv), claimed=iv.claimed, method=res.method(m))
                                       for m, iv in res.intervals.items()}),
                         indent=1, default=float))
        return 0
    pct = round(100 * args.level)
    print(f"A = {', '.join(r['cell_key'] for r in a)}\nB = {', '.join(r['cell_key'] for r in b)}"
          f"\n({res.n_images} images, {res.n_boot} paired resamples, seed {args.seed})")
    print(f"{'metric':8} {'A':>7} {'B':>7} {'A-B':>7}   {pct}% interval      verdict")
    for m, iv in res.intervals.items():
        va = sum(res.variant_values[m]) / len(res.variant_values[m])
        vb = sum(res.baseline_values[m]) / len(res.baseline_values[m])
        if iv.rule is None:
            line, verdict = f"{'':18}", f"no claim: {iv.why}"
        else:
            line = f"[{iv.lo:+6.2f}, {iv.hi:+6.2f}]"
            verdict = ("claimed" if iv.claimed else "no resolvable difference") + f" ({iv.rule})"
        print(f"{m:8} {va:7.2f} {vb:7.2f} {iv.point:+7.2f}   {line}   {verdict}")
    print(f"rule: {res.method('AP')}")
    if res.spread is not None:
        print(f"training noise of one seed: {res.spread.describe()}")
    for label, rows in (("A", a), ("B", b)):
        row = rows[0]
        lat = row.get("latency_ms")
        print(f"{label}: latency {lat:.1f} ms" if lat else f"{label}: latency n/a", end="")
        print(f", params {row.get('params')}, config {row.get('config_hash')}")
    return 0


def cmd_export(args) -> int:
    """Each selected cell as an ONNX graph (bench/run/onnx.py), optionally checked on ONNX
    Runtime."""
    from bench.run import onnx

    chosen, results, opts = _selection(args)
    return onnx.export_cells(chosen, results, opts, args.onnx.resolve(), args.random,
                             args.check, args.threads)


def _perf_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `perf` (checked in bench/run/benchmark.py, which imports torch: not at
    start-up)."""
    p.add_argument("--detectors", help=list_help(DETECTORS))
    p.add_argument("--variants", help=list_help(VARIANTS) + "; the baseline is added for the "
                   "ratios")
    p.add_argument("--sizes", default="paper,smoke", help="comma list of paper (800x1333 -> "
                   "800x1344, R-50 paper models), paper-1216 (the same models at 800x1216) and "
                   "smoke (256x256, smoke models); default paper,smoke")
    p.add_argument("--runtime", default="torch", help="torch (default), onnxruntime (each "
                   "variant's ONNX graph on ONNX Runtime's CPU provider, --threads intra-op "
                   "threads), or torch,onnxruntime: both, interleaved")
    p.add_argument("--device", help="cpu or cuda[:N] (default: cuda if available)")
    p.add_argument("--dtype", choices=("fp32", "fp16"), default="fp32",
                   help="fp16 = torch.autocast on CUDA (default fp32)")
    p.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    p.add_argument("--warmup", type=int, help="model-step warm-up rounds (cpu 2, cuda 20)")
    p.add_argument("--reps", type=int, help="model-step timed rounds (cpu 7, cuda 100)")
    p.add_argument("--batch", type=int, default=8, help="images per batch of the paper's "
                   "protocol (default 8)")
    p.add_argument("--batch-warmup", type=int, help="batch protocol warm-up (cpu 1, cuda 10)")
    p.add_argument("--batch-reps", type=int, help="batch protocol rounds (cpu 3, cuda 50)")
    p.add_argument("--batch-sizes", help="sizes the batch protocol runs at, or 'none' "
                   "(cpu: smoke, cuda: paper,smoke)")
    p.add_argument("--no-fuse", action="store_true", help="keep BN unfolded (all variants)")
    p.add_argument("--channels-last", action="store_true", help="channels-last memory for "
                   "all variants")
    p.add_argument("--no-flops", action="store_true", help="skip the FLOP count")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory step")
    p.add_argument("--out", type=Path, help="folder for perf.json and perf.md (default: "
                   "results/smoke, where the smoke report picks them up)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def cmd_perf(args) -> int:
    from bench.run import benchmark as perf

    return perf.main(args)


def _slurm_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("slurm (defaults: the profile's `slurm` settings)")
    g.add_argument("--partition")
    g.add_argument("--account")
    g.add_argument("--qos")
    g.add_argument("--time", type=int, metavar="MIN", help="time limit in minutes")
    g.add_argument("--cpus-per-task", type=int)
    g.add_argument("--mem-gb", type=float)
    g.add_argument("--constraint")
    g.add_argument("--array-parallelism", type=int, help="max array tasks running at once")
    g.add_argument("--sbatch-arg", action="append", metavar="KEY=VALUE",
                   help="extra sbatch option, repeatable (e.g. exclude=node3)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description="sepc-bench: the SEPC "
                                "ablation matrix, run locally or on SLURM.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sp = sub.add_parser("plan", help="list the cells of a profile with their hyper-parameters")
    _common(sp)
    sp.add_argument("--json", action="store_true", help="JSON instead of a table")
    sp.set_defaults(func=cmd_plan)

    sp = sub.add_parser("run", help="run the cells (local) or submit them (slurm)")
    _common(sp)
    sp.add_argument("--executor", choices=("local", "slurm"), default="local")
    sp.add_argument("--jobs", type=int, help="local cells run at once (default: cores / the "
                    "profile's threads per cell)")
    sp.add_argument("--force", action="store_true", help="rerun done cells from scratch")
    sp.add_argument("--retry-failed", action="store_true", help="rerun only failed/cancelled "
                    "cells")
    sp.add_argument("--dry-run", action="store_true", help="print what would run (sbatch "
                    "parameters for slurm) and submit nothing")
    sp.add_argument("--quiet", action="store_true", help="no progress bar")
    _slurm_arguments(sp)
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("pilot", help="each cell for a few iterations: seconds per iteration, "
                        "peak memory, and the forecast wall time, GPU-hours and --time of the "
                        "full sweep", description="Runs the real cell code path (the profile's "
                        "model, data pipeline, batch per device and layout) for --iters "
                        "iterations, evaluates --val-images images, times briefly, and "
                        "forecasts the full schedule. Rows go to RESULTS/pilot/, never into "
                        "the table.")
    _common(sp)
    sp.add_argument("--iters", type=int, default=20, help="training iterations (default 20)")
    sp.add_argument("--val-images", type=int, default=50, help="validation images evaluated "
                    "(default 50)")
    sp.add_argument("--executor", choices=("local", "slurm"), default="local",
                    help="local: one process per cell (a multi-GPU cell is forecast from one "
                    "device); slurm: the cell's own layout")
    sp.add_argument("--jobs", type=int, help="local pilots run at once")
    sp.add_argument("--no-wait", action="store_true", help="slurm: submit and return")
    sp.add_argument("--show", action="store_true", help="print the last pilots' forecast and "
                    "run nothing")
    sp.add_argument("--quiet", action="store_true", help="no progress bar")
    _slurm_arguments(sp)
    sp.set_defaults(func=cmd_pilot)

    sp = sub.add_parser("status", help="one line per cell, from the store and the scheduler")
    _common(sp)
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_status)

    sp = sub.add_parser("cancel", help="scancel the sweep's SLURM jobs (or the selected cells)")
    _common(sp)
    sp.set_defaults(func=cmd_cancel)

    sp = sub.add_parser("spread", help="the seed spread of the selected cells, pooled: the "
                        "profile's training noise for one-seed claims (experiments/noise.py)",
                        description="Reads (with --run-missing: first trains) the selected cells "
                        "with several seeds (--seeds, default 3), prints each cell's seed "
                        "standard deviation and the pooled one, writes RESULTS/seed_spread.json "
                        "and prints the entry for experiments/noise.py (docs/statistics.md).")
    _common(sp)
    sp.add_argument("--run-missing", action="store_true", help="first run, locally, the seeds "
                    "that have no result yet")
    sp.add_argument("--jobs", type=int, help="local cells run at once (default: cores / threads)")
    sp.set_defaults(func=cmd_spread, classes=None)

    sp = sub.add_parser("table", help="the table (terminal, md, csv, tex) and the HTML report")
    _common(sp)
    sp.add_argument("--out", type=Path, help="output folder (default: RESULTS/report)")
    sp.add_argument("--run-missing", action="store_true", help="first run, locally, the cells "
                    "that have no result yet")
    sp.add_argument("--jobs", type=int, help="local cells run at once (default: cores / threads)")
    sp.add_argument("--classes", metavar="NAMES", help="comma-separated class names: the report's "
                    "per-class view shows only these (default: every class)")
    sp.set_defaults(func=cmd_table)

    sp = sub.add_parser("compare", help="A minus B by the summary's claim rule (training noise "
                        "and image sampling; docs/statistics.md)")
    sp.add_argument("a", help="cell A: a key (retinanet__sepc__s0), detector/variant[/seed]"
                    "[/released] (no seed: every seed in the store) or a cell folder")
    sp.add_argument("b", help="cell B (the reference, e.g. retinanet/baseline)")
    sp.add_argument("--profile", default="smoke")
    sp.add_argument("--results", type=Path, help="result store (default: results/<profile>)")
    sp.add_argument("--n-boot", type=int, default=1000, help="resamples (default 1000)")
    sp.add_argument("--seed", type=int, default=0, help="resampling seed (default 0)")
    sp.add_argument("--level", type=float, default=0.95, help="confidence level (default 0.95)")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_compare)

    sp = sub.add_parser(
        "perf",
        help="inference latency, params, FLOPs and memory of every "
        "detector x variant, interleaved, as ratios to the baseline",
        description="Speed benchmark of the detectors at the paper's and the "
        "smoke size (random weights; see bench/run/benchmark.py). Writes perf.json and "
        "perf.md.",
    )
    _perf_arguments(sp)
    sp.set_defaults(func=cmd_perf)

    sp = sub.add_parser("export", help="each cell as an ONNX graph of standard ops (forward to "
                        "the raw head outputs, dynamic size); --check: parity on ONNX Runtime",
                        description="Writes DIR/<cell>.onnx per selected cell from its trained "
                        "checkpoint in RESULTS (or random weights) and DIR/export.json. --check "
                        "compares ONNX Runtime with PyTorch on the cell's validation images (raw "
                        "outputs within 1e-4, COCO AP within 0.1; exit 1 otherwise).")
    _common(sp)
    sp.add_argument("--onnx", type=Path, required=True, metavar="DIR", help="output folder")
    sp.add_argument("--random", action="store_true", help="random weights instead of the "
                    "cells' checkpoints (nothing needs to be trained)")
    sp.add_argument("--check", action="store_true", help="parity of each graph with PyTorch on "
                    "the validation images (trained cells)")
    sp.add_argument("--threads", type=int, default=1, help="threads of ONNX Runtime and torch in "
                    "the check (default 1)")
    sp.set_defaults(func=cmd_export)

    sp = sub.add_parser("config", help="print the resolved mmengine config of each cell, or "
                        "write each as an mmdet config file (--export DIR)")
    _common(sp)
    sp.add_argument("--export", type=Path, metavar="DIR", help="write DIR/<cell>.py per cell: "
                    "a standalone mmdet 3.x config (needs only `sepc` importable; trains with "
                    "mmdet's tools/train.py)")
    sp.set_defaults(func=cmd_config)
    return p


def main(argv: list[str] | None = None) -> int:
    from bench.data.coco import DataError
    from bench.plan.weights import PretrainedError
    from bench.schedule.slurm import SchedulerError
    from reports.breakdown import UnknownClassError

    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return args.func(args)
    except (MatrixError, DataError, SchedulerError, PretrainedError, UnknownClassError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: every finished cell stays in the store; the same command again "
              "runs only what is missing (an interrupted cell resumes from its last checkpoint)",
              file=sys.stderr)
        return 130
