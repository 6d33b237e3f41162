"""The ``sgdbench`` command line. Heavy imports (torch, pandas) happen inside commands so that
``sgdbench --help`` stays fast."""

from __future__ import annotations

import dataclasses
import os
import sys
import traceback
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sgdbench.errors import SgdbenchError, UsageError

if TYPE_CHECKING:
    from sgdbench.spec import Grid

if TYPE_CHECKING:
    from sgdbench.executors import ExecutorOptions
    from sgdbench.runner import GridOutcome


def Flag(*names: str, **kwargs: Any) -> Any:
    """An on/off option: typer's rich help would print ``<bool>`` as its value type."""
    return typer.Option(*names, metavar="", **kwargs)


app = typer.Typer(
    name="sgdbench",
    help="Experiment runner and benchmark for stochastic gradient descent in PyTorch.\n\n"
    "Example:\n\n    sgdbench run experiments/quickstart.toml\n\n"
    "    sgdbench report results/quickstart",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None if os.environ.get("NO_COLOR") else "rich",
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class Executor(StrEnum):
    serial = "serial"
    process = "process"
    dask = "dask"


class Engine(StrEnum):
    auto = "auto"
    eager = "eager"
    stacked = "stacked"


class ReportFormat(StrEnum):
    table = "table"
    markdown = "markdown"
    csv = "csv"
    json = "json"
    html = "html"


class PlotKind(StrEnum):
    curves = "curves"
    lr = "lr"
    speed = "speed"
    profile = "profile"
    tuneability = "tuneability"


class PlotX(StrEnum):
    step = "step"
    samples = "samples"
    epoch = "epoch"
    time = "time"


class PlotMetric(StrEnum):
    final = "final"
    best = "best"


class CompareFormat(StrEnum):
    table = "table"
    markdown = "markdown"
    json = "json"


class ListWhat(StrEnum):
    problems = "problems"
    optimizers = "optimizers"
    keys = "keys"


def _fail(e: BaseException, verbose: bool) -> typer.Exit:
    if verbose:
        traceback.print_exception(e, file=sys.stderr)
    print(str(e), file=sys.stderr)
    return typer.Exit(getattr(e, "exit_code", EXIT_FAILED))


@app.command()
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
        typer.Option(min=0, help="stop the grid after this many failed runs in a row (0: never)"),
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
            (executor, jobs, scheduler, threads_per_job),
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

        chosen, options = _executor_options(executor, jobs, scheduler, threads_per_job)
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
    _print_outcome(outcome, out_dir)
    raise typer.Exit(outcome.exit_code)


def _print_outcome(outcome: GridOutcome, out_dir: Path) -> None:
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
    if ran:  # before why the grid stopped early, which stays the last line
        _print_run_summary(out_dir)
    if outcome.interrupted:
        print("sgdbench: interrupted; finished runs are kept, rerun to continue", file=sys.stderr)
    if outcome.stopped_early:
        print(f"sgdbench: {outcome.stopped_early}", file=sys.stderr)


def _run_suite(
    path: Path,
    out: str | None,
    executor_args: tuple[Executor | None, int | None, str | None, int | None],
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
    executor: Executor | None, jobs: int | None, scheduler: str | None, threads: int | None
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
    if executor is Executor.serial and ((jobs or 1) > 1 or threads is not None):
        raise UsageError(
            "sgdbench: --executor serial runs in this process: --jobs and --threads-per-job "
            "need --executor process or dask"
        )
    if executor is Executor.dask and scheduler and jobs is not None:
        raise UsageError(
            "sgdbench: --jobs sizes a local Dask cluster; with --scheduler the cluster's "
            "workers run the grid"
        )
    return executor, ExecutorOptions(jobs=jobs, threads_per_job=threads, scheduler=scheduler)


def _print_dry_run(grid: Grid) -> None:
    from sgdbench.report.table import TextTable, render_table

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


@app.command()
def report(
    results: Annotated[Path, typer.Argument(help="results folder")] = Path("results"),
    by: Annotated[
        str | None,
        typer.Option(help="group by these columns instead of per configuration, e.g. optimizer,lr"),
    ] = None,
    best: Annotated[
        bool,
        Flag("--best", help="per optimizer x batch size x device, the lr reaching target fastest"),
    ] = False,
    fmt: Annotated[
        ReportFormat, typer.Option("--format", help="table | markdown | csv | json | html")
    ] = ReportFormat.table,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="write to this file (default: stdout; html: DIR/report.html)"
        ),
    ] = None,
    sort: Annotated[
        str | None,
        typer.Option(help="sort by this column (-COL: descending), e.g. steps_to_target"),
    ] = None,
    target_loss: Annotated[
        float | None,
        typer.Option(
            help="recompute steps/time to target for this loss, exact to the step (retrains "
            "runs that crossed it between evaluations: their training time again)"
        ),
    ] = None,
    all_versions: Annotated[
        bool,
        Flag("--all", help="runs of every grid version, not only the current grid's"),
    ] = False,
    columns: Annotated[
        str | None,
        typer.Option(
            help="table/markdown columns, e.g. status,steps_to_target,steps_per_s,val_acc"
        ),
    ] = None,
    verbose: Annotated[bool, Flag("--verbose", "-v")] = False,
) -> None:
    """Summarize a results folder: one row per configuration, median and IQR over seeds.

    Example: sgdbench report results/quickstart --best --format markdown
    Example: sgdbench report results/quickstart --format html --out report.html
    """
    try:
        from sgdbench import report as report_mod
        from sgdbench.suite import is_suite_folder

        if is_suite_folder(results):
            if fmt is ReportFormat.html and out is None:
                out = results / "report.html"
            text = _suite_report(results, by, best, fmt, out, sort, target_loss, all_versions)
        elif fmt is ReportFormat.html:
            from sgdbench.html_report import render_html

            out = out if out is not None else results / "report.html"
            text = render_html(
                results,
                by=by,
                best=best,
                sort=sort,
                target_loss=target_loss,
                all_versions=all_versions,
            )
        else:
            color = out is None and fmt is ReportFormat.table and sys.stdout.isatty()
            color = color and not os.environ.get("NO_COLOR")
            listing = _list_results(results, color) if fmt is ReportFormat.table else None
            text = listing or report_mod.render(
                results,
                by=by,
                best=best,
                fmt=fmt.value,
                sort=sort,
                target_loss=target_loss,
                color=color,
                all_versions=all_versions,
                columns=columns,
                # A table written to a file (--out) is not cut to any terminal's width.
                width=None if out is None else 10_000,
            )
    except SgdbenchError as e:
        raise _fail(e, verbose) from None
    if out is None:
        sys.stdout.write(text)
        return
    from sgdbench.atomic import atomic_write_text

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, text)
    except OSError as e:
        raise _fail(UsageError(f"--out: {out}: {e.strerror or e}"), verbose) from None
    print(f"sgdbench: wrote {out}", file=sys.stderr)


def _list_results(results: Path, color: bool) -> str | None:
    """The results folders below ``results`` when it holds none itself (None otherwise)."""
    from sgdbench.report.listing import listing, results_folders
    from sgdbench.store import RUNS_FILE

    if not results.is_dir() or (results / RUNS_FILE).exists():
        return None
    folders = results_folders(results)
    return listing(results, folders, color=color) if folders else None


def _suite_report(
    results: Path,
    by: str | None,
    best: bool,
    fmt: ReportFormat,
    out: Path | None,
    sort: str | None,
    target_loss: float | None,
    all_versions: bool,
) -> str:
    """The cross-problem report of a suite folder (see sgdbench.suite_report)."""
    from sgdbench.suite_report import render

    if by or best or sort:
        option = "--by" if by else "--best" if best else "--sort"
        raise UsageError(
            f"{option}: a suite folder's report tunes the lr per problem and optimizer; "
            f"use {option} on one problem's folder ({results}/<problem>)"
        )
    if fmt is ReportFormat.html:
        from sgdbench.suite_html import render_suite_html

        return render_suite_html(results, target_loss=target_loss, all_versions=all_versions)
    color = out is None and fmt is ReportFormat.table and sys.stdout.isatty()
    return render(
        results,
        fmt=fmt.value,
        target_loss=target_loss,
        all_versions=all_versions,
        color=color and not os.environ.get("NO_COLOR"),
    )


@app.command()
def plot(
    results: Annotated[Path, typer.Argument(help="results folder")] = Path("results"),
    kind: Annotated[
        PlotKind,
        typer.Option(
            help="curves: loss vs step | lr: loss vs lr | speed: to target | suite folders: "
            "profile (performance profiles) | tuneability (best loss after k lr trials)"
        ),
    ] = PlotKind.curves,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="picture file, .png/.svg/.pdf [DIR/plots/KIND.png]"),
    ] = None,
    x: Annotated[
        PlotX,
        typer.Option(
            "--x",
            help="x axis: step | samples (compare batch sizes) | epoch (curves) | time (seconds)",
        ),
    ] = PlotX.step,
    metric: Annotated[
        PlotMetric, typer.Option(help="lr plot: final or best training loss")
    ] = PlotMetric.final,
    smooth: Annotated[
        int | None,
        typer.Option(help="curves: EMA span in steps (0 or 1: raw) [2% of the run]"),
    ] = None,
    best: Annotated[
        bool, Flag("--best", help="only the best lr per optimizer x batch size x device")
    ] = False,
    all_versions: Annotated[
        bool,
        Flag("--all", help="runs of every grid version, not only the current grid's"),
    ] = False,
    verbose: Annotated[bool, Flag("--verbose", "-v")] = False,
) -> None:
    """Draw loss curves, learning-rate sensitivity or speed to target (no display needed).

    Example: sgdbench plot results/quickstart --kind lr --out lr.svg
    """
    try:
        from sgdbench import plot as plot_mod
        from sgdbench.suite import is_suite_folder

        if is_suite_folder(results) or kind in (PlotKind.profile, PlotKind.tuneability):
            if not is_suite_folder(results):
                raise UsageError(
                    f"--kind {kind.value}: compares optimizers across problems; {results} is not "
                    "a suite results folder (sgdbench run SUITE.toml writes one)"
                )
            from sgdbench import suite_plot

            path = suite_plot.plot(results, kind=kind.value, out=out, all_versions=all_versions)
            print(f"sgdbench: wrote {path}", file=sys.stderr)
            return
        path = plot_mod.plot(
            results,
            kind=kind.value,
            out=out,
            x=x.value,
            metric=metric.value,
            smooth=smooth,
            best=best,
            all_versions=all_versions,
        )
    except SgdbenchError as e:
        raise _fail(e, verbose) from None
    print(f"sgdbench: wrote {path}", file=sys.stderr)


@app.command()
def compare(
    base: Annotated[Path, typer.Argument(help="baseline results folder")],
    new: Annotated[Path, typer.Argument(help="new results folder")],
    threshold: Annotated[
        str, typer.Option(help="flag changes worse than this, e.g. 5% (a bare number is %)")
    ] = "5%",
    fail_on: Annotated[
        list[str] | None,
        typer.Option(
            "--fail-on",
            help="per-metric threshold, METRIC:N% or METRIC:N (absolute), repeatable; metrics: "
            "steps_per_s, steps_to_target, time_to_target_s, final_loss [default: --threshold]",
        ),
    ] = None,
    fmt: Annotated[
        CompareFormat, typer.Option("--format", help="table | markdown | json")
    ] = CompareFormat.table,
    all_versions: Annotated[
        bool,
        Flag("--all", help="runs of every grid version, not only the current grid's"),
    ] = False,
    verbose: Annotated[bool, Flag("--verbose", "-v")] = False,
) -> None:
    """Compare two results folders configuration by configuration; exit 1 on a regression.

    Example: sgdbench compare results/main results/branch --threshold 10%

    Example: sgdbench compare A B --fail-on steps_to_target:0% --fail-on steps_per_s:10%

    Loss digests and steps are compared exactly; timings with an interval across runs and
    repeats (run with --repeat 3 for a firm test), and count as a regression only beyond both
    the threshold and the noise.
    """
    try:
        from sgdbench import compare as compare_mod

        color = (
            fmt is CompareFormat.table and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        )
        from sgdbench.suite import is_suite_folder

        if is_suite_folder(base) or is_suite_folder(new):
            from sgdbench import suite_compare as compare_mod  # type: ignore[no-redef]
        text, regressed = compare_mod.render(
            base,
            new,
            threshold=threshold,
            fail_on=fail_on,
            fmt=fmt.value,
            color=color,
            all_versions=all_versions,
        )
    except SgdbenchError as e:
        raise _fail(e, verbose) from None
    sys.stdout.write(text)
    raise typer.Exit(EXIT_FAILED if regressed else EXIT_OK)


class LrFindFormat(StrEnum):
    table = "table"
    json = "json"


@app.command("lr-find")
def lr_find(
    grid: Annotated[
        Path, typer.Argument(help="grid file (TOML); its first configuration is tested")
    ],
    start: Annotated[float, typer.Option(min=0, help="first learning rate")] = 1e-7,
    end: Annotated[float, typer.Option(min=0, help="last learning rate")] = 10.0,
    steps: Annotated[
        int, typer.Option(min=2, help="steps of the range test (with --sweep: per lr)")
    ] = 100,
    stop_factor: Annotated[
        float, typer.Option(help="stop once the smoothed loss exceeds this times its minimum")
    ] = 4.0,
    beta: Annotated[
        float | None,
        typer.Option(help="EMA smoothing factor [0.98 for minibatches, 0 for full batch]"),
    ] = None,
    sweep: Annotated[
        bool,
        Flag("--sweep", help="train K log-spaced lrs at once (stacked engine) instead"),
    ] = False,
    k: Annotated[int, typer.Option("--k", min=2, help="--sweep: number of learning rates")] = 64,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="picture file [results/<name>/plots/lr_find.png]"),
    ] = None,
    fmt: Annotated[
        LrFindFormat, typer.Option("--format", help="table | json (every point)")
    ] = LrFindFormat.table,
    verbose: Annotated[bool, Flag("--verbose", "-v")] = False,
) -> None:
    """Learning-rate range test: grow the lr exponentially, record loss vs lr, suggest lrs.

    Example: sgdbench lr-find experiments/quickstart.toml --start 1e-5 --end 10

    With --sweep: sgdbench lr-find grid.toml --sweep --k 64 --steps 200
    """
    try:
        from sgdbench import lrfind_report

        text = lrfind_report.main(
            grid,
            start=start,
            end=end,
            steps=steps,
            stop_factor=stop_factor,
            beta=beta,
            sweep=sweep,
            k=k,
            out=out,
            fmt=fmt.value,
        )
    except SgdbenchError as e:
        raise _fail(e, verbose) from None
    sys.stdout.write(text)


@app.command("list")
def list_(what: Annotated[ListWhat, typer.Argument(help="problems | optimizers | keys")]) -> None:
    """List built-in problems or available optimizers with their parameters, or the keys of a
    grid file."""
    if what is ListWhat.keys:
        from sgdbench.schema import key_rows

        for key, default, meaning in key_rows():
            print(f"{key} [{default.strip('`')}]: {meaning}")
        return
    if what is ListWhat.problems:
        from sgdbench.problems.registry import PROBLEMS

        for info in PROBLEMS.values():
            print(f"{info.name}: {info.summary}")
            for p in info.params:
                default = "required" if p.required else f"default {p.default!r}"
                choices = f" ({' | '.join(p.choices)})" if p.choices else ""
                print(f"    {p.name} [{p.kind}, {default}]{choices}: {p.help}")
        print('plug-in: name = "package.module:function" returning an sgdbench.Problem')
        return
    from sgdbench import optimizer_catalog

    # Read from torch's source when it reads plainly (no 4 s torch import), else ask torch.
    catalog = optimizer_catalog.keyword_defaults(optimizer_catalog.RESERVED)
    if catalog is None:
        from sgdbench import optimizers

        catalog = {
            cls.__name__: optimizers.keyword_defaults(name)
            for name, cls in optimizers.optimizer_classes().items()
        }
    for class_name, defaults in sorted(catalog.items(), key=lambda item: item[0].lower()):
        why = optimizer_catalog.UNSUPPORTED.get(class_name)
        note = f"  ({why})" if why else ""
        kwargs = ", ".join(f"{k}={v!r}" for k, v in defaults.items())
        print(f"{class_name}: {kwargs}{note}")
    for name, preset in optimizer_catalog.BUILTIN_PRESETS.items():
        body = ", ".join(f"{k}={v!r}" for k, v in preset.items() if k != "type")
        print(f"preset {name}: {preset['type']}({body})")


@app.command("schema")
def schema_() -> None:
    """Print the JSON Schema of a grid file, for editor completion and checks.

    Example: sgdbench schema > grid.schema.json, then start a grid with
    #:schema ./grid.schema.json (Taplo / Even Better TOML).
    """
    import json

    from sgdbench.schema import json_schema

    print(json.dumps(json_schema(), indent=2))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
