"""``sgdbench report``: one row per configuration, aggregated over seeds."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from sgdbench.errors import UsageError


def load(results: Path) -> pd.DataFrame:
    from sgdbench.store import RUNS_FILE, read_runs

    if not (results / RUNS_FILE).exists():
        raise UsageError(f"{results}: no {RUNS_FILE} here (run a grid first: sgdbench run GRID)")
    runs = read_runs(results)
    if runs.empty:
        raise UsageError(f"{results}: {RUNS_FILE} has no runs")
    return runs


def aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    axes = [k for k in dict.fromkeys(k for a in runs["axes"] for k in json.loads(a)) if k != "seed"]
    for k in axes:
        runs[k] = [json.loads(a).get(k) for a in runs["axes"]]
    keys = axes or ["optimizer", "lr"]
    rows = []
    for _, g in runs.groupby("config_id", sort=False):
        first = g.iloc[0]
        reached = g["steps_to_target"].notna()
        rows.append(
            {
                **{k: first[k] for k in keys},
                "seeds": len(g),
                "status": ", ".join(f"{n} {s}" for s, n in g["status"].value_counts().items()),
                "final_loss": g["final_loss"].median(),
                "reached": f"{int(reached.sum())}/{len(g)}",
                "steps_to_target": g.loc[reached, "steps_to_target"].median(),
                "steps_per_s": g["steps_per_s"].median(),
            }
        )
    return pd.DataFrame(rows)


def render(
    results: Path,
    *,
    by: str | None = None,
    best: bool = False,
    fmt: str = "table",
    sort: str | None = None,
    target_loss: float | None = None,
) -> str:
    table = aggregate(load(Path(results)))
    if fmt == "json":
        return table.to_json(orient="records", indent=2) + "\n"
    if fmt == "csv":
        return table.to_csv(index=False)
    return table.to_string(index=False) + "\n"
