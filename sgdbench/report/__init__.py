"""``sgdbench report``: one row per configuration, aggregated over seeds (DESIGN §5).

The package keeps its jobs apart: ``load`` reads a results folder, ``aggregate`` owns the math
(medians, interquartile ranges, counts, ``--best``), ``headline`` ranks, ``fmt`` formats numbers,
``table`` is the one terminal table renderer (report, compare, ``run --dry-run``), ``formats``
writes table, markdown, csv and json, ``listing`` lists results folders. ``compare``, ``plot``
and the HTML report use the public names re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from sgdbench.errors import UsageError
from sgdbench.report.aggregate import (
    BEST_GROUP,
    BY_COLUMNS,
    TRAINED,
    axis_names,
    best_per_group,
    label_columns,
    quantiles,
    sort_table,
    speed_key,
    summarize_runs,
    tuned_axes,
    verdict_summary,
)
from sgdbench.report.fmt import (
    describe,
    fmt_count,
    fmt_interval,
    fmt_rate,
    fmt_seconds,
    fmt_sig,
    fmt_times,
    json_number,
    plain,
)
from sgdbench.report.formats import (
    COLUMNS,
    REPORT_SCHEMA_VERSION,
    SORT_BY,
    display_rows,
    to_csv,
    to_json,
    to_markdown,
    to_table,
)
from sgdbench.report.headline import Headline, headline, headline_blocks, headline_lines
from sgdbench.report.load import (
    TARGET_COLUMNS,
    check_target_loss,
    load_runs,
    recompute_targets,
)
from sgdbench.report.table import TextTable, render_table, terminal_width

__all__ = [
    "BEST_GROUP",
    "BY_COLUMNS",
    "COLUMNS",
    "REPORT_SCHEMA_VERSION",
    "SORT_BY",
    "TARGET_COLUMNS",
    "TRAINED",
    "Headline",
    "TextTable",
    "axis_names",
    "best_per_group",
    "build",
    "check_target_loss",
    "describe",
    "display_rows",
    "fmt_count",
    "fmt_interval",
    "fmt_rate",
    "fmt_seconds",
    "fmt_sig",
    "fmt_times",
    "headline",
    "headline_blocks",
    "headline_lines",
    "json_number",
    "label_columns",
    "load_runs",
    "parse_columns",
    "plain",
    "quantiles",
    "recompute_targets",
    "render",
    "render_table",
    "sort_table",
    "speed_key",
    "summarize_runs",
    "terminal_width",
    "to_csv",
    "to_json",
    "to_markdown",
    "to_table",
    "tuned_axes",
    "verdict_summary",
]


def parse_columns(text: str | None) -> list[str]:
    """``"a, b"`` → ``["a", "b"]`` (``--by`` and ``--columns``)."""
    return [c.strip() for c in (text or "").split(",") if c.strip()]


def build(
    results: Path,
    *,
    by: str | None = None,
    best: bool = False,
    sort: str | None = None,
    target_loss: float | None = None,
    all_versions: bool = False,
    extra_columns: Sequence[str] = (),
    quiet: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame, Headline]:
    """(runs, summary table, headline) for a results folder: what every format prints."""
    from sgdbench.diagnose import lr_too_high

    check_target_loss(target_loss)
    group_by = parse_columns(by)
    if best and group_by:
        raise UsageError("--best and --by do not mix: --best tunes the lr per everything else")
    extra = [*extra_columns, *(c for c in group_by if c in BY_COLUMNS)]
    runs = load_runs(
        Path(results),
        extra_columns=extra,
        target_loss=target_loss,
        all_versions=all_versions,
        quiet=quiet,
    )
    choices = list(dict.fromkeys([*axis_names(runs), *BY_COLUMNS]))
    unknown = [c for c in group_by if c not in choices]
    if unknown:
        raise UsageError(f"--by: unknown column {unknown[0]!r} (choose from: {', '.join(choices)})")
    runs = lr_too_high(runs, [a for a in axis_names(runs) if a not in ("lr", "seed")])
    table = summarize_runs(runs, group_by or None)
    if best:
        table = best_per_group(runs, table)
    if sort:
        table = sort_table(table, sort)
    return runs, table, headline(runs, table)


def render(
    results: Path,
    *,
    by: str | None = None,
    best: bool = False,
    fmt: str = "table",
    sort: str | None = None,
    target_loss: float | None = None,
    color: bool = False,
    width: int | None = None,
    all_versions: bool = False,
    columns: str | None = None,
) -> str:
    """The report of a results folder as text in ``fmt`` (table, markdown, csv, json)."""
    results = Path(results)
    _, table, head = build(
        results, by=by, best=best, sort=sort, target_loss=target_loss, all_versions=all_versions
    )
    what = "group(s)" if by else "configuration(s)"
    title = f"{results.name}: {len(table)} {what}" + (" — best lr" if best else "")
    notes = []
    if best:
        notes.append(
            f"--best picked over {', '.join(table.attrs['tuned'])} per "
            + " × ".join(table.attrs["best_group"])
        )
    from sgdbench.halving import rung_summary, with_rungs

    rungs = rung_summary(results, all_versions)  # successive halving's rungs; "" for other grids
    if rungs:
        notes.append(rungs)
    chosen = parse_columns(columns) or None
    if fmt == "json":
        doc = to_json(table, head, results, parse_columns(by))
        return with_rungs(doc, results, list(table["run_ids"]))  # halving: each one's rungs
    if fmt == "csv":
        return to_csv(table)
    if fmt == "markdown":
        return to_markdown(table, head, title, columns=chosen, notes=notes)
    return to_table(table, head, color=color, width=width, title=title, columns=chosen, notes=notes)
