"""``--kind speed``: steps, samples or seconds to the target loss, one bar per configuration."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from sgdbench import report
from sgdbench.errors import UsageError
from sgdbench.plot.style import style


def bar_height(table: pd.DataFrame) -> float:
    return min(2.0 + 0.35 * len(table), 16.0)


def draw_speed(ax: Any, table: pd.DataFrame, *, x: str) -> str:
    labels = table.attrs["labels"]
    metric = {"time": "time_to_target_s", "samples": "samples_to_target"}.get(x, "steps_to_target")
    if (table["reached"] < 0).all():
        raise UsageError("no target_loss in these runs: set one in the grid (train.target_loss)")
    colour_by = [c for c in labels if c not in ("lr", "config_id")][:1]
    groups = list(dict.fromkeys(table[colour_by[0]])) if colour_by else []
    n = len(table)
    ypos = np.arange(n)[::-1]
    med = table[f"{metric}_median"].to_numpy(np.float64)
    reachable = np.isfinite(med)
    xmax = float(np.nanmax(table[f"{metric}_q75"])) if reachable.any() else 1.0
    for y, (_, row), m in zip(ypos, table.iterrows(), med, strict=True):
        g = groups.index(row[colour_by[0]]) if colour_by else 0
        color = style(g)["color"]
        if math.isfinite(m):
            ax.barh(y, m, color=color, height=0.7)
            ax.errorbar(
                m,
                y,
                xerr=[[m - row[f"{metric}_q25"]], [row[f"{metric}_q75"] - m]],
                color="black",
                lw=1,
                capsize=3,
            )
            shown = report.fmt_seconds(m) if x == "time" else report.fmt_count(m)
            ax.annotate(
                f"{shown}  ({row['reached']}/{row['runs']} reached)",
                (max(m, row[f"{metric}_q75"]), y),
                xytext=(5, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
            )
        else:
            why = "not reached"
            if row["n_diverged"]:
                why += f" ({row['n_diverged']}/{row['runs']} diverged)"
            ax.barh(y, xmax * 0.02, color="none", edgecolor="#999999", hatch="///", height=0.7)
            ax.annotate(
                why,
                (0, y),
                xytext=(12, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
                color="#555555",
                style="italic",
            )
    ax.set_yticks(ypos, [report.describe(r, labels) for _, r in table.iterrows()])
    ax.set_xlim(0, xmax * 1.35)
    if not reachable.any():
        ax.set_xticks([])
        ax.text(
            0.5,
            0.5,
            "no configuration reached the target",
            transform=ax.transAxes,
            ha="center",
            va="center",
            fontsize=11,
            color="#555555",
        )
    ax.grid(axis="y", visible=False)
    unit = {"time": "training seconds", "samples": "samples"}.get(x, "steps")
    ax.set_xlabel(f"{unit} to target (median over seeds that reached it; bars: IQR)")
    target = table["target_loss"].dropna().unique()
    what = f"loss ≤ {target[0]:g}" if len(target) == 1 else "target"
    title = f"{unit} to {what}"
    if x == "time":
        from matplotlib.ticker import FuncFormatter

        ax.xaxis.set_major_formatter(
            FuncFormatter(lambda v, _: report.fmt_seconds(v) if v > 0 else "0")
        )
    return title
