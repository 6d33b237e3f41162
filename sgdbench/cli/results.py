"""``sgdbench report``, ``plot`` and ``compare``: reading results folders."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from sgdbench.cli.base import (
    EXIT_FAILED,
    EXIT_OK,
    Command,
    CompareFormat,
    Flag,
    PlotKind,
    PlotMetric,
    PlotX,
    ReportFormat,
    _fail,
    app,
)
from sgdbench.errors import SgdbenchError, UsageError


@app.command(cls=Command)
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


@app.command(cls=Command)
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


@app.command(cls=Command)
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
