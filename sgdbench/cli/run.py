"""``sgdbench run``: a grid (or a suite) trained, or listed with ``--dry-run``."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sgdbench.cli.base import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    Command,
    Engine,
    Executor,
    Flag,
    _fail,
    app,
)
from sgdbench.errors import SgdbenchError, UsageError

if TYPE_CHECKING:
    from sgdbench.spec import Grid

if TYPE_CHECKING:
    from sgdbench.executors import ExecutorOptions
    from sgdbench.runner import GridOutcome


@app.command(cls=Command)
def run(
    grid: Annotated[Path, typer.Argument(help="grid file (TOML)")],
    out: Annotated[
        str | None, typer.Option("--out", help="results folder [results/<name>]")
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs", "-j", min=1, help="worker processes (N > 1 implies --executor process)"
        ),
    ] = None,
    executor: Annotated[
        Executor | None,
        typer.Option(help="serial | process | dask (default: serial; process with --jobs N > 1)"),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(help="Dask scheduler address, e.g. tcp://HOST:8786 (implies dask)"),
    ] = None,
    threads_per_job: Annotated[
        int | None,
        typer.Option(
            min=1,
            help='threads per worker for runs with threads = "auto" (default: cores // workers)',
        ),
    ] = None,
    always_parallel: Annotated[
        bool,
        Flag(
            "--always-parallel",
            help="start workers even for a grid too short to repay them (by default such a "
            "grid runs in this process)",
        ),
    ] = False,
    engine: Annotated[
        Engine | None, typer.Option(help="training engine [default: the grid's, else eager]")
    ] = None,
    repeat: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=1000,
            help="train each run N times (same seed, identical losses) and keep every timing "
            "[default: the grid's [train] repeat, else 1]",
        ),
    ] = None,
    dry_run: Annotated[bool, Flag("--dry-run", help="print the expanded runs only")] = False,
    force: Annotated[bool, Flag("--force", help="rerun runs already complete")] = False,
    allow_new_problem: Annotated[
        bool,
        Flag(
            "--allow-new-problem",
            help="write into a results folder that holds another problem's runs (reports show "
            "the newest grid's runs; --all shows both)",
        ),
    ] = False,
    fail_fast: Annotated[bool, Flag("--fail-fast", help="stop at the first failed run")] = False,
    max_consecutive_failures: Annotated[
        int,
        typer.Option(
            "--max-consecutive-failures",
            "-F",
            min=0,
            metavar="N",
            help="stop the grid after this many failed runs in a row (0: never)",
        ),
    ] = 0,
    quiet: Annotated[bool, Flag("--quiet", "-q", help="no progress bar")] = False,
    verbose: Annotated[bool, Flag("--verbose", "-v", help="tracebacks on errors")] = False,
) -> None:
    """Train every run of a grid and write results/<name>/.

    Example: sgdbench run experiments/quickstart.toml --jobs 4

    On a Dask cluster: sgdbench run grid.toml --executor dask --scheduler tcp://HOST:8786
    """
    from sgdbench.suite import is_suite

    if is_suite(grid):
        _run_suite(
            grid,
            out,
            (executor, jobs, scheduler, threads_per_job, always_parallel),
            engine=engine.value if engine else None,
            dry_run=dry_run,
            verbose=verbose,
            force=force,
            fail_fast=fail_fast,
            max_consecutive_failures=max_consecutive_failures,
            progress=not quiet,
            allow_new_problem=allow_new_problem,
        )
    try:
        from sgdbench import gridfile

        gridfile.load(grid)  # the cheap checks first: a bad file exits without importing torch
        from sgdbench.plan import load_grid

        chosen, options = _executor_options(
            executor, jobs, scheduler, threads_per_job, always_parallel
        )
        loaded = load_grid(grid, engine=engine.value if engine else None)
        if repeat is not None:  # not part of run_id: the same runs, timed more often
            runs = [dataclasses.replace(s, repeat=repeat) for s in loaded.runs]
            loaded = dataclasses.replace(loaded, runs=runs)
        for note in loaded.notes:
            print(f"sgdbench: {note}", file=sys.stderr)
        if dry_run:
            _print_dry_run(loaded)
            raise typer.Exit(EXIT_OK)
        from sgdbench.runner import run_grid

        if out is not None and not out.strip():
            raise UsageError("--out: empty folder name (it would write into the current folder)")
        out_dir = Path(out) if out is not None else Path("results") / loaded.name
        outcome = run_grid(
            loaded,
            out_dir,
            force=force,
            executor=chosen.value,
            options=options,
            fail_fast=fail_fast,
            max_consecutive_failures=max_consecutive_failures,
            progress=not quiet,
            allow_new_problem=allow_new_problem,
        )
    except KeyboardInterrupt:
        print("sgdbench: interrupted; finished runs are kept", file=sys.stderr)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except SgdbenchError as e:
        raise _fail(e, verbose) from None
    _print_outcome(outcome, out_dir, has_target=any(s.target_loss is not None for s in loaded.runs))
    raise typer.Exit(outcome.exit_code)


def _print_outcome(outcome: GridOutcome, out_dir: Path, has_target: bool = True) -> None:
    counts = ", ".join(f"{n} {status}" for status, n in sorted(outcome.counts.items()))
    ran = sum(outcome.counts.values())
    print(f"sgdbench: {ran} run(s) into {out_dir}: {counts or 'nothing to do'}", file=sys.stderr)
    for why, n in outcome.skipped.items():  # one line per reason: a 100-run grid says it once
        print(f"  skipped {n} run(s): {why}", file=sys.stderr)
    for run_id, message in outcome.stalled:
        print(f"  stalled {run_id}: {message}", file=sys.stderr)
    for run_id, message in outcome.failures:
        print(
            f"  failed {run_id}: {message} (traceback: {out_dir}/logs/{run_id}.log)",
            file=sys.stderr,
        )
    if ran and not has_target and outcome.counts.get("ok"):
        # No target, no headline winner: the summary is the command alone (reading the
        # results would import pandas, most of a short grid's time beyond torch).
        print(f"sgdbench: full report: sgdbench report {out_dir}", file=sys.stderr)
    elif ran:  # before why the grid stopped early, which stays the last line
        _print_run_summary(out_dir)
    if outcome.interrupted:
        print("sgdbench: interrupted; finished runs are kept, rerun to continue", file=sys.stderr)
    if outcome.stopped_early:
        print(f"sgdbench: {outcome.stopped_early}", file=sys.stderr)


def _run_suite(
    path: Path,
    out: str | None,
    executor_args: tuple[Executor | None, int | None, str | None, int | None, bool],
    *,
    engine: str | None,
    dry_run: bool,
    verbose: bool,
    **run_options: object,
) -> None:
    """``sgdbench run SUITE.toml``: every member grid into ``DIR/<label>/`` (see sgdbench.suite)."""
    from sgdbench.suite import load_suite, run_suite

    try:
        chosen, options = _executor_options(*executor_args)
        suite = load_suite(path, engine=engine)
        for member in suite.members:
            for note in member.grid.notes:
                print(f"sgdbench: {member.label}: {note}", file=sys.stderr)
        if dry_run:
            for member in suite.members:
                print(f"== {member.label}")
                _print_dry_run(member.grid)
            raise typer.Exit(EXIT_OK)
        if out is not None and not out.strip():
            raise UsageError("--out: empty folder name (it would write into the current folder)")
        out_dir = Path(out) if out is not None else Path("results") / suite.name
        outcomes = run_suite(suite, out_dir, executor=chosen.value, options=options, **run_options)
    except KeyboardInterrupt:
        print("sgdbench: interrupted; finished runs are kept", file=sys.stderr)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except SgdbenchError as e:
        raise _fail(e, verbose) from None
    for label, outcome in outcomes:
        _print_outcome(outcome, out_dir / label)
    codes = [outcome.exit_code for _, outcome in outcomes]
    raise typer.Exit(EXIT_INTERRUPTED if EXIT_INTERRUPTED in codes else max(codes, default=EXIT_OK))


def _executor_options(
    executor: Executor | None,
    jobs: int | None,
    scheduler: str | None,
    threads: int | None,
    always_parallel: bool = False,
) -> tuple[Executor, ExecutorOptions]:
    """The executor the options ask for, or a UsageError for combinations that mean nothing."""
    from sgdbench.executors import ExecutorOptions

    if executor is None:
        if scheduler:
            executor = Executor.dask
        elif jobs is not None and jobs > 1:
            executor = Executor.process
        else:
            executor = Executor.serial
    if scheduler and executor is not Executor.dask:
        raise UsageError(f"sgdbench: --scheduler needs --executor dask, not {executor.value}")
    if executor is Executor.serial and ((jobs or 1) > 1 or threads is not None or always_parallel):
        raise UsageError(
            "sgdbench: --executor serial runs in this process: --jobs, --threads-per-job and "
            "--always-parallel need --executor process or dask"
        )
    if executor is Executor.dask and scheduler and jobs is not None:
        raise UsageError(
            "sgdbench: --jobs sizes a local Dask cluster; with --scheduler the cluster's "
            "workers run the grid"
        )
    options = ExecutorOptions(
        jobs=jobs, threads_per_job=threads, scheduler=scheduler, always_parallel=always_parallel
    )
    return executor, options


def _print_dry_run(grid: Grid) -> None:
    from sgdbench.text_table import TextTable, render_table

    axes = list(grid.axes) or ["optimizer", "lr"]
    if any(s.engine != "eager" for s in grid.runs):
        axes.append("engine")  # which runs --engine auto|stacked stacks, and which stay eager
    if grid.search.trials:
        axes.append("trial")  # which sampled configuration each run belongs to
    header = ["run_id", *axes]
    rows = [[s.run_id, *(str(s.axes.get(a, getattr(s, a, ""))) for a in axes)] for s in grid.runs]
    # Every column names the run (left-aligned, repeated if the table is split), no rule:
    # the output stays easy to grep and awk.
    table = TextTable(header, rows, n_labels=1)
    sys.stdout.write(render_table(table, boxed=False))
    from sgdbench.search import budget_line

    print(
        f"{len(grid.runs)} run(s) in grid {grid.name!r}, {budget_line(grid.search, grid.runs)} "
        "(dry run: nothing written)",
        file=sys.stderr,
    )


def _print_run_summary(out_dir: Path) -> None:
    """The end of ``sgdbench run``: the headline winner and the command for the full report."""
    from sgdbench import report as report_mod
    from sgdbench.report.headline import DECIDED

    try:
        _, _, head = report_mod.build(out_dir, quiet=True)
    except SgdbenchError:
        return  # nothing trained (all failed or skipped): the counts above say it
    if head.fastest:
        what = DECIDED[head.decided_by or "steps"]
        print(
            f"sgdbench: fastest to loss ≤ {head.target_loss:g}: "
            f"{head.fastest['configuration']} ({what})",
            file=sys.stderr,
        )
    elif head.target_loss is not None:
        print(f"sgdbench: no configuration reached loss ≤ {head.target_loss:g}", file=sys.stderr)
    print(f"sgdbench: full report: sgdbench report {out_dir}", file=sys.stderr)
