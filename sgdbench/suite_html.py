"""``sgdbench report SUITE_DIR --format html``: a suite's cross-problem report as one page.

The same sections as the text report (``suite_report.sections``: each problem's tuned
optimizers, the profile scores and ranks, the ratio and win matrices, tuneability), as sortable
tables, with the performance-profile and tuneability plots inline, the suite file as run and the
environment. Built from the single-folder page's parts (``html_report``), so both look alike.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

from sgdbench import html_report, suite_plot
from sgdbench.html_report import escape
from sgdbench.suite import SUITE_FILE, suite_members
from sgdbench.suite_report import PROTOCOL, load, sections

PLOTS = (
    ("profile", "Performance profiles (steps and time to target)"),
    ("tuneability", "Tuneability: expected best final loss after k lr trials"),
)
# Cells that mean "no number" sort after every number, whichever way the column is sorted.
NEVER = ("never", "diverged")


def render_suite_html(
    results: Path, *, target_loss: float | None = None, all_versions: bool = False
) -> str:
    """The report of a suite results folder as one self-contained HTML page."""
    results = Path(results)
    res = load(results, target_loss=target_loss, all_versions=all_versions)
    tables = [_section(i, *section) for i, section in enumerate(sections(res))]
    members = suite_members(results)
    return html_report.page(
        f"{res.name}: {len(res.problems)} problem(s)",
        f'<p class="muted">{escape(str(results))}: one results folder per problem '
        f"({escape(', '.join(members))}); click a header to sort.</p>",
        f'<p class="muted">{escape(PROTOCOL)}</p>',
        *tables,
        _plots(results, target_loss=target_loss, all_versions=all_versions),
        html_report.file_section("Suite as run", results / SUITE_FILE),
        html_report.environment_section(_first_env(results, members)),
    )


def _sort_key(cell: str) -> str | None:
    """The number a cell sorts by (None: sort by its text)."""
    if cell in NEVER:
        return "1e308"
    if cell in ("", "-"):
        return ""
    try:
        number = float(cell.rstrip("s"))  # "1.2" or a time like "0.35s"
    except ValueError:
        return None
    return repr(number) if math.isfinite(number) else None


def _section(index: int, title: str, header: list[str], rows: list[list[str]]) -> str:
    out = [
        f"<h2>{escape(title)}</h2>",
        f'<div class="scroll"><table class="sortable" id="suite-table-{index}"><thead><tr>',
    ]
    out += [
        f'<th scope="col"{" class=label" if i == 0 else ""}>{escape(h)}</th>'
        for i, h in enumerate(header)
    ]
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>")
        for i, cell in enumerate(row):
            key = None if i == 0 else _sort_key(cell)
            out.append(html_report.cell_html(cell, label=i == 0, sort_key=key))
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _plots(results: Path, *, target_loss: float | None, all_versions: bool) -> str:
    out = ["<h2>Plots</h2>"]
    with tempfile.TemporaryDirectory() as tmp:
        for kind, caption in PLOTS:
            path = suite_plot.plot(
                results,
                kind=kind,
                out=Path(tmp) / f"{kind}.svg",
                target_loss=target_loss,
                all_versions=all_versions,
            )
            out.append(html_report.figure(kind, caption, path))
    return "\n".join(out)


def _first_env(results: Path, members: list[str]) -> Path:
    """The environment the suite ran in: its first member's ``env.json``."""
    for label in members:
        if (results / label / "env.json").exists():
            return results / label / "env.json"
    return results / "env.json"  # absent: the section says so
