"""Load two results folders' runs and match their configurations.

Configurations are matched by the values of their grid axes (seed excluded): the union of both
folders' axes, a value a folder does not vary read from its run spec; the problem (with its
parameters), optimizer and batch size must match too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sgdbench import metrics, report, timing

# Matched on top of the axes, from the run spec: what is optimized, and by what.
IDENTITY = ("problem", "problem_kwargs", "optimizer", "batch_size")
# env.json fields that make timings of two folders incomparable: machine, torch, threads.
ENV_FIELDS = ("hostname", "processor", "cpu_count", "torch_version", "torch_threads")


def _key_value(name: str, axes: dict[str, Any], spec: dict[str, Any]) -> Any:
    if name in ("lr", "batch_size") and name in spec:  # "full" and 1000 are the same batch
        return spec[name]
    if name in axes:
        return axes[name]
    if name in spec:
        return spec[name]
    return spec.get("optimizer_kwargs", {}).get(name)


def match_keys(runs: pd.DataFrame, table: pd.DataFrame, names: list[str]) -> list[str]:
    """One key per summary row: the JSON of its axis values."""
    first = runs.drop_duplicates("config_id").set_index("config_id")
    keys = []
    for cid in table["config_id"]:
        row = first.loc[cid]
        spec = json.loads(row["spec"]) if row["spec"] else {}
        values = {n: _key_value(n, row["axes_dict"], spec) for n in names}
        keys.append(json.dumps(values, sort_keys=True, default=str))
    return keys


def first_runs(runs: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """The first run of each configuration of ``table``, in its order."""
    first = runs.drop_duplicates("config_id").set_index("config_id")
    return first.loc[list(table["config_id"])].reset_index()


def trained(runs: pd.DataFrame, run_ids: list[str]) -> pd.DataFrame:
    return runs[runs["run_id"].isin(run_ids) & runs["status"].isin(report.TRAINED)]


def has_cpu_time(runs: pd.DataFrame) -> bool:
    """Whether every window of these runs has its CPU time (CPU runs of newer results)."""
    cpu = runs["window_cpu_s"]
    return bool(len(runs)) and all(
        c is not None and len(c) > 0 and np.isfinite(np.asarray(c, dtype=np.float64)).all()
        for c in cpu
    )


def units(runs: pd.DataFrame, clock: str, probe: bool = False) -> list[timing.Windows]:
    """The timed windows (steps) of ``runs`` by ``clock`` (a column), one unit per repeat;
    ``probe``: timed in probe times (``in_probe_times``)."""
    seconds = in_probe_times(runs, clock) if probe else runs[clock]
    return metrics.pooled_windows(runs["window_steps"], seconds, runs["window_repeat"])


def has_probes(runs: pd.DataFrame) -> bool:
    """Whether every run of ``runs`` with timed windows timed the machine-speed probe."""
    return bool(len(runs)) and all(
        p is not None and np.isfinite(np.asarray(p, dtype=np.float64)).any()
        for w, p in zip(runs["window_steps"], runs["window_probe_s"], strict=True)
        if w is not None and len(w)
    )


def in_probe_times(runs: pd.DataFrame, clock: str) -> pd.Series:
    """Each run's window times (``clock``) divided by the probe's time beside the window: the
    next probe (taken after the window or a later one of the same repeat), else the last
    one before it (``sgdbench.engine.probe``). Each probe time is first the median of it and
    its neighbours, two on each side: a probe interrupted once (10x its usual time, seen on a
    loaded machine) would otherwise rescale every window paired with it."""
    out = []
    for t, p, r in zip(runs[clock], runs["window_probe_s"], runs["window_repeat"], strict=True):
        t = np.asarray(t, dtype=np.float64)
        p = np.asarray(p if p is not None and len(p) == len(t) else [np.nan] * len(t), float)
        r = np.zeros(len(t)) if r is None else np.asarray(r)
        beside = np.full(len(t), np.nan)
        for k in np.unique(r):
            at = np.flatnonzero(r == k)
            probes = pd.Series(p[at])
            taken = probes.dropna()
            probes[taken.index] = taken.rolling(5, center=True, min_periods=1).median()
            beside[at] = probes.bfill().ffill().to_numpy()
        out.append(t / beside)
    return pd.Series(out, index=runs.index, dtype=object)


def trajectory(base_runs: pd.DataFrame, new_runs: pd.DataFrame) -> dict[str, Any]:
    """Whether the seeds both sides ran have bitwise-identical losses (equal loss digests)."""
    b = base_runs.dropna(subset=["loss_digest"]).drop_duplicates("seed").set_index("seed")
    n = new_runs.dropna(subset=["loss_digest"]).drop_duplicates("seed").set_index("seed")
    seeds = sorted(set(b.index) & set(n.index))
    differ = [s for s in seeds if b.loc[s, "loss_digest"] != n.loc[s, "loss_digest"]]
    return {"seeds": len(seeds), "differ": len(differ), "identical": bool(seeds) and not differ}


def _read_env(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / "env.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def environment_differences(base_dir: Path, new_dir: Path) -> list[str]:
    """The ``ENV_FIELDS`` whose values differ between the folders' env.json files."""
    base, new = _read_env(base_dir), _read_env(new_dir)
    if not base or not new:
        return []
    return [f"{k} {base.get(k)} vs {new.get(k)}" for k in ENV_FIELDS if base.get(k) != new.get(k)]


def same_environment(base_dir: Path, new_dir: Path) -> bool:
    """Whether both folders have an env.json and they agree on every ``ENV_FIELDS``."""
    base, new = _read_env(base_dir), _read_env(new_dir)
    return bool(base) and bool(new) and not environment_differences(base_dir, new_dir)
