"""``--kind lr``: final (or best) loss against the learning rate, one line per optimizer."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from sgdbench import report
from sgdbench.errors import UsageError
from sgdbench.plot.style import DIVERGED_COLOR, legend_outside, style, target_of


def tick_labels(values: Sequence[float], *, min_gap: float) -> list[str]:
    """Labels for ticks at increasing ``values`` on a log axis. The smallest and largest are
    always labelled (the range that was run); a tick closer than ``min_gap`` decades to a
    labelled neighbour stays unlabelled ("1" and "1.1" would print over each other)."""
    logs = [math.log10(v) for v in values]
    out = []
    last = -math.inf
    for i, (v, here) in enumerate(zip(values, logs, strict=True)):
        is_end = i in (0, len(values) - 1)
        if is_end or (here - last >= min_gap and logs[-1] - here >= min_gap):
            out.append(f"{v:g}")
            last = here
        else:
            out.append("")
    return out


def draw_lr(ax: Any, runs: pd.DataFrame, table: pd.DataFrame, *, metric: str) -> str:
    """One line per optimizer × batch size (× any other axis): median loss against lr, IQR as a
    bar. A configuration with diverged seeds gets an X and "k/n div"; one whose median diverged
    (its final loss is +inf) sits on a dotted "diverged" line a decade above the finite data."""
    from matplotlib.ticker import FuncFormatter, NullFormatter, NullLocator

    labels = [c for c in table.attrs["labels"] if c not in ("lr", "config_id")]
    lr_of = dict(zip(runs["config_id"], runs["lr"], strict=True))
    # Configurations successive halving pruned stopped short of the budget: no final loss to
    # compare, so they are left out (the title counts them) rather than drawn as diverged.
    run_lrs = sorted({lr_of[c] for c in table["config_id"]})  # pruned ones included
    if len(run_lrs) < 2:
        only = f" (lr={run_lrs[0]:g})" if run_lrs else ""
        raise UsageError(
            f"--kind lr needs two learning rates or more; these runs have one{only}: "
            "give grid.lr several values, or use --kind curves"
        )
    pruned = table["n_pruned"] == table["runs"]
    frame = table[~pruned].copy()
    frame["lr_value"] = [lr_of[c] for c in frame["config_id"]]
    col = f"{metric}_loss"
    finite = frame[[f"{col}_median", f"{col}_q25", f"{col}_q75"]].to_numpy(np.float64)
    finite = finite[np.isfinite(finite) & (finite > 0)]
    if not len(finite):
        finite = np.array([1.0])
    target = target_of(runs)
    floor = float(finite.min()) / 2
    ceiling = max(float(finite.max()), target or 0.0) * 10
    groups = frame.groupby(labels, sort=False) if labels else [((), frame)]
    any_diverged = False
    for i, (_, g) in enumerate(groups):
        g = g.sort_values("lr_value")
        st = style(i)
        if labels:
            name = report.describe(g.iloc[0], labels)
        else:  # nothing but lr varies: name the fixed optimizer and batch size
            fixed = report.label_columns(runs.iloc[:1], ["optimizer", "batch_size"])
            name = report.describe(fixed.iloc[0], ["optimizer", "batch_size"])
        lr = g["lr_value"].to_numpy(np.float64)
        y = g[f"{col}_median"].to_numpy(np.float64)
        # A loss of exactly 0 cannot sit on a log axis: drawn at the floor as a down triangle.
        yplot = np.where(np.isfinite(y), np.maximum(y, floor), ceiling)
        ax.plot(lr, yplot, marker="o", ms=5, lw=1.6, label=name, **st)
        zero = y <= 0
        if zero.any():
            ax.plot(lr[zero], yplot[zero], ls="none", marker="v", ms=8, color=st["color"])
            for x in lr[zero]:
                ax.annotate(
                    "0",
                    (x, floor),
                    xytext=(7, 0),
                    textcoords="offset points",
                    va="center",
                    fontsize=7,
                    color="#333333",
                )
        lo = np.maximum(g[f"{col}_q25"].to_numpy(np.float64), floor)
        hi = g[f"{col}_q75"].to_numpy(np.float64)
        ok = np.isfinite(lo) & np.isfinite(hi) & np.isfinite(y)
        ax.vlines(lr[ok], lo[ok], hi[ok], color=st["color"], lw=4, alpha=0.35)
        n_div = g["n_diverged"].to_numpy()
        div = n_div > 0
        if div.any():
            any_diverged = True
            ax.plot(
                lr[div],
                yplot[div],
                ls="none",
                marker="X",
                ms=11,
                color=st["color"],
                mec="black",
                mew=0.8,
                zorder=5,
            )
            previous = None
            for x, yv, n, total in zip(
                lr[div], yplot[div], n_div[div], g["runs"][div], strict=True
            ):
                # Adjacent learning rates with the same count share one label (no pile-up).
                if (n, total) == previous:
                    continue
                previous = (n, total)
                ax.annotate(
                    f"{n}/{total} div",
                    (x, yv),
                    xytext=(0, -13),
                    ha="center",
                    va="top",
                    fontsize=7,
                    textcoords="offset points",
                    color="#333333",
                )
    if any_diverged:
        ax.axhline(ceiling, color=DIVERGED_COLOR, ls=":", lw=1)
        # Under the line: above it, the label would sit against the title.
        ax.annotate(
            "median diverged",
            (0.0, ceiling),
            xycoords=("axes fraction", "data"),
            xytext=(2, -3),
            textcoords="offset points",
            ha="left",
            va="top",
            fontsize=7,
            color=DIVERGED_COLOR,
        )
        ax.plot(
            [],
            [],
            ls="none",
            marker="X",
            ms=9,
            color="grey",
            mec="black",
            label="some seeds diverged",
        )
    if target is not None and target > 0:
        ax.axhline(target, color="grey", ls=(0, (4, 3)), lw=1, label=f"target loss {target:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(floor / 1.5, ceiling * 2 if any_diverged else ceiling / 3)
    # The lrs drawn: halving may have left one. Close ones (sampled by a [search]) share
    # labels through tick_labels rather than print over each other.
    lrs = sorted(set(frame["lr_value"])) or run_lrs
    if len(lrs) <= 12:  # label the learning rates that were run, not decades
        ax.xaxis.set_minor_locator(NullLocator())
        span = math.log10(lrs[-1]) - math.log10(lrs[0])
        ax.set_xticks(lrs, tick_labels(lrs, min_gap=0.07 * span * 1.16))
        pad = span * 0.08 if span > 0 else 0.5
        ax.set_xlim(lrs[0] / 10**pad, lrs[-1] * 10**pad)
    low, high = ax.get_ylim()
    if high / low < 20:  # less than about a decade: plain numbers on every tick
        plain = FuncFormatter(lambda v, _: report.fmt_sig(v, 2))
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
    else:
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel(f"{metric} training loss (log scale)")
    legend_outside(ax)
    title = f"{metric} loss vs learning rate, median over seeds with IQR bars"
    return title + (f" ({int(pruned.sum())} pruned by halving, not drawn)" if pruned.any() else "")
