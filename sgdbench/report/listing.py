"""``sgdbench report`` on a folder that holds result folders rather than runs: one line per
results folder (name, runs, statuses, last run, headline winner)."""

from __future__ import annotations

from pathlib import Path

from sgdbench.errors import SgdbenchError
from sgdbench.report.table import TextTable, render_table

MAX_DEPTH = 2  # results/<name>/runs.parquet, or results/<group>/<name>/runs.parquet


def results_folders(root: Path) -> list[Path]:
    """Folders below ``root`` (at most ``MAX_DEPTH`` levels) that hold a runs.parquet."""
    from sgdbench.store import RUNS_FILE

    found: list[Path] = []
    level = [root]
    for _ in range(MAX_DEPTH):
        level = sorted(p for d in level for p in d.iterdir() if p.is_dir())
        found += [p for p in level if (p / RUNS_FILE).is_file()]
    return sorted(found)


def listing(root: Path, folders: list[Path], *, color: bool = False) -> str:
    """The table of ``folders``; a folder that cannot be read says why in its row."""
    from sgdbench import report

    rows = []
    for folder in folders:
        name = str(folder.relative_to(root)) if folder.is_relative_to(root) else str(folder)
        try:
            runs, _, head = report.build(folder, quiet=True, extra_columns=["started_at"])
        except SgdbenchError as e:
            rows.append([name, "-", "-", "-", str(e).split(": ", 1)[-1]])
            continue
        counts = runs["status"].value_counts()
        statuses = " ".join(f"{n} {s}" for s, n in counts.items())
        started = runs["started_at"].dropna() if "started_at" in runs else []
        last = str(max(started))[:16].replace("T", " ") if len(started) else "-"
        winner = head.fastest["configuration"] if head.fastest else "none reached target"
        rows.append([name, str(len(runs)), statuses, last, winner])
    table = TextTable(
        ["results", "runs", "statuses", "last run", "headline winner"],
        rows,
        n_labels=1,
        title=f"{root}: {len(folders)} results folder(s)",
    )
    return render_table(table, [f"Full report of one: sgdbench report {root}/NAME"], color=color)
