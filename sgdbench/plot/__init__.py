"""``sgdbench plot``: loss curves, learning-rate sensitivity and speed-to-target pictures.

Every number drawn comes from ``report.summarize_runs`` (the per-configuration medians and
quartiles) or, for curves, from the stored per-step and per-evaluation tables. matplotlib runs
with the Agg backend: no display needed. The file type follows ``--out``'s extension.

Curves smooth the per-step minibatch loss with a bias-corrected exponential moving average
(``pandas.Series.ewm(span=N, adjust=True)``: weights ``(1 - 2/(N+1))**k`` on the loss ``k`` steps
back, normalized, so the first points are not pulled towards zero). The default span is 2% of the
longest run, at least 1 step (no smoothing); ``--smooth N`` sets it. Full-data evaluations are
drawn unsmoothed, as markers.

Modules: ``style`` (palette, rc settings, labels), ``data`` (stored rows, smoothing, quantiles),
one per kind (``curves``, ``lr``, ``speed``) and ``lr_find`` (the picture of ``sgdbench lr-find``).
"""

from __future__ import annotations

from pathlib import Path

from sgdbench import report
from sgdbench.errors import UsageError
from sgdbench.plot.curves import draw_curves
from sgdbench.plot.data import X_AXES, ema, nanquantiles
from sgdbench.plot.lr import draw_lr, tick_labels
from sgdbench.plot.lr_find import draw_lr_find
from sgdbench.plot.speed import bar_height, draw_speed
from sgdbench.plot.style import PALETTE, RC, SUFFIXES, check_suffix, config_styles, style

KINDS = ("curves", "lr", "speed")

__all__ = [
    "KINDS",
    "PALETTE",
    "RC",
    "SUFFIXES",
    "X_AXES",
    "config_styles",
    "default_out",
    "draw_curves",
    "draw_lr",
    "draw_lr_find",
    "draw_speed",
    "ema",
    "nanquantiles",
    "plot",
    "style",
    "tick_labels",
]


def default_out(results: Path, kind: str, x: str) -> Path:
    """DIR/plots/KIND.png; curves against another axis than steps get its name appended."""
    suffix = f"_{x}" if kind == "curves" and x != "step" else ""
    return Path(results) / "plots" / f"{kind}{suffix}.png"


def _check_options(kind: str, x: str, metric: str, smooth: int | None) -> None:
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

    _check_options(kind, x, metric, smooth)
    results = Path(results)
    out = Path(out) if out is not None else default_out(results, kind, x)
    check_suffix(out)
    runs = report.load_runs(results, all_versions=all_versions)
    table = report.summarize_runs(runs)
    if best:
        table = report.best_per_group(runs, table)

    with plt.rc_context(RC):
        fig, ax = plt.subplots(figsize=(9, 5) if kind != "speed" else (9, bar_height(table)))
        try:
            if kind == "curves":
                title = draw_curves(ax, results, runs, table, x=x, smooth=smooth)
            elif kind == "lr":
                title = draw_lr(ax, runs, table, metric=metric)
            else:
                title = draw_speed(ax, table, x=x)
            ax.set_title(f"{results.name}: {title}", loc="left")
            out.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(out, dpi=110, bbox_inches="tight")
        finally:
            plt.close(fig)
    return out
