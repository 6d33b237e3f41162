"""``sgdbench report``: one row per configuration, aggregated over seeds (DESIGN §5).

``summarize_runs`` owns the math (medians, interquartile ranges, counts); every output format
(rich table, markdown, csv, json) and ``compare`` and ``plot`` read its frame. Only runs.parquet is
read, and only the columns needed; ``--target-loss`` also reads four columns of the evaluations.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sgdbench.errors import UsageError

REPORT_SCHEMA_VERSION = 1
STATUSES = ("ok", "diverged", "stalled", "timeout", "failed", "skipped")
# Runs that trained (their numbers mean something); failed and skipped runs are only counted.
TRAINED = ("ok", "diverged", "stalled", "timeout")
RUN_COLUMNS = [
    "run_id",
    "config_id",
    "axes",
    "status",
    "message",
    "optimizer",
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
]
TARGET_COLUMNS = ("steps_to_target", "samples_to_target", "time_to_target_s")
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
# --best: the DeepOBS / Crowded Valley protocol tunes the learning rate per optimizer, batch size
# and device.
BEST_GROUP = ("optimizer", "batch_size", "device")
# Verdicts listed under the table with their explanation (see sgdbench.diagnose).
DIAGNOSED = ("too_slow", "oscillating", "plateau")


# ---------------------------------------------------------------------------------------------
# loading


def load_runs(
    results: Path,
    *,
    extra_columns: Sequence[str] = (),
    target_loss: float | None = None,
    all_versions: bool = False,
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
    wanted = list(dict.fromkeys([*RUN_COLUMNS, *extra_columns, "grid_id"]))
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
        if left_out:
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

    if not math.isfinite(target_loss):
        raise UsageError(f"--target-loss must be a finite number, got {target_loss}")
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


# ---------------------------------------------------------------------------------------------
# the math: one function


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


def speed_key(row: pd.Series, metric: str = "steps_to_target") -> tuple[float, float, float]:
    """Ranking of configurations by speed to target: reliability first (the share of runs that
    reached target, higher is better), then the median ``metric`` (lower), then the median final
    loss (lower)."""
    share = row["reached"] / row["runs"] if row["reached"] > 0 else 0.0
    speed = row[f"{metric}_median"]
    speed = math.inf if pd.isna(speed) else speed
    loss = row["final_loss_median"]
    return (-share, speed, math.inf if pd.isna(loss) else loss)


def best_per_group(runs: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """DeepOBS protocol: for each optimizer × batch size × device keep the configuration (its
    learning rate, with any other axes) that reaches target fastest in steps (steps, not seconds:
    within one batch size and device steps measure the same work without timing noise); ties,
    and groups where nothing reached target, go to the lowest median final loss."""
    groups = label_columns(runs, BEST_GROUP)
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


# ---------------------------------------------------------------------------------------------
# headline


@dataclass
class Headline:
    """What the user reads first: the fastest configuration to target, how much faster it is
    than the slowest that also reached target, and what diverged or never got there."""

    target_loss: float | None
    fastest: dict[str, Any] | None = None
    slowest: dict[str, Any] | None = None
    times_faster: float | None = None
    fewer_steps: float | None = None
    not_reached: list[str] = field(default_factory=list)
    diverged: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    # runs whose learning rate looks wrong: too_slow, oscillating, plateau, stalled (+ why)
    diagnosed: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "target_loss": self.target_loss,
            "fastest": self.fastest,
            "slowest": self.slowest,
            "times_faster": self.times_faster,
            "fewer_steps": self.fewer_steps,
            "not_reached": self.not_reached,
            "diverged": self.diverged,
            "failed": self.failed,
            "diagnosed": self.diagnosed,
        }


def describe(row: pd.Series, labels: Sequence[str]) -> str:
    """``optimizer=sgd lr=0.3``: a configuration in words."""
    return " ".join(f"{c}={_plain(row[c])}" for c in labels)


def _plain(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def headline(runs: pd.DataFrame, table: pd.DataFrame) -> Headline:
    """Fastest to target by median training seconds (the benchmark's clock); reliability first,
    as in ``speed_key``."""
    labels = table.attrs["labels"]
    targets = runs["target_loss"].dropna().unique()
    head = Headline(target_loss=float(targets[0]) if len(targets) == 1 else None)
    reached = table[table["reached"] > 0]
    if len(targets) and len(reached):
        metric = "time_to_target_s"
        if reached[f"{metric}_median"].isna().any():
            metric = "steps_to_target"
        order = sorted(range(len(reached)), key=lambda i: speed_key(reached.iloc[i], metric))
        fast = reached.iloc[order[0]]
        slow_i = int(np.argmax(reached[f"{metric}_median"].to_numpy()))
        slow = reached.iloc[slow_i]
        head.fastest = _speed_summary(fast, labels)
        if len(reached) > 1 and slow_i != order[0]:
            head.slowest = _speed_summary(slow, labels)
            head.times_faster = _ratio(slow[f"{metric}_median"], fast[f"{metric}_median"])
            head.fewer_steps = _ratio(
                slow["steps_to_target_median"], fast["steps_to_target_median"]
            )
    if len(targets):
        head.not_reached = [describe(r, labels) for _, r in table.iterrows() if r["reached"] == 0]
    # A diverged run is named by its own grid axes, whatever the grouping.
    label_frame = label_columns(runs, axis_names(runs) or ["optimizer", "lr"])
    diagnosed = runs["verdict"].isin(DIAGNOSED).to_numpy() & (runs["status"] == "ok").to_numpy()
    for out, mask in (
        (head.diverged, (runs["status"] == "diverged").to_numpy()),
        (head.failed, (runs["status"] == "failed").to_numpy()),
        (head.diagnosed, diagnosed),
    ):
        for i in np.flatnonzero(mask):
            r = runs.iloc[i]
            message = r["message"] or ""
            if out is head.diagnosed:
                message = f"{r['verdict']}: {r['verdict_detail']}"
            out.append(
                {
                    "run_id": r["run_id"],
                    "configuration": " ".join(
                        f"{c}={_plain(label_frame.iloc[i][c])}" for c in label_frame.columns
                    ),
                    "seed": int(r["seed"]),
                    "message": message,
                }
            )
    return head


def _speed_summary(row: pd.Series, labels: Sequence[str]) -> dict[str, Any]:
    return {
        "configuration": describe(row, labels),
        "steps_to_target": _num(row["steps_to_target_median"]),
        "time_to_target_s": _num(row["time_to_target_s_median"]),
        "reached": int(row["reached"]),
        "runs": int(row["runs"]),
    }


def _ratio(a: float, b: float) -> float | None:
    if pd.isna(a) or pd.isna(b) or b <= 0:
        return None
    return float(a / b)


def _num(v: Any) -> Any:
    """A JSON-safe number: NaN and ±inf become None, numpy scalars plain Python."""
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, float | np.floating):
        return float(v) if math.isfinite(v) else None
    return v


MAX_LISTED = 10  # diverged/failed runs listed under the table; all of them are in --format json


def headline_blocks(head: Headline) -> list[tuple[str, list[str], bool]]:
    """The headline as (first line, detail lines, details-are-a-list) blocks."""
    blocks: list[tuple[str, list[str], bool]] = []
    target = f"loss ≤ {head.target_loss:g}" if head.target_loss is not None else "target"
    if head.target_loss is None and head.fastest is None:
        blocks.append(
            ("No single target_loss in these runs (set one in the grid or --target-loss).", [], 0)
        )
    if head.fastest:
        f = head.fastest
        details = [
            f"{_fmt_count(f['steps_to_target'])} steps, {fmt_seconds(f['time_to_target_s'])}"
            f" (median; {f['reached']}/{f['runs']} runs reached target)"
        ]
        if head.slowest and head.times_faster:
            s = head.slowest
            fewer = f" ({head.fewer_steps:.2f}× fewer steps)" if head.fewer_steps else ""
            details.append(f"{head.times_faster:.2f}× faster{fewer} than the slowest to target,")
            details.append(
                f"{s['configuration']}: {_fmt_count(s['steps_to_target'])} steps, "
                f"{fmt_seconds(s['time_to_target_s'])}"
            )
        blocks.append((f"Fastest to {target}: {f['configuration']}", details, False))
    elif head.target_loss is not None:
        blocks.append((f"No configuration reached {target}.", [], False))
    if head.not_reached and head.fastest:
        blocks.append((f"Never reached {target}: " + "; ".join(head.not_reached), [], False))
    for what, items in (
        ("Diverged", head.diverged),
        ("Failed", head.failed),
        ("Learning rate to revisit", head.diagnosed),
    ):
        if items:
            details = []
            for d in items[:MAX_LISTED]:
                message = f": {d['message']}" if d["message"] else ""
                details.append(f"{d['run_id']}  {d['configuration']} seed={d['seed']}{message}")
            if len(items) > MAX_LISTED:
                details.append(f"… and {len(items) - MAX_LISTED} more (--format json lists all)")
            blocks.append((f"{what}: {len(items)} run(s)", details, True))
    return blocks


def headline_lines(head: Headline) -> list[str]:
    """The headline for a terminal: details indented under their first line."""
    return [
        line
        for first, details, _ in headline_blocks(head)
        for line in [first, *(f"    {d}" for d in details)]
    ]


# ---------------------------------------------------------------------------------------------
# number formatting: three significant digits, units on times


def fmt_sig(x: Any, digits: int = 3) -> str:
    """3 significant digits; plain notation between 1e-3 and 1e5, else compact scientific."""
    if x is None or pd.isna(x):
        return "-"
    x = float(x)
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e5:
        decimals = max(0, digits - 1 - math.floor(math.log10(abs(x))))
        return f"{x:.{decimals}f}"
    mantissa, exp = f"{x:.{digits - 1}e}".split("e")
    return f"{mantissa}e{int(exp)}"


def fmt_seconds(x: Any) -> str:
    """Seconds with a unit that keeps 3 significant digits readable: µs, ms, s, min."""
    if x is None or pd.isna(x):
        return "-"
    x = float(x)
    for scale, unit in ((1e-6, "µs"), (1e-3, "ms"), (1.0, "s")):
        if abs(x) < scale * 1000:
            return f"{fmt_sig(x / scale)} {unit}"
    if x < 3600:
        return f"{fmt_sig(x / 60)} min"
    return f"{fmt_sig(x / 3600)} h"


def fmt_rate(x: Any) -> str:
    """A rate with an SI prefix: 4.78k, 1.20M."""
    if x is None or pd.isna(x):
        return "-"
    x = float(x)
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{fmt_sig(x / scale)}{prefix}"
    return fmt_sig(x)


def _fmt_count(x: Any) -> str:
    if x is None or pd.isna(x):
        return "-"
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"


def _fmt_status(row: pd.Series) -> str:
    return " ".join(
        f"{row[f'n_{s}']} {s if s != 'diverged' else 'div'}" for s in STATUSES if row[f"n_{s}"]
    )


def _fmt_reached(row: pd.Series) -> str:
    return "-" if row["reached"] < 0 else f"{row['reached']}/{row['runs']}"


def _fmt_iqr(lo: Any, hi: Any) -> str:
    if pd.isna(lo) or pd.isna(hi):
        return "-"
    return f"{fmt_sig(lo)}, {fmt_sig(hi)}"


# ---------------------------------------------------------------------------------------------
# formats


def display_rows(table: pd.DataFrame, *, wide: bool) -> tuple[list[str], list[list[str]]]:
    """Header and formatted cells. The terminal table (``wide=False``) fits 100 columns: the
    final loss IQR is its width (q75 - q25); ``wide`` (markdown) gives the quartiles themselves,
    the run count, samples to target and samples/s."""
    labels = table.attrs["labels"]
    has_val = table["final_val_accuracy_median"].notna().any()
    has_target = (table["reached"] >= 0).any()
    header = [*labels]
    if wide:
        header += ["runs", "status", "verdict", "final loss [IQR]", "best loss [IQR]"]
    else:
        header += ["status", "verdict", "final\nloss", "IQR"]
    if has_target:
        header += ["reached", "steps→target" if wide else "steps to\ntarget"]
        header += ["samples→target", "time→target"] if wide else ["time to\ntarget"]
    header += ["steps/s", "samples/s"] if wide else ["steps/s"]
    if has_val:
        header += ["val acc"]
    rows = []
    for _, r in table.iterrows():
        cells = [_plain(r[c]) for c in labels]
        if wide:
            cells += [str(r["runs"]), _fmt_status(r), r["verdict"]]
            for c in ("final_loss", "best_loss"):
                quartiles = _fmt_iqr(r[f"{c}_q25"], r[f"{c}_q75"])
                cells.append(f"{fmt_sig(r[f'{c}_median'])} [{quartiles}]")
        else:
            width = r["final_loss_q75"] - r["final_loss_q25"]
            cells += [_fmt_status(r), r["verdict"], fmt_sig(r["final_loss_median"])]
            cells.append(fmt_sig(width, 2))
        if has_target:
            cells += [_fmt_reached(r), _fmt_count(r["steps_to_target_median"])]
            if wide:
                cells.append(_fmt_count(r["samples_to_target_median"]))
            cells.append(fmt_seconds(r["time_to_target_s_median"]))
        cells.append(fmt_rate(r["steps_per_s_median"]))
        if wide:
            cells.append(fmt_rate(r["samples_per_s_median"]))
        if has_val:
            acc = r["final_val_accuracy_median"]
            cells.append("-" if pd.isna(acc) else f"{100 * acc:.1f}%")
        rows.append(cells)
    return header, rows


def to_rich(
    table: pd.DataFrame, head: Headline, *, color: bool = False, width: int = 100, title: str = ""
) -> str:
    """A rich table (at most ``width`` columns) and the headline under it."""

    from rich import box
    from rich.table import Table

    header, rows = display_rows(table, wide=False)
    labels = table.attrs["labels"]
    t = Table(
        box=box.SIMPLE_HEAD,
        title=title or None,
        title_justify="left",
        pad_edge=False,
        padding=(0, 1),
        header_style="bold" if color else "",
        title_style="bold" if color else "",
    )
    for i, h in enumerate(header):
        label = i < len(labels)
        widest = max(len(h), *(len(r[i]) for r in rows))
        t.add_column(
            h,
            justify="left" if label else "right",
            overflow="fold",
            no_wrap=not label,
            min_width=min(widest, 16) if label else None,
        )
    fastest = head.fastest["configuration"] if head.fastest else None
    for (_, r), cells in zip(table.iterrows(), rows, strict=True):
        style = ""
        if color and fastest and describe(r, labels) == fastest:
            style = "green"
        elif color and r["n_diverged"]:
            style = "red"
        t.add_row(*cells, style=style)
    return render_rich(t, headline_lines(head), color=color, width=width)


def render_rich(table: Any, lines: Sequence[str], *, color: bool, width: int) -> str:
    """A rich table and plain lines under it, as text (ANSI colours only when ``color``)."""
    from io import StringIO

    from rich.console import Console

    buf = StringIO()
    console = Console(
        file=buf,
        width=width,
        force_terminal=color,
        no_color=not color,
        color_system="standard" if color else None,
        highlight=False,
        emoji=False,
    )
    console.print(table)
    for line in lines:
        console.print(line, markup=False, overflow="fold")
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()) + "\n"


def to_markdown(table: pd.DataFrame, head: Headline, title: str = "") -> str:
    header, rows = display_rows(table, wide=True)
    n_labels = len(table.attrs["labels"])
    esc = [[c.replace("|", "\\|") for c in row] for row in [header, *rows]]
    align = ["---" if i < n_labels else "---:" for i in range(len(header))]
    lines = [f"**{title}**", ""] if title else []
    lines.append("| " + " | ".join(esc[0]) + " |")
    lines.append("| " + " | ".join(align) + " |")
    lines += ["| " + " | ".join(r) + " |" for r in esc[1:]]
    lines.append("")
    for first, details, is_list in headline_blocks(head):
        if is_list:
            items = [d if d.startswith("…") else f"`{d[:12]}`{d[12:]}" for d in details]
            lines += ["", f"**{first}**", "", *(f"- {d}" for d in items)]
        else:
            title, _, rest = first.partition(": ")
            text = f"**{title}:** {rest}" if rest else first
            if details:
                text += " — " + details[0] + ("; " + " ".join(details[1:]) if details[1:] else "")
            lines += ["", text]
    return "\n".join(lines).rstrip() + "\n"


def to_csv(table: pd.DataFrame) -> str:
    return table.drop(columns=["run_ids"]).to_csv(index=False)


def to_json(table: pd.DataFrame, head: Headline, results: Path, group_by: list[str]) -> str:
    records = [
        {k: ([_num(x) for x in v] if isinstance(v, list) else _num(v)) for k, v in r.items()}
        for r in table.to_dict(orient="records")
    ]
    doc = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "results": str(results),
        "group_by": group_by,
        "labels": table.attrs["labels"],
        "configurations": records,
        "headline": head.to_json(),
    }
    return json.dumps(doc, indent=2, allow_nan=False) + "\n"


# ---------------------------------------------------------------------------------------------
# entry point


def parse_columns(text: str | None) -> list[str]:
    return [c.strip() for c in (text or "").split(",") if c.strip()]


def build(
    results: Path,
    *,
    by: str | None = None,
    best: bool = False,
    sort: str | None = None,
    target_loss: float | None = None,
    all_versions: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame, Headline]:
    """(runs, summary table, headline) for a results folder: what every format prints."""
    group_by = parse_columns(by)
    if best and group_by:
        raise UsageError("--best and --by do not mix: --best groups by optimizer × batch size")
    extra = [c for c in group_by if c in BY_COLUMNS]
    runs = load_runs(
        Path(results), extra_columns=extra, target_loss=target_loss, all_versions=all_versions
    )
    choices = list(dict.fromkeys([*axis_names(runs), *BY_COLUMNS]))
    unknown = [c for c in group_by if c not in choices]
    if unknown:
        raise UsageError(f"--by: unknown column {unknown[0]!r} (choose from: {', '.join(choices)})")
    table = summarize_runs(runs, group_by or None)
    if best:
        table = best_per_group(runs, table)
    if sort:
        table = sort_table(table, sort)
    return runs, table, headline(runs, table)


def render(
    results: Path,
    *,
    by: str | None = None,
    best: bool = False,
    fmt: str = "table",
    sort: str | None = None,
    target_loss: float | None = None,
    color: bool = False,
    width: int = 100,
    all_versions: bool = False,
) -> str:
    """The report of a results folder as text in ``fmt`` (table, markdown, csv, json)."""
    results = Path(results)
    _, table, head = build(
        results, by=by, best=best, sort=sort, target_loss=target_loss, all_versions=all_versions
    )
    what = "group(s)" if by else "configuration(s)"
    title = f"{results.name}: {len(table)} {what}" + (" — best lr" if best else "")
    if fmt == "json":
        return to_json(table, head, results, parse_columns(by))
    if fmt == "csv":
        return to_csv(table)
    if fmt == "markdown":
        return to_markdown(table, head, title)
    return to_rich(table, head, color=color, width=width, title=title)
