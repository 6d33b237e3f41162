"""The report's output formats: the terminal table, markdown, csv and json, all from the frame
``aggregate.summarize_runs`` returns and the ``Headline``."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from sgdbench.engine.trajectory import STATUSES
from sgdbench.errors import UsageError
from sgdbench.report.fmt import (
    describe,
    fmt_count,
    fmt_interval,
    fmt_rate,
    fmt_seconds,
    fmt_sig,
    json_number,
    plain,
)
from sgdbench.report.headline import Headline, headline_blocks, headline_lines
from sgdbench.report.table import TextTable, render_table

REPORT_SCHEMA_VERSION = 1


def _status(r: pd.Series) -> str:
    return " ".join(
        f"{r[f'n_{s}']} {s if s != 'diverged' else 'div'}" for s in STATUSES if r[f"n_{s}"]
    )


def _reached(r: pd.Series) -> str:
    return "-" if r["reached"] < 0 else f"{r['reached']}/{r['runs']}"


def _with_iqr(r: pd.Series, c: str) -> str:
    lo, hi = r[f"{c}_q25"], r[f"{c}_q75"]
    quartiles = "-" if pd.isna(lo) or pd.isna(hi) else f"{fmt_sig(lo)}, {fmt_sig(hi)}"
    return f"{fmt_sig(r[f'{c}_median'])} [{quartiles}]"


def _val_acc(r: pd.Series) -> str:
    acc = r["final_val_accuracy_median"]
    return "-" if pd.isna(acc) else f"{100 * acc:.1f}%"


def _steps_per_s(r: pd.Series) -> str:
    return fmt_interval(r["steps_per_s_median"], r["steps_per_s_lo"], r["steps_per_s_hi"])


# key: (terminal header, markdown header, cell, in the terminal table by default, in markdown)
Cell = Callable[[pd.Series], str]
COLUMNS: dict[str, tuple[str, str, Cell, bool, bool]] = {
    "runs": ("runs", "runs", lambda r: str(r["runs"]), False, True),
    "status": ("status", "status", _status, True, True),
    "verdict": ("verdict", "verdict", lambda r: str(r["verdict"]), True, True),
    "final_loss": (
        "final\nloss",
        "final loss [IQR]",
        lambda r: fmt_sig(r["final_loss_median"]),
        True,
        False,
    ),
    "final_loss_iqr": (
        "final loss\n[IQR]",
        "final loss [IQR]",
        lambda r: _with_iqr(r, "final_loss"),
        False,
        True,
    ),
    "iqr": (
        "IQR",
        "IQR width",
        lambda r: fmt_sig(r["final_loss_q75"] - r["final_loss_q25"], 2),
        True,
        False,
    ),
    "best_loss": (
        "best loss\n[IQR]",
        "best loss [IQR]",
        lambda r: _with_iqr(r, "best_loss"),
        False,
        True,
    ),
    "reached": ("reached", "reached", _reached, True, True),
    "steps_to_target": (
        "steps to\ntarget",
        "steps→target",
        lambda r: fmt_count(r["steps_to_target_median"]),
        True,
        True,
    ),
    "samples_to_target": (
        "samples to\ntarget",
        "samples→target",
        lambda r: fmt_count(r["samples_to_target_median"]),
        False,
        True,
    ),
    "time_to_target": (
        "time to\ntarget",
        "time→target",
        lambda r: fmt_seconds(r["time_to_target_s_median"]),
        True,
        True,
    ),
    "steps_per_s": ("steps/s\n(min … max)", "steps/s (min … max)", _steps_per_s, True, True),
    "samples_per_s": (
        "samples/s",
        "samples/s",
        lambda r: fmt_rate(r["samples_per_s_median"]),
        False,
        True,
    ),
    "val_acc": ("val acc", "val acc", _val_acc, True, True),
}
# The summary column whose number sorts each markdown/HTML header (the HTML report's sort).
SORT_BY = {
    COLUMNS[key][1]: column
    for key, column in (
        ("runs", "runs"),
        ("final_loss_iqr", "final_loss_median"),
        ("best_loss", "best_loss_median"),
        ("reached", "reached"),
        ("steps_to_target", "steps_to_target_median"),
        ("samples_to_target", "samples_to_target_median"),
        ("time_to_target", "time_to_target_s_median"),
        ("steps_per_s", "steps_per_s_median"),
        ("samples_per_s", "samples_per_s_median"),
        ("val_acc", "final_val_accuracy_median"),
    )
}
TARGET_KEYS = ("reached", "steps_to_target", "samples_to_target", "time_to_target")


def choose_columns(table: pd.DataFrame, wanted: Sequence[str] | None, *, wide: bool) -> list[str]:
    """The value columns shown: ``wanted`` (``--columns``) in its order, else the format's
    defaults; target columns only when there is a target, ``val_acc`` only with a validation
    set."""
    if wanted:
        unknown = [c for c in wanted if c not in COLUMNS]
        if unknown:
            raise UsageError(
                f"--columns: unknown column {unknown[0]!r} (choose from: {', '.join(COLUMNS)})"
            )
        return list(dict.fromkeys(wanted))
    has_target = bool((table["reached"] >= 0).any())
    has_val = bool(table["final_val_accuracy_median"].notna().any())
    keys = [k for k, spec in COLUMNS.items() if spec[4 if wide else 3]]
    return [k for k in keys if (has_target or k not in TARGET_KEYS) and (has_val or k != "val_acc")]


def display_rows(
    table: pd.DataFrame, *, wide: bool, columns: Sequence[str] | None = None
) -> tuple[list[str], list[list[str]]]:
    """Header and formatted cells: the label columns, then the chosen value columns
    (``wide``: markdown's headers and defaults)."""
    labels = table.attrs["labels"]
    keys = choose_columns(table, columns, wide=wide)
    header = [*labels, *(COLUMNS[k][1 if wide else 0] for k in keys)]
    rows = [
        [*(plain(r[c]) for c in labels), *(COLUMNS[k][2](r) for k in keys)]
        for _, r in table.iterrows()
    ]
    return header, rows


def to_table(
    table: pd.DataFrame,
    head: Headline,
    *,
    color: bool = False,
    width: int | None = None,
    title: str = "",
    columns: Sequence[str] | None = None,
    notes: Sequence[str] = (),
) -> str:
    """The terminal table (the fastest row green, rows with diverged runs red when ``color``),
    then ``notes`` and the headline."""
    header, rows = display_rows(table, wide=False, columns=columns)
    labels = table.attrs["labels"]
    fastest = head.fastest["configuration"] if head.fastest else None
    styles = []
    for _, r in table.iterrows():
        style = ""
        if color and fastest and describe(r, labels) == fastest:
            style = "green"
        elif color and r["n_diverged"]:
            style = "red"
        styles.append(style)
    text = TextTable(header, rows, len(labels), title=title, row_styles=styles)
    return render_table(text, [*notes, *headline_lines(head)], color=color, width=width)


_RUN_ID = re.compile(r"^[0-9a-f]{12}  ")


def to_markdown(
    table: pd.DataFrame,
    head: Headline,
    title: str = "",
    columns: Sequence[str] | None = None,
    notes: Sequence[str] = (),
) -> str:
    """A GitHub table and the headline, ready to paste into a pull request."""
    header, rows = display_rows(table, wide=True, columns=columns)
    n_labels = len(table.attrs["labels"])
    esc = [[c.replace("|", "\\|") for c in row] for row in [header, *rows]]
    align = ["---" if i < n_labels else "---:" for i in range(len(header))]
    lines = [f"**{title}**", ""] if title else []
    lines.append("| " + " | ".join(esc[0]) + " |")
    lines.append("| " + " | ".join(align) + " |")
    lines += ["| " + " | ".join(r) + " |" for r in esc[1:]]
    lines += ["", *notes] if notes else []
    for first, details, is_list in headline_blocks(head):
        if is_list:
            items = [f"`{d[:12]}`{d[12:]}" if _RUN_ID.match(d) else d for d in details]
            lines += ["", f"**{first}**", "", *(f"- {d}" for d in items)]
        else:
            name, _, rest = first.partition(": ")
            text = f"**{name}:** {rest}" if rest else first
            if details:
                text += " — " + "; ".join(details)
            lines += ["", text]
    return "\n".join(lines).rstrip() + "\n"


def to_csv(table: pd.DataFrame) -> str:
    """Every column of the summary, one row per configuration."""
    return table.drop(columns=["run_ids"]).to_csv(index=False)


def to_json(table: pd.DataFrame, head: Headline, results: Path, group_by: list[str]) -> str:
    """The summary and the headline as one JSON document (``schema_version`` 1)."""
    records = [
        {
            k: ([json_number(x) for x in v] if isinstance(v, list) else json_number(v))
            for k, v in r.items()
        }
        for r in table.to_dict(orient="records")
    ]
    doc: dict[str, Any] = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "results": str(results),
        "group_by": group_by,
        "labels": table.attrs["labels"],
        "configurations": records,
        "headline": head.to_json(),
    }
    if "tuned" in table.attrs:
        doc["best"] = {"tuned": table.attrs["tuned"], "per": table.attrs["best_group"]}
    return json.dumps(doc, indent=2, allow_nan=False) + "\n"
