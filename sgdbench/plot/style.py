"""The look shared by every sgdbench picture: palette, line styles, rc settings, legend, labels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from sgdbench import report
from sgdbench.errors import UsageError

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

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
DIVERGED_COLOR = "#D55E00"

RC: dict[RcKeyType, Any] = {
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


def check_suffix(out: Path) -> None:
    """UsageError unless ``out`` names a picture type matplotlib writes here."""
    if out.suffix.lower() not in SUFFIXES:
        raise UsageError(f"--out: unknown picture type {out.suffix!r} (use .png, .svg or .pdf)")


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


def legend_outside(ax: Any) -> None:
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def target_of(runs: pd.DataFrame) -> float | None:
    """The runs' target loss when they share one."""
    targets = runs["target_loss"].dropna().unique()
    return float(targets[0]) if len(targets) == 1 else None


def config_label(row: pd.Series, labels: Sequence[str], n_runs: bool = True) -> str:
    """A configuration's legend entry: what varies, the seed count, how many diverged."""
    text = report.describe(row, labels)
    extra = []
    if n_runs and row["runs"] > 1:
        extra.append(f"n={row['runs']}")
    if row["n_diverged"]:
        extra.append(f"{row['n_diverged']} diverged")
    return f"{text} ({', '.join(extra)})" if extra else text
