"""The ``sgdbench`` application, its option types and exit codes; the commands register on it
(``run``, ``results``, ``tools``)."""

from __future__ import annotations

import os
import sys
import traceback
from enum import StrEnum
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup


def Flag(*names: str, **kwargs: Any) -> Any:
    """An on/off option: typer's rich help would print ``<bool>`` as its value type."""
    return typer.Option(*names, metavar="", **kwargs)


class _PlainHelpOption:
    """typer's rich help prints its own ``--help`` option as ``--help <bool>``: the same empty
    metavar as :func:`Flag` makes it plain."""

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)  # type: ignore[misc]
        if option is not None:
            option.metavar = ""
        return option


class Command(_PlainHelpOption, TyperCommand):
    """Every ``sgdbench`` command: ``@app.command(cls=Command)``."""


class _Group(_PlainHelpOption, TyperGroup):
    pass


app = typer.Typer(
    name="sgdbench",
    cls=_Group,
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
