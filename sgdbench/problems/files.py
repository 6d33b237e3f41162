"""The ``file`` problem: a user's CSV or Parquet table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sgdbench.errors import KeyedError
from sgdbench.problems.base import Problem
from sgdbench.problems.builtin import cross_entropy_loss, mlp, mse_loss, split


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a .csv or .parquet file into a DataFrame."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".csv":
            return pd.read_csv(path)
        return pd.read_parquet(path)
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise KeyedError("path", f"cannot read {path.name}: {e}".splitlines()[0]) from None


def from_table(
    path: str,
    target: str,
    features: list[str] | None = None,
    task: str = "regression",
    model: str = "linear",
    hidden: list[int] | None = None,
    val_fraction: float = 0.0,
    standardize: bool = False,
    seed: int = 0,
) -> Problem:
    """Build a regression or classification problem from the columns of a table.

    Rows keep file order (``shuffle = false`` then trains in exactly that order).
    Classification targets are mapped to 0..C-1 in sorted order of their values.
    """
    df = read_table(path)
    name = Path(path).name
    if len(df) == 0:
        raise KeyedError("path", f"{name} has no rows")
    if target not in df.columns:
        raise KeyedError(
            "target", f"no column {target!r} in {name} (columns: {', '.join(map(str, df.columns))})"
        )
    features = features or [c for c in df.columns if c != target]
    if not features:
        raise KeyedError("features", f"{name} has no feature columns besides {target!r}")
    for col in features:
        if col not in df.columns:
            raise KeyedError("features", f"no column {col!r} in {name}")
        if col == target:
            raise KeyedError("features", f"the target {target!r} cannot be a feature")
        if not pd.api.types.is_numeric_dtype(df[col]):
            raise KeyedError("features", f"column {col!r} in {name} is not numeric")
    for col in [*features, target]:
        missing = int(df[col].isna().sum())
        if missing:
            raise KeyedError("path", f"column {col!r} in {name} has {missing} missing values")
    # copy=True: with pandas copy-on-write a column already float32 comes back as a read-only
    # view, and torch.from_numpy warns on (and must not share) memory it may not write.
    X_np = df[features].to_numpy(dtype=np.float32, copy=True)
    if not np.isfinite(X_np).all():
        raise KeyedError("path", f"{name} has non-finite feature values")
    if standardize:
        std = X_np.std(axis=0)
        X_np = (X_np - X_np.mean(axis=0)) / np.where(std > 0, std, 1.0)
    X = torch.from_numpy(np.ascontiguousarray(X_np, dtype=np.float32))
    if task == "classification":
        values = sorted(df[target].unique().tolist())
        if len(values) < 2:
            raise KeyedError("target", f"column {target!r} has a single class")
        index = {v: i for i, v in enumerate(values)}
        y = torch.tensor([index[v] for v in df[target]], dtype=torch.long)
        n_out, loss = len(values), cross_entropy_loss
    else:
        if not pd.api.types.is_numeric_dtype(df[target]):
            raise KeyedError("target", f"column {target!r} is not numeric (task = regression)")
        y = torch.from_numpy(df[target].to_numpy(dtype=np.float32, copy=True))
        n_out, loss = 1, mse_loss
    X, y, X_val, y_val = split(X, y, val_fraction, seed)
    net = mlp(X.shape[1], (hidden or [64]) if model == "mlp" else [], n_out)
    return Problem(net, loss, X, y, X_val, y_val, task=task)  # type: ignore[arg-type]
