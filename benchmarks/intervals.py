"""Ratios of interleaved A/B timings with a bootstrap 95% interval (over the pairs).

Round ``i`` timed A and B back to back, so ``a[i] / b[i]`` is one paired ratio that a burst of
load from elsewhere hits on both sides. The figure is the median of the paired ratios; its
interval is the 2.5th and 97.5th percentile of that median over pairs resampled with
replacement (seeded: the same timings always give the same interval). An interval that holds 1
means no significant difference.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

ROUNDS = 4000
SEED = 17


def paired_ratio(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """(median of a[i] / b[i], low, high) for the pairs of the same round."""
    ratios = np.asarray(a, dtype=np.float64) / np.asarray(b, dtype=np.float64)
    if len(ratios) == 0:
        return (float("nan"),) * 3
    rng = np.random.default_rng(SEED)
    picks = rng.integers(0, len(ratios), size=(ROUNDS, len(ratios)))
    medians = np.median(ratios[picks], axis=1)
    lo, hi = np.percentile(medians, [2.5, 97.5])
    return float(np.median(ratios)), float(lo), float(hi)


def show(ratio: tuple[float, float, float]) -> str:
    """``1.23x (1.10-1.31)``."""
    point, lo, hi = ratio
    return f"{point:.2f}x ({lo:.2f}-{hi:.2f})"


def loadavg() -> str:
    """The three load averages, as /proc/loadavg gives them."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"
