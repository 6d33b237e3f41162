"""The numbers behind the loss curves: stored rows per run, smoothing, quantiles, x positions.

Curves smooth the per-step minibatch loss with a bias-corrected exponential moving average
(``pandas.Series.ewm(span=N, adjust=True)``): see ``ema``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

MAX_POINTS = 2000  # points per drawn line; longer curves are thinned evenly

X_AXES = {
    # --x: (steps column, evals column, axis label)
    "step": ("step", "step", "step"),
    "samples": ("samples_before", "samples_seen", "training samples seen"),
    "epoch": ("epoch_x", "epoch", "epoch"),
    "time": ("time_s", "time_s", "training time (s)"),
}


def read_per_run(
    folder: Path, run_ids: Sequence[str], columns: list[str]
) -> dict[str, pd.DataFrame]:
    """Each run's rows (one file per run), sorted by step. The run_id column is not read: a
    million-step run would spend seconds building and grouping a million equal strings."""
    from sgdbench.store import read_table  # pyarrow and the engine's tables: only when drawing

    out = {}
    for rid in run_ids:
        path = folder / f"{rid}.parquet"
        if path.exists():
            frame = read_table(path, columns).to_pandas()
            if not frame["step"].is_monotonic_increasing:
                frame = frame.sort_values("step", kind="stable", ignore_index=True)
            out[rid] = frame
    return out


def ema(values: np.ndarray, span: int) -> np.ndarray:
    """Bias-corrected exponential moving average; non-finite losses are skipped.

    Weights ``(1 - 2/(span+1))**k`` on the loss ``k`` steps back, normalized, so the first
    points are not pulled towards zero."""
    if span <= 1:
        return values
    series = pd.Series(np.where(np.isfinite(values), values, np.nan))
    return series.ewm(span=span, adjust=True, ignore_na=True).mean().to_numpy()


def stack(per_run: list[np.ndarray]) -> np.ndarray:
    """Runs of unequal length (diverged ones stop early) as rows padded with NaN."""
    length = max(len(a) for a in per_run)
    out = np.full((len(per_run), length), np.nan)
    for i, a in enumerate(per_run):
        out[i, : len(a)] = a
    return out


def nanquantiles(stack: np.ndarray, qs: Sequence[float] = (0.25, 0.5, 0.75)) -> list[np.ndarray]:
    """Per-column quantiles of ``stack`` (runs x steps), ignoring NaN, with the same linear
    interpolation as ``np.nanpercentile``; an all-NaN column gives NaN.

    One sort along the (short) run axis and a gather: ``np.nanpercentile(axis=0)`` calls a Python
    function per column, which took 50 s on a run of a million steps.
    """
    ordered = np.sort(stack, axis=0)  # NaN sorts last
    count = (~np.isnan(stack)).sum(axis=0)
    cols = np.arange(stack.shape[1])
    out = []
    for q in qs:
        pos = np.maximum(count - 1, 0) * q
        lo = np.floor(pos).astype(np.int64)
        hi = np.ceil(pos).astype(np.int64)
        frac = pos - lo
        low, high = ordered[lo, cols], ordered[hi, cols]
        with np.errstate(invalid="ignore"):  # inf - inf where both neighbours are infinite
            value = np.where(frac == 0, low, low + (high - low) * frac)
        out.append(np.where(count > 0, value, np.nan))
    return out


def thin(n: int) -> np.ndarray:
    """Indices of at most MAX_POINTS evenly spread points out of ``n``."""
    if n <= MAX_POINTS:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, MAX_POINTS).round().astype(np.int64))


def x_columns(g: pd.DataFrame, steps_per_epoch: float | None) -> pd.DataFrame:
    """The x positions of one run's steps. A step's loss is computed before its update, after
    ``step`` updates: at ``samples_seen`` of the previous step and at ``step / steps_per_epoch``
    epochs, exactly where the evaluations after that many updates are placed."""
    samples = g["samples_seen"].to_numpy(np.int64)
    before = np.concatenate([[0], samples[:-1]]) if len(samples) else samples
    epoch = g["step"].to_numpy(np.float64) / (steps_per_epoch or np.nan)
    return g.assign(samples_before=before, epoch_x=epoch)


def run_facts(results: Path) -> pd.DataFrame:
    """Per run: steps per epoch and whether it was full batch (from runs.parquet)."""
    import pyarrow.parquet as pq

    from sgdbench.store import RUNS_FILE

    path = results / RUNS_FILE
    present = set(pq.read_schema(path).names)
    columns = [c for c in ("run_id", "spec", "full_batch") if c in present]
    facts = pq.read_table(path, columns=columns).to_pandas().set_index("run_id")
    specs = facts["spec"] if "spec" in facts else pd.Series(None, index=facts.index)
    facts["steps_per_epoch"] = [
        (json.loads(s).get("steps_per_epoch") if isinstance(s, str) else None) or np.nan
        for s in specs
    ]
    if "full_batch" not in facts:
        facts["full_batch"] = False
    facts["full_batch"] = facts["full_batch"].fillna(False).astype(bool)
    return facts[["steps_per_epoch", "full_batch"]]
