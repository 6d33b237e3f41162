"""``--kind curves``: median minibatch loss per configuration with the IQR over seeds, and the
full-data evaluations as dots.

Smoothing never invents progress: full-batch runs are drawn raw (every step sees every sample,
so there is no sampling noise to average and a drop is a real drop), and a smoothed line always
has its raw median drawn faintly under it. A loss of exactly 0 cannot sit on a log axis: it is
drawn on the bottom edge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sgdbench import report
from sgdbench.errors import UsageError
from sgdbench.plot.data import (
    X_AXES,
    ema,
    nanquantiles,
    read_per_run,
    run_facts,
    stack,
    thin,
    x_columns,
)
from sgdbench.plot.style import config_label, config_styles, legend_outside, target_of

RAW_STYLE = {"lw": 0.6, "alpha": 0.3}  # the unsmoothed median under a smoothed line


@dataclass
class _Stored:
    """What the curves of one results folder are drawn from."""

    steps_by_run: dict[str, pd.DataFrame]  # with the x columns of every --x
    evals_by_run: dict[str, pd.DataFrame]
    full_batch: dict[str, bool]
    status: dict[str, str]
    span: int  # EMA span in steps; 1: not smoothed


def _load(results: Path, runs: pd.DataFrame, table: pd.DataFrame, smooth: int | None) -> _Stored:
    from sgdbench.store import EVALS_DIR, STEPS_DIR

    trained = runs[runs["status"].isin(report.TRAINED)]
    wanted = [rid for ids in table["run_ids"] for rid in ids if rid in set(trained["run_id"])]
    steps = read_per_run(results / STEPS_DIR, wanted, ["step", "samples_seen", "loss", "time_s"])
    evals_by_run = read_per_run(
        results / EVALS_DIR, wanted, ["step", "epoch", "samples_seen", "time_s", "train_loss"]
    )
    if not steps and not evals_by_run:
        raise UsageError(f"{results}: no steps or evaluations stored for these runs")
    facts = run_facts(results)
    per_epoch = facts["steps_per_epoch"].to_dict()
    steps_by_run = {rid: x_columns(g, per_epoch.get(rid)) for rid, g in steps.items()}
    longest = max((len(g) for g in steps_by_run.values()), default=1)
    return _Stored(
        steps_by_run=steps_by_run,
        evals_by_run=evals_by_run,
        full_batch=facts["full_batch"].to_dict(),
        status=dict(zip(runs["run_id"], runs["status"], strict=True)),
        span=smooth if smooth is not None else max(1, round(0.02 * longest)),
    )


def _series(row: pd.Series, stored: _Stored, x: str) -> dict[str, Any]:
    """One configuration's numbers: the quantiles of its (smoothed) loss at the drawn points,
    the raw median under a smoothed line, where its diverged runs stopped, its evaluations."""
    xcol, ecol, _ = X_AXES[x]
    item: dict[str, Any] = {}
    by_run = stored.steps_by_run
    ids = [rid for rid in row["run_ids"] if rid in by_run]
    if ids:
        raw = stack([by_run[r]["loss"].to_numpy(np.float64) for r in ids])
        smoothed = not all(stored.full_batch.get(r, False) for r in ids) and stored.span > 1
        losses = (
            stack([ema(by_run[r]["loss"].to_numpy(np.float64), stored.span) for r in ids])
            if smoothed
            else raw
        )
        # Only the drawn points need quantiles (smoothing above saw every step).
        keep = thin(losses.shape[1])
        xs = stack([by_run[r][xcol].to_numpy(np.float64) for r in ids])[:, keep]
        q25, q50, q75 = nanquantiles(losses[:, keep])
        xm = keep if x == "step" else nanquantiles(xs, (0.5,))[0]
        item.update(x=xm, q25=q25, q50=q50, q75=q75, n=len(ids))
        if smoothed:
            item["raw"] = nanquantiles(raw[:, keep], (0.5,))[0]
        item["diverged"] = [
            (by_run[r][xcol].iloc[-1], by_run[r]["loss"].iloc[-1])
            for r in ids
            if stored.status.get(r) == "diverged"
        ]
    eids = [rid for rid in row["run_ids"] if rid in stored.evals_by_run]
    if eids:
        ev = pd.concat([stored.evals_by_run[r] for r in eids])
        item["evals"] = ev.groupby("step").agg(x=(ecol, "median"), loss=("train_loss", "median"))
    return item


def _log_range(series: list[dict[str, Any]]) -> tuple[float, float, bool]:
    """(floor, top, some loss is <= 0) of the log axis. The floor, half the smallest positive
    loss, is where a zero loss is drawn; diverged runs would stretch the top to 1e9, so it is
    capped at 30x the largest starting loss."""
    finite_values = []
    initial = []
    for item in series:
        for key in ("q50", "raw"):
            if key in item:
                finite_values.append(item[key][np.isfinite(item[key])])
        if "evals" in item:
            loss = item["evals"]["loss"].to_numpy()
            finite_values.append(loss[np.isfinite(loss)])
            initial.append(float(loss[0]))
        elif "q50" in item:
            initial.append(float(item["q50"][0]))
    values = np.concatenate(finite_values) if finite_values else np.array([1.0])
    values = values if len(values) else np.array([1.0])
    positive = values[values > 0]
    floor = float(positive.min()) / 2 if len(positive) else 1e-12
    start = [v for v in initial if math.isfinite(v) and v > 0]
    top = min(float(values.max()) * 1.5, 30 * max(start)) if start else float(values.max()) * 1.5
    return floor, max(top, floor * 10), bool((values <= 0).any())


def _draw_series(ax: Any, series: list[dict[str, Any]], floor: float) -> bool:
    """The lines, bands and evaluation dots; True when some line is smoothed."""

    def on_axis(y: np.ndarray) -> np.ndarray:
        return np.where(y > 0, y, np.where(np.isnan(y), np.nan, floor))

    any_smoothed = False
    for item in series:
        st, label = item["style"], item["label"]
        if "q50" in item:
            if "raw" in item:
                any_smoothed = True
                ax.plot(item["x"], on_axis(item["raw"]), color=st["color"], **RAW_STYLE)
            ax.plot(item["x"], on_axis(item["q50"]), label=label, lw=1.6, **st)
            if item["n"] > 1:
                lo, hi = on_axis(item["q25"]), on_axis(item["q75"])
                ax.fill_between(item["x"], lo, hi, color=st["color"], alpha=0.18, lw=0)
            label = None  # the evaluations share the line's legend entry
        if "evals" in item:
            med = item["evals"]
            ax.plot(
                med["x"],
                on_axis(med["loss"].to_numpy()),
                ls="none",
                marker="o",
                ms=3.5,
                mec="white",
                mew=0.5,
                color=st["color"],
                label=label,
            )
    return any_smoothed


def _draw_diverged(ax: Any, series: list[dict[str, Any]], top: float) -> None:
    """An X where each diverged run stopped (at the top edge when off the axis)."""
    points = [
        (dx, dy, item["style"]["color"])
        for item in series
        if "q50" in item
        for dx, dy in item["diverged"]
    ]
    if not points:
        return
    for dx, dy, color in points:
        y = min(dy, top) if math.isfinite(dy) else top
        ax.plot(
            [dx],
            [y],
            marker="X",
            ms=9,
            color=color,
            mec="black",
            mew=0.6,
            ls="none",
            clip_on=False,
            zorder=5,
        )
    ax.plot(
        [], [], marker="X", ms=8, color="grey", mec="black", ls="none", label="run diverged here"
    )


def draw_curves(
    ax: Any, results: Path, runs: pd.DataFrame, table: pd.DataFrame, *, x: str, smooth: int | None
) -> str:
    """Draw the curves of ``table``'s configurations on ``ax``; returns the title."""
    stored = _load(results, runs, table, smooth)
    # First the numbers of every configuration, then the drawing: the log axis's floor (where a
    # zero loss is drawn) depends on all of them.
    labels = table.attrs["labels"]
    series = []
    for st, (_, row) in zip(config_styles(table), table.iterrows(), strict=True):
        series.append({"style": st, "label": config_label(row, labels), **_series(row, stored, x)})
    floor, top, has_zero = _log_range(series)
    any_smoothed = _draw_series(ax, series, floor)
    ax.set_yscale("log")
    ax.set_ylim(floor, top)
    _draw_diverged(ax, series, top)
    target = target_of(runs)
    if target is not None and target > 0:
        ax.axhline(target, color="grey", ls=(0, (4, 3)), lw=1, label=f"target loss {target:g}")
    if any_smoothed:
        smoothing = f"EMA span {stored.span} steps over the faint raw median; full-batch runs raw"
    else:
        smoothing = "not smoothed"
    if has_zero:
        smoothing += "; a loss of 0 sits on the bottom edge"
    ax.set_xlabel(X_AXES[x][2])
    ax.set_ylabel("loss (log scale)")
    ax.text(
        0.0,
        -0.12 if x == "step" else -0.13,
        f"lines: minibatch loss ({smoothing}); dots: full-data training loss at evaluations",
        transform=ax.transAxes,
        fontsize=8,
        color="#444444",
        va="top",
    )
    legend_outside(ax)
    return "training loss, median over seeds with IQR band"
