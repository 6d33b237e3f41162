"""``sgdbench plot``: loss curves, learning-rate sensitivity and speed-to-target pictures.

Every number drawn comes from ``report.summarize_runs`` (the per-configuration medians and
quartiles) or, for curves, from the stored per-step and per-evaluation tables. matplotlib runs
with the Agg backend: no display needed. The file type follows ``--out``'s extension.

Curves smooth the per-step minibatch loss with a bias-corrected exponential moving average
(``pandas.Series.ewm(span=N, adjust=True)``: weights ``(1 - 2/(N+1))**k`` on the loss ``k`` steps
back, normalized, so the first points are not pulled towards zero). The default span is 2% of the
longest run, at least 1 step (no smoothing); ``--smooth N`` sets it. Full-data evaluations are
drawn unsmoothed, as markers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sgdbench import report
from sgdbench.errors import UsageError

KINDS = ("curves", "lr", "speed")
SUFFIXES = (".png", ".svg", ".pdf")
# Okabe & Ito (2008): distinguishable with the common colour-vision deficiencies.
PALETTE = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#D55E00",  # vermillion
    "#000000",  # black
    "#F0E442",  # yellow (last: faint on white)
)
LINESTYLES = ("-", "--", "-.", ":")
MAX_POINTS = 2000  # points per drawn line; longer curves are thinned evenly
DIVERGED_COLOR = "#D55E00"


def style(i: int) -> dict[str, Any]:
    """Colour and line style of the i-th series: colours first, then dashes."""
    return {
        "color": PALETTE[i % len(PALETTE)],
        "linestyle": LINESTYLES[(i // len(PALETTE)) % len(LINESTYLES)],
    }


def config_styles(table: pd.DataFrame) -> list[dict[str, Any]]:
    """One style per configuration. Up to 7 configurations get a colour each (yellow is too
    faint for a line); beyond that, configurations that differ only in learning rate share a
    colour and the learning rates are told apart by dashes, in increasing order."""
    labels = [c for c in table.attrs["labels"] if c != "config_id"]
    if len(table) <= len(PALETTE) - 1 or "lr" not in labels:
        return [style(i) for i in range(len(table))]
    others = [c for c in labels if c != "lr"]
    keys = [tuple(row[c] for c in others) for _, row in table.iterrows()]
    groups = list(dict.fromkeys(keys))
    lrs: dict[tuple[Any, ...], list[float]] = {}
    for key, lr in zip(keys, pd.to_numeric(table["lr"], errors="coerce"), strict=True):
        lrs.setdefault(key, []).append(lr)
    out = []
    for key, lr in zip(keys, pd.to_numeric(table["lr"], errors="coerce"), strict=True):
        rank = sorted(lrs[key]).index(lr)
        out.append(
            {
                "color": PALETTE[groups.index(key) % (len(PALETTE) - 1)],
                "linestyle": LINESTYLES[rank % len(LINESTYLES)],
            }
        )
    return out


def default_out(results: Path, kind: str, x: str) -> Path:
    """DIR/plots/KIND.png; curves against another axis than steps get its name appended."""
    suffix = f"_{x}" if kind == "curves" and x != "step" else ""
    return Path(results) / "plots" / f"{kind}{suffix}.png"


def plot(
    results: Path,
    *,
    kind: str = "curves",
    out: Path | None = None,
    x: str = "step",
    metric: str = "final",
    smooth: int | None = None,
    best: bool = False,
    all_versions: bool = False,
) -> Path:
    """Draw one picture of a results folder into ``out`` (PNG, SVG or PDF); returns its path.
    Only the current grid version's runs unless ``all_versions``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if kind not in KINDS:
        raise UsageError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if x not in X_AXES:
        raise UsageError(f"--x must be one of {', '.join(X_AXES)}, got {x!r}")
    if kind == "speed" and x == "epoch":
        raise UsageError("--x epoch: the speed plot counts steps, samples or time to target")
    if metric not in ("final", "best"):
        raise UsageError(f"--metric must be final or best, got {metric!r}")
    if smooth is not None and smooth < 0:
        raise UsageError(f"--smooth must be >= 0, got {smooth}")
    results = Path(results)
    out = Path(out) if out is not None else default_out(results, kind, x)
    if out.suffix.lower() not in SUFFIXES:
        raise UsageError(f"--out: unknown picture type {out.suffix!r} (use .png, .svg or .pdf)")
    runs = report.load_runs(results, all_versions=all_versions)
    table = report.summarize_runs(runs)
    if best:
        table = report.best_per_group(runs, table)

    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(9, 5) if kind != "speed" else (9, _bar_height(table)))
        try:
            if kind == "curves":
                title = _curves(ax, results, runs, table, x=x, smooth=smooth)
            elif kind == "lr":
                title = _lr(ax, runs, table, metric=metric)
            else:
                title = _speed(ax, table, x=x)
            ax.set_title(f"{results.name}: {title}", loc="left")
            out.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(out, dpi=110, bbox_inches="tight")
        finally:
            plt.close(fig)
    return out


_RC = {
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.titlesize": 12,
    "axes.labelsize": 10,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "font.size": 9,
    "svg.fonttype": "none",
}


def _legend_outside(ax: Any) -> None:
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def _target(runs: pd.DataFrame) -> float | None:
    targets = runs["target_loss"].dropna().unique()
    return float(targets[0]) if len(targets) == 1 else None


def _label(row: pd.Series, labels: Sequence[str], n_runs: bool = True) -> str:
    text = report.describe(row, labels)
    extra = []
    if n_runs and row["runs"] > 1:
        extra.append(f"n={row['runs']}")
    if row["n_diverged"]:
        extra.append(f"{row['n_diverged']} diverged")
    return f"{text} ({', '.join(extra)})" if extra else text


# ---------------------------------------------------------------------------------------------
# curves


def _read_per_run(
    folder: Path, run_ids: Sequence[str], columns: list[str]
) -> dict[str, pd.DataFrame]:
    """Each run's rows (one file per run), sorted by step. The run_id column is not read: a
    million-step run would spend seconds building and grouping a million equal strings."""
    from sgdbench.store import read_table

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
    """Bias-corrected exponential moving average; non-finite losses are skipped."""
    if span <= 1:
        return values
    series = pd.Series(np.where(np.isfinite(values), values, np.nan))
    return series.ewm(span=span, adjust=True, ignore_na=True).mean().to_numpy()


def _stack(per_run: list[np.ndarray]) -> np.ndarray:
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


def _thin(n: int) -> np.ndarray:
    if n <= MAX_POINTS:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, MAX_POINTS).round().astype(np.int64))


X_AXES = {
    # --x: (steps column, evals column, axis label)
    "step": ("step", "step", "step"),
    "samples": ("samples_before", "samples_seen", "training samples seen"),
    "epoch": ("epoch_x", "epoch", "epoch"),
    "time": ("time_s", "time_s", "training time (s)"),
}
RAW_STYLE = {"lw": 0.6, "alpha": 0.3}  # the unsmoothed median under a smoothed line


def _x_columns(g: pd.DataFrame, steps_per_epoch: float | None) -> pd.DataFrame:
    """The x positions of one run's steps. A step's loss is computed before its update, after
    ``step`` updates: at ``samples_seen`` of the previous step and at ``step / steps_per_epoch``
    epochs, exactly where the evaluations after that many updates are placed."""
    samples = g["samples_seen"].to_numpy(np.int64)
    before = np.concatenate([[0], samples[:-1]]) if len(samples) else samples
    epoch = g["step"].to_numpy(np.float64) / (steps_per_epoch or np.nan)
    return g.assign(samples_before=before, epoch_x=epoch)


def _run_facts(results: Path) -> pd.DataFrame:
    """Per run: steps per epoch and whether it was full batch (from runs.parquet)."""
    import json

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


def _curves(
    ax: Any, results: Path, runs: pd.DataFrame, table: pd.DataFrame, *, x: str, smooth: int | None
) -> str:
    """Median minibatch loss per configuration with the IQR over seeds, and the full-data
    evaluations as dots.

    Smoothing never invents progress: full-batch runs are drawn raw (every step sees every
    sample, so there is no sampling noise to average and a drop is a real drop), and a smoothed
    line always has its raw median drawn faintly under it. A loss of exactly 0 cannot sit on a
    log axis: it is drawn on the bottom edge.
    """
    from sgdbench.store import EVALS_DIR, STEPS_DIR

    labels = table.attrs["labels"]
    trained = runs[runs["status"].isin(report.TRAINED)]
    wanted = [rid for ids in table["run_ids"] for rid in ids if rid in set(trained["run_id"])]
    steps = _read_per_run(results / STEPS_DIR, wanted, ["step", "samples_seen", "loss", "time_s"])
    evals_by_run = _read_per_run(
        results / EVALS_DIR, wanted, ["step", "epoch", "samples_seen", "time_s", "train_loss"]
    )
    if not steps and not evals_by_run:
        raise UsageError(f"{results}: no steps or evaluations stored for these runs")
    facts = _run_facts(results)
    per_epoch = facts["steps_per_epoch"].to_dict()
    full_batch = facts["full_batch"].to_dict()
    steps_by_run = {rid: _x_columns(g, per_epoch.get(rid)) for rid, g in steps.items()}
    longest = max((len(g) for g in steps_by_run.values()), default=1)
    span = smooth if smooth is not None else max(1, round(0.02 * longest))
    status = dict(zip(runs["run_id"], runs["status"], strict=True))
    xcol, ecol, xlabel = X_AXES[x]

    # First the numbers of every configuration, then the drawing: the log axis's floor (where a
    # zero loss is drawn) depends on all of them.
    series = []
    styles = config_styles(table)
    for i, (_, row) in enumerate(table.iterrows()):
        ids = [rid for rid in row["run_ids"] if rid in steps_by_run]
        item: dict[str, Any] = {"style": styles[i], "label": _label(row, labels)}
        if ids:
            raw = _stack([steps_by_run[r]["loss"].to_numpy(np.float64) for r in ids])
            smoothed = not all(full_batch.get(r, False) for r in ids) and span > 1
            losses = (
                _stack([ema(steps_by_run[r]["loss"].to_numpy(np.float64), span) for r in ids])
                if smoothed
                else raw
            )
            # Only the drawn points need quantiles (smoothing above saw every step).
            keep = _thin(losses.shape[1])
            xs = _stack([steps_by_run[r][xcol].to_numpy(np.float64) for r in ids])[:, keep]
            q25, q50, q75 = nanquantiles(losses[:, keep])
            xm = keep if x == "step" else nanquantiles(xs, (0.5,))[0]
            item.update(x=xm, q25=q25, q50=q50, q75=q75, n=len(ids))
            if smoothed:
                item["raw"] = nanquantiles(raw[:, keep], (0.5,))[0]
            item["diverged"] = [
                (steps_by_run[r][xcol].iloc[-1], steps_by_run[r]["loss"].iloc[-1])
                for r in ids
                if status.get(r) == "diverged"
            ]
        eids = [rid for rid in row["run_ids"] if rid in evals_by_run]
        if eids:
            ev = pd.concat([evals_by_run[r] for r in eids])
            item["evals"] = ev.groupby("step").agg(
                x=(ecol, "median"), loss=("train_loss", "median")
            )
        series.append(item)

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
    # Diverged runs would stretch the axis to 1e9; cap it at 30x the largest starting loss.
    start = [v for v in initial if math.isfinite(v) and v > 0]
    top = min(float(values.max()) * 1.5, 30 * max(start)) if start else float(values.max()) * 1.5
    top = max(top, floor * 10)

    def on_axis(y: np.ndarray) -> np.ndarray:
        return np.where(y > 0, y, np.where(np.isnan(y), np.nan, floor))

    any_smoothed = False
    diverged_points = []
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
            diverged_points += [(dx, dy, st["color"]) for dx, dy in item["diverged"]]
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
    ax.set_yscale("log")
    ax.set_ylim(floor, top)
    if diverged_points:
        for dx, dy, color in diverged_points:
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
            [],
            [],
            marker="X",
            ms=8,
            color="grey",
            mec="black",
            ls="none",
            label="run diverged here",
        )
    target = _target(runs)
    if target is not None and target > 0:
        ax.axhline(target, color="grey", ls=(0, (4, 3)), lw=1, label=f"target loss {target:g}")
    if any_smoothed:
        smoothing = f"EMA span {span} steps over the faint raw median; full-batch runs raw"
    else:
        smoothing = "not smoothed"
    if (values <= 0).any():
        smoothing += "; a loss of 0 sits on the bottom edge"
    title = "training loss, median over seeds with IQR band"
    ax.set_xlabel(xlabel)
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
    _legend_outside(ax)
    return title


# ---------------------------------------------------------------------------------------------
# learning-rate sensitivity


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


def _lr(ax: Any, runs: pd.DataFrame, table: pd.DataFrame, *, metric: str) -> str:
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
    target = _target(runs)
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
    _legend_outside(ax)
    title = f"{metric} loss vs learning rate, median over seeds with IQR bars"
    return title + (f" ({int(pruned.sum())} pruned by halving, not drawn)" if pruned.any() else "")


# ---------------------------------------------------------------------------------------------
# speed to target


def _bar_height(table: pd.DataFrame) -> float:
    return min(2.0 + 0.35 * len(table), 16.0)


def _speed(ax: Any, table: pd.DataFrame, *, x: str) -> str:
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


def draw_lr_find(
    out: Path,
    title: str,
    lrs: np.ndarray,
    losses: np.ndarray,
    smoothed: np.ndarray | None = None,
    suggestions: dict[str, float] | None = None,
    ylabel: str = "minibatch loss",
) -> Path:
    """Loss against lr on a log axis (``sgdbench lr-find``): the raw loss, the smoothed one if
    given, and a vertical line per suggested lr."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if out.suffix.lower() not in SUFFIXES:
        raise UsageError(f"--out: unknown picture type {out.suffix!r} (use .png, .svg or .pdf)")
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(9, 5))
        try:
            raw_style = {"alpha": 0.4} if smoothed is not None else {"marker": "o", "ms": 3}
            ax.plot(lrs, losses, color=PALETTE[0], label="raw", **raw_style)
            if smoothed is not None:
                ax.plot(lrs, smoothed, color=PALETTE[0], label="smoothed")
            for i, (rule, lr) in enumerate((suggestions or {}).items()):
                ax.axvline(lr, color=PALETTE[1 + i], ls="--", label=f"{rule}: {lr:.3g}")
            ax.set_xscale("log")
            finite = losses[np.isfinite(losses)]
            if len(finite) and finite.min() > 0 and finite.max() / finite.min() > 100:
                ax.set_yscale("log")
            ax.set_xlabel("learning rate")
            ax.set_ylabel(ylabel)
            ax.set_title(title, loc="left")
            _legend_outside(ax)
            out.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(out, dpi=110, bbox_inches="tight")
        finally:
            plt.close(fig)
    return out
