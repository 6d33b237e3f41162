"""Tidy tables of a results folder: every step (or evaluation) with its run's axes beside it.

``runs.parquet`` and the per-step tables both have an ``lr`` column (the run's grid value and the
learning rate a schedule gave that step), so a plain merge of the two fails or produces
``lr_x``/``lr_y``. Here the run's columns keep their grid names and the step's learning rate is
called ``step_lr``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from sgdbench.errors import UsageError

# Run columns joined onto every row, after the grid's own axes.
RUN_COLUMNS = (
    "name",
    "problem",
    "optimizer",
    "lr",
    "batch_size",
    "device",
    "seed",
    "engine",
    "status",
    "config_id",
)


def load(results: Path | str, *, runs: Sequence[str] = ()) -> pd.DataFrame:
    """Every stored step of a results folder, one row per step, with its run's axes.

    Columns: ``run_id``, the grid's axes (``optimizer``, ``lr``, ``seed``, any optimizer keyword
    or ``problem.*`` axis...), then ``name, problem, batch_size, device, engine, status,
    config_id`` (those not already there), then the step's ``step, epoch, samples_seen, loss,
    step_lr, time_s``. ``runs`` keeps only these run ids.

    Example: ``sgdbench.load("results/quickstart").groupby(["optimizer", "step"]).loss.median()``
    """
    return _joined(Path(results), "steps", runs, rename={"lr": "step_lr"})


def load_evals(results: Path | str, *, runs: Sequence[str] = ()) -> pd.DataFrame:
    """Every full-data evaluation of a results folder with its run's axes (as ``load``): the
    evaluation's ``step, epoch, samples_seen, time_s, train_loss, train_accuracy, val_loss,
    val_accuracy`` after the run's columns."""
    return _joined(Path(results), "evals", runs, rename={})


def run_axes(results: Path) -> pd.DataFrame:
    """One row per run: ``run_id``, every grid axis, then ``RUN_COLUMNS``.

    An axis that is a runs.parquet column takes that column's typed value (``batch_size`` is the
    number of samples, also for "full"); other axes (``weight_decay``, ``problem.model``...) come
    from the run's stored ``axes``.
    """
    import pyarrow.parquet as pq

    from sgdbench.store import RUNS_FILE

    path = results / RUNS_FILE
    if not results.is_dir():
        raise UsageError(f"{results}: no such results folder")
    if not path.exists():
        raise UsageError(f"{results}: no {RUNS_FILE} here (run a grid first: sgdbench run GRID)")
    present = set(pq.read_schema(path).names)
    wanted = ["run_id", "axes", *RUN_COLUMNS]
    runs = pq.read_table(path, columns=[c for c in wanted if c in present]).to_pandas()
    axes = [json.loads(a) if a else {} for a in runs.get("axes", [None] * len(runs))]
    names = list(dict.fromkeys(k for a in axes for k in a))
    out = runs[["run_id"]].copy()
    for name in names:
        if name in runs:
            out[name] = runs[name]
        else:
            out[name] = pd.Series([a.get(name) for a in axes], index=runs.index).infer_objects()
    for c in RUN_COLUMNS:
        if c in runs and c not in out:
            out[c] = runs[c]
    return out


def _joined(results: Path, table: str, runs: Sequence[str], rename: dict[str, str]) -> pd.DataFrame:
    import pyarrow.dataset as ds

    axes = run_axes(results)
    if runs:
        axes = axes[axes["run_id"].isin(list(runs))]
    folder = results / table
    files = sorted(str(p) for p in folder.glob("*.parquet")) if folder.is_dir() else []
    data = ds.dataset(files, format="parquet")
    if runs:
        rows = data.to_table(filter=ds.field("run_id").isin(list(runs))).to_pandas()
    else:
        rows = data.to_table().to_pandas()
    rows = rows.rename(columns=rename)
    # m:1 - each row belongs to one run; a row whose run is not in runs.parquet (a run being
    # written) is left out, as the report leaves it out.
    return axes.merge(rows, on="run_id", how="inner", validate="1:m")
