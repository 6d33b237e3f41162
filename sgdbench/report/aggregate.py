"""Aggregation: one row per configuration (or ``--by`` group) over seeds, with medians,
interquartile ranges and counts; the ``--best`` pick and ``--sort``. Every output format, and
``compare`` and ``plot``, read the frame ``summarize_runs`` returns."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from sgdbench.engine.trajectory import FINAL_STATUSES, STATUSES
from sgdbench.errors import UsageError
from sgdbench.report.load import TARGET_COLUMNS

# Runs that trained (their numbers mean something); failed and skipped runs are only counted.
TRAINED = FINAL_STATUSES
# --by: any grid axis, or one of these runs.parquet columns.
BY_COLUMNS = (
    "problem",
    "optimizer",
    "optimizer_class",
    "lr",
    "batch_size",
    "device",
    "seed",
    "engine",
    "schedule",
    "optimizer_impl",
    "threads",
    "device_name",
    "torch_version",
    "git_sha",
)
# --best always keeps these apart (with every other axis that is not tuned).
BEST_GROUP = ("optimizer", "batch_size", "device")


def throughput_interval(runs: pd.DataFrame) -> tuple[float, float]:
    """The steps/s interval of a configuration: from the runs' own intervals
    (``steps_per_s_lo``/``_hi``, window timings) when stored, widened over seeds; else the
    spread of the seeds' medians (min … max, as hyperfine prints); NaN for one run with none."""
    lo = runs["steps_per_s_lo"].to_numpy(np.float64, na_value=np.nan)
    hi = runs["steps_per_s_hi"].to_numpy(np.float64, na_value=np.nan)
    if len(lo) and not np.isnan(lo).all() and not np.isnan(hi).all():
        return float(np.nanmin(lo)), float(np.nanmax(hi))
    medians = runs["steps_per_s"].to_numpy(np.float64, na_value=np.nan)
    medians = medians[~np.isnan(medians)]
    if len(medians) < 2:
        return math.nan, math.nan
    return float(medians.min()), float(medians.max())


def _throughput(trained: pd.DataFrame) -> dict[str, float]:
    """steps/s and samples/s of a group: the median over the timed windows of all its runs and
    repeats, with a bootstrap interval (``sgdbench.timing``) in ``*_lo`` / ``*_hi``. Runs
    without stored windows (older results) keep the median over runs and ``throughput_interval``.
    """
    from sgdbench import metrics, timing

    out: dict[str, float] = {}
    if "window_s" not in trained or trained["window_s"].isna().all():
        out["steps_per_s_lo"], out["steps_per_s_hi"] = throughput_interval(trained)
        return out
    for name in ("steps", "samples"):
        units = metrics.pooled_windows(
            trained[f"window_{name}"], trained["window_s"], trained["window_repeat"]
        )
        rate = timing.rate(units)
        if not math.isnan(rate.median):
            out[f"{name}_per_s_median"] = rate.median
        out[f"{name}_per_s_lo"], out[f"{name}_per_s_hi"] = rate.lo, rate.hi
    return out


def axis_names(runs: pd.DataFrame) -> list[str]:
    """Grid axes that vary, in grid order, without the seed."""
    keys = dict.fromkeys(k for a in runs["axes_dict"] for k in a)
    return [k for k in keys if k != "seed"]


def _label(value: Any) -> Any:
    """A hashable, printable grouping value (lists and tables become JSON)."""
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return value


def label_columns(runs: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """One column per name: the grid axis value when the run has that axis (``"full"`` stays
    ``"full"``), otherwise the runs.parquet column."""
    out = pd.DataFrame(index=runs.index)
    for name in names:
        values = []
        for i, axes in enumerate(runs["axes_dict"]):
            if name in axes:
                values.append(_label(axes[name]))
            elif name in runs.columns:
                values.append(_label(runs[name].iloc[i]))
            else:
                values.append("-")
        out[name] = values
    return out


def quantiles(values: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
    """(25th percentile, median, 75th percentile) with linear interpolation between order
    statistics (numpy's default); +inf values sort last and stay +inf; NaN are dropped."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return (math.nan, math.nan, math.nan)

    def at(q: float) -> float:
        h = (len(v) - 1) * q
        lo = math.floor(h)
        frac = h - lo
        if frac == 0:
            return float(v[lo])
        a, b = float(v[lo]), float(v[lo + 1])
        if math.isinf(b):
            return b
        return a + frac * (b - a)

    return (at(0.25), at(0.5), at(0.75))


def summarize_runs(runs: pd.DataFrame, group_by: Sequence[str] | None = None) -> pd.DataFrame:
    """Aggregate runs into one row per group (default: per configuration, i.e. ``config_id``).

    Per group: run and status counts; final and best loss median and interquartile range over
    the runs that trained (a diverged run's final loss counts as +inf: where it stopped is not a
    result); how many runs reached target and the median steps / samples / seconds to target over
    those that did; median steps/s and samples/s; median final validation accuracy.
    """
    if group_by:
        labels = list(group_by)
        keys = labels
    else:
        labels = axis_names(runs) or ["optimizer", "lr"]
        keys = ["config_id"]
    frame = label_columns(runs, labels)
    frame["config_id"] = runs["config_id"].to_numpy()
    rows = []
    grouper = keys if len(keys) > 1 else keys[0]
    for _, idx in frame.groupby(grouper, sort=False, dropna=False).groups.items():
        g = runs.loc[idx]
        trained = g[g["status"].isin(TRAINED)]
        final = trained["final_loss"].to_numpy(dtype=np.float64, na_value=np.nan).copy()
        final[(trained["status"] == "diverged").to_numpy() | np.isinf(final)] = math.inf
        best = trained["best_loss"].to_numpy(dtype=np.float64, na_value=np.nan)
        reached = trained[trained["steps_to_target"].notna()]
        target = g["target_loss"].dropna().unique()
        f25, f50, f75 = quantiles(final)
        b25, b50, b75 = quantiles(best)
        row: dict[str, Any] = {c: frame.loc[idx[0], c] for c in labels}
        configs = g["config_id"].unique()
        row["config_id"] = configs[0] if len(configs) == 1 else f"{len(configs)} configs"
        row["runs"] = len(g)
        row["seeds"] = int(g["seed"].nunique())
        counts = g["status"].value_counts()
        for s in STATUSES:
            row[f"n_{s}"] = int(counts.get(s, 0))
        row.update(
            final_loss_median=f50,
            final_loss_q25=f25,
            final_loss_q75=f75,
            best_loss_median=b50,
            best_loss_q25=b25,
            best_loss_q75=b75,
            target_loss=float(target[0]) if len(target) == 1 else math.nan,
            reached=len(reached) if len(target) else -1,
        )
        for c in TARGET_COLUMNS:
            q25, q50, q75 = quantiles(reached[c].to_numpy(np.float64, na_value=np.nan))
            row.update({f"{c}_median": q50, f"{c}_q25": q25, f"{c}_q75": q75})
        for c in ("steps_per_s", "samples_per_s", "final_val_accuracy"):
            row[f"{c}_median"] = quantiles(trained[c].to_numpy(np.float64, na_value=np.nan))[1]
        row.update(_throughput(trained))
        row["verdict"] = verdict_summary(g["verdict"])
        row["run_ids"] = list(g["run_id"])
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs["labels"] = labels
    # Two configurations that show the same axes (a grid edited between runs) need telling apart.
    if not group_by and table.duplicated(labels).any():
        table.attrs["labels"] = [*labels, "config_id"]
    return table


def verdict_summary(verdicts: pd.Series) -> str:
    """The seeds' learning-rate verdict: one word when they agree, else counts, commonest first."""
    counts = verdicts.dropna().value_counts()
    if counts.empty:
        return "-"
    if len(counts) == 1:
        return str(counts.index[0])
    return " ".join(f"{n} {v}" for v, n in counts.items())


def speed_key(row: pd.Series) -> tuple[float, float, float, float]:
    """Ranking of configurations by speed to target, deterministic quantities only: reliability
    first (the share of runs that reached target, higher is better), then the median steps to
    target, then the median samples to target (lower), then the median final loss (lower).
    Time never ranks here: ``headline`` lets it break a tie only outside the noise."""
    share = row["reached"] / row["runs"] if row["reached"] > 0 else 0.0

    def finite(v: Any) -> float:
        return math.inf if pd.isna(v) else float(v)

    return (
        -share,
        finite(row["steps_to_target_median"]),
        finite(row["samples_to_target_median"]),
        finite(row["final_loss_median"]),
    )


def tuned_axes(runs: pd.DataFrame) -> list[str]:
    """The axes ``--best`` picks over: the learning rate and the optimizer's own hyperparameters
    (axes that are keywords of the optimizer, e.g. ``momentum``), never problem axes, the batch
    size or the device."""
    kwargs: set[str] = set()
    for text in runs["optimizer_kwargs"].dropna().unique():
        kwargs |= set(json.loads(text) or {})
    return [a for a in axis_names(runs) if a == "lr" or a in kwargs]


def best_per_group(runs: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """DeepOBS protocol: tune the learning rate (and the optimizer's hyperparameters) per
    everything else. For each value of the other axes (optimizer, batch size, device, problem
    axes) keep the configuration that reaches target fastest in steps (steps, not seconds:
    within one batch size steps measure the same work without timing noise); ties, and groups
    where nothing reached target, go to the lowest median final loss. ``attrs["tuned"]`` and
    ``attrs["best_group"]`` say what was picked over, and per what."""
    tuned = tuned_axes(runs)
    group = [a for a in dict.fromkeys([*BEST_GROUP, *axis_names(runs)]) if a not in tuned]
    groups = label_columns(runs, group)
    groups["config_id"] = runs["config_id"].to_numpy()
    per_config = groups.drop_duplicates("config_id").set_index("config_id")
    keep = []
    by_group: dict[tuple[Any, ...], list[int]] = {}
    for i, cid in enumerate(table["config_id"]):
        by_group.setdefault(tuple(per_config.loc[cid]), []).append(i)
    for members in by_group.values():
        keep.append(min(members, key=lambda i: speed_key(table.iloc[i])))
    out = table.iloc[sorted(keep)].reset_index(drop=True)
    out.attrs.update(table.attrs)
    out.attrs["tuned"] = tuned or ["lr"]
    out.attrs["best_group"] = [g for g in group if g in axis_names(runs)] or list(BEST_GROUP)
    return out


def sort_table(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """Sort by a column of the summary (``-col``: descending); ``steps_to_target`` means its
    median. Missing values go last."""
    descending = column.startswith("-")
    name = column.lstrip("-")
    choices = [c for c in table.columns if c != "run_ids"]
    if name not in table.columns and f"{name}_median" in table.columns:
        name = f"{name}_median"
    if name not in choices:
        raise UsageError(f"--sort: unknown column {name!r} (choose from: {', '.join(choices)})")
    out = table.sort_values(
        name, ascending=not descending, na_position="last", kind="stable", key=_sortable
    ).reset_index(drop=True)
    out.attrs.update(table.attrs)
    return out


def _sortable(col: pd.Series) -> pd.Series:
    if col.dtype == object:
        numeric = pd.to_numeric(col, errors="coerce")
        if numeric.notna().all():
            return numeric
        return col.astype(str)
    return col
