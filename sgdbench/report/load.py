"""Loading a results folder for the report: runs.parquet (only the columns needed) with one
column per grid axis, grid versions told apart, and targets recomputed from the evaluations."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from sgdbench.errors import UsageError

RUN_COLUMNS = [
    "run_id",
    "config_id",
    "axes",
    "status",
    "message",
    "optimizer",
    "optimizer_kwargs",
    "lr",
    "batch_size",
    "device",
    "seed",
    "final_loss",
    "best_loss",
    "steps_to_target",
    "samples_to_target",
    "time_to_target_s",
    "steps_per_s",
    "samples_per_s",
    "final_val_accuracy",
    "target_loss",
    "verdict",
    "verdict_detail",
    "update_cosine",
    # timed windows: throughput medians and intervals pooled over seeds and repeats
    "window_steps",
    "window_samples",
    "window_s",
    "window_repeat",
]
# Per-run throughput interval, when the engine stores one (older folders: empty).
INTERVAL_COLUMNS = ["steps_per_s_lo", "steps_per_s_hi"]
TARGET_COLUMNS = ("steps_to_target", "samples_to_target", "time_to_target_s")


def check_target_loss(target_loss: float | None) -> None:
    """A target a loss can reach: finite and >= 0 (``UsageError``, exit 2, otherwise)."""
    if target_loss is None:
        return
    if not math.isfinite(target_loss) or target_loss < 0:
        raise UsageError(f"--target-loss: must be a finite number >= 0, got {target_loss}")


def load_runs(
    results: Path,
    *,
    extra_columns: Sequence[str] = (),
    target_loss: float | None = None,
    all_versions: bool = False,
    quiet: bool = False,
) -> pd.DataFrame:
    """runs.parquet (only the columns a report needs), with one column per grid axis: what
    ``report``, ``plot`` and ``compare`` read.

    Only the runs of the folder's current grid version, unless ``all_versions``; how many were
    left out is said on stderr. With ``all_versions``, the grid fields that differ between
    versions become axes (e.g. ``train.epochs``), so runs of different versions never merge.
    With ``target_loss``, the steps/samples/seconds to target are recomputed from the stored
    evaluations by ``metrics.target_metrics``, the one definition of convergence speed.
    Raises ``UsageError`` (exit 2) for a missing, empty or unreadable results folder.
    """
    from sgdbench.store import RUN_SCHEMA, RUNS_FILE, read_manifest, read_schema_names, read_table

    results = Path(results)
    path = results / RUNS_FILE
    if not results.is_dir():
        raise UsageError(f"{results}: no such results folder (run a grid: sgdbench run GRID)")
    if not path.exists():
        raise UsageError(f"{results}: no {RUNS_FILE} here (run a grid first: sgdbench run GRID)")
    manifest = read_manifest(results) or {}
    wanted = list(dict.fromkeys([*RUN_COLUMNS, *INTERVAL_COLUMNS, *extra_columns, "grid_id"]))
    if target_loss is not None:
        wanted.append("spec")
    present = set(read_schema_names(path))
    columns = [c for c in wanted if c in present]
    runs = read_table(path, columns).to_pandas()
    for c in wanted:  # an older runs.parquet may lack a column: treat it as empty
        if c not in runs:
            runs[c] = pd.Series([None] * len(runs), dtype=_pandas_dtype(RUN_SCHEMA, c))
    runs["axes_dict"] = [json.loads(a) if a else {} for a in runs["axes"]]
    current = manifest.get("current_grid")
    if all_versions:
        _version_axes(results, runs)
    elif current is not None:
        keep = (runs["grid_id"] == current).to_numpy()
        left_out = int((~keep).sum())
        if left_out and not quiet:
            print(
                f"sgdbench: {results}: left out {left_out} run(s) of older grid versions "
                "(--all shows them)",
                file=sys.stderr,
            )
        runs = runs[keep].reset_index(drop=True)
    if runs.empty:
        hint = " of its current grid (--all shows older ones)" if current is not None else ""
        raise UsageError(f"{results}: {RUNS_FILE} has no runs{hint}")
    if target_loss is not None:
        runs = recompute_targets(results, runs, target_loss)
    return runs


# Grid fields that are never version columns: the axes already are columns, the name is the same.
_NOT_VERSION_FIELDS = ("name", "grid", "include", "exclude")


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        if not prefix and key in _NOT_VERSION_FIELDS:
            continue
        if isinstance(value, dict):
            out |= _flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def _version_axes(results: Path, runs: pd.DataFrame) -> None:
    """Add, as axes of each run, the grid fields that differ between the versions present
    (a run of a folder older than grid versions gets "-")."""
    from sgdbench.store import grid_versions

    versions = grid_versions(results)
    fields = {g: _flatten(versions.get(g, {})) for g in runs["grid_id"].dropna().unique()}
    if len(fields) + int(runs["grid_id"].isna().any()) < 2:
        return  # one version: nothing to tell apart
    keys = dict.fromkeys(k for f in fields.values() for k in f)
    differing = [k for k in keys if len({json.dumps(f.get(k)) for f in fields.values()}) > 1]
    for axes, gid in zip(runs["axes_dict"], runs["grid_id"], strict=True):
        for k in differing:
            axes[k] = fields[gid].get(k) if isinstance(gid, str) else None
        axes["grid_id"] = gid if isinstance(gid, str) else None


def _pandas_dtype(schema: Any, column: str) -> str:
    if column in INTERVAL_COLUMNS:
        return "float64"
    if column not in schema.names:
        return "object"
    t = str(schema.field(column).type)
    return {"double": "float64", "int64": "float64", "bool": "object"}.get(t, "object")


def recompute_targets(results: Path, runs: pd.DataFrame, target_loss: float) -> pd.DataFrame:
    """Steps, samples and seconds to ``target_loss`` for every run, from ``evals/``, and the
    learning-rate verdict against that target."""
    from sgdbench.diagnose import verdict
    from sgdbench.metrics import target_metrics
    from sgdbench.spec import RunSpec
    from sgdbench.store import EVALS_DIR, read_files

    check_target_loss(target_loss)
    evals_dir = Path(results) / EVALS_DIR
    files = [evals_dir / f"{rid}.parquet" for rid in runs["run_id"]]
    evals = read_files(
        [f for f in files if f.exists()], ["run_id", "step", "time_s", "train_loss"]
    ).to_pandas()
    evals = evals.sort_values(["run_id", "step"], kind="stable")
    by_run = {rid: g for rid, g in evals.groupby("run_id", sort=False)}
    runs = runs.copy()
    out: dict[str, list[Any]] = {c: [] for c in (*TARGET_COLUMNS, "verdict", "verdict_detail")}
    for rid, spec_json, status, cosine in zip(
        runs["run_id"], runs["spec"], runs["status"], runs["update_cosine"], strict=True
    ):
        g = by_run.get(rid)
        if g is None or not spec_json:
            metrics: dict[str, Any] = dict.fromkeys(TARGET_COLUMNS)
            diagnosis = verdict(status, [], [], target_loss, math.nan)
        else:
            steps, losses = g["step"].tolist(), g["train_loss"].tolist()
            metrics = target_metrics(
                RunSpec.from_json(spec_json), steps, g["time_s"].tolist(), losses, target_loss
            )
            diagnosis = verdict(status, steps, losses, target_loss, cosine)
        for c in TARGET_COLUMNS:
            out[c].append(metrics[c])
        out["verdict"].append(diagnosis.verdict)
        out["verdict_detail"].append(diagnosis.detail)
    runs["verdict"], runs["verdict_detail"] = out.pop("verdict"), out.pop("verdict_detail")
    for c in TARGET_COLUMNS:
        runs[c] = pd.to_numeric(pd.Series(out[c], index=runs.index, dtype="object"))
    from sgdbench.targets import exact_targets  # exact to the step: may rerun runs (see there)

    runs[list(TARGET_COLUMNS)] = exact_targets(results, runs, target_loss)
    runs["target_loss"] = float(target_loss)
    return runs
