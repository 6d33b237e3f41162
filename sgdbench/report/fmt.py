"""Number and label formatting shared by report, compare, plot and the HTML report: three
significant digits, units on times, SI prefixes on rates, ratios in words."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd


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


def fmt_interval(median: Any, lo: Any, hi: Any, fmt: Any = fmt_rate) -> str:
    """hyperfine's style, ``4.78k (4.50k … 5.01k)``; the median alone when there is no
    interval (one run without window timings)."""
    if median is None or pd.isna(median):
        return "-"
    if lo is None or hi is None or pd.isna(lo) or pd.isna(hi) or lo == hi:
        return fmt(median)
    return f"{fmt(median)} ({fmt(lo)} … {fmt(hi)})"


def fmt_count(x: Any) -> str:
    """A step or sample count with thousands separators (one decimal for a median of two)."""
    if x is None or pd.isna(x):
        return "-"
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"


def fmt_times(ratio: float, noun: str, fewer: str = "fewer", more: str = "more") -> str:
    """A ratio in words that never reads backwards: 6.5 → "6.5× fewer steps", 0.8 → "1.25× more
    steps" (the ratio is other / this)."""
    if ratio >= 1:
        return f"{fmt_sig(ratio)}× {fewer} {noun}"
    return f"{fmt_sig(1 / ratio)}× {more} {noun}"


def plain(v: Any) -> str:
    """An axis value as the grid file spells it (``0.3``, not ``0.30000001``)."""
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def describe(row: Any, labels: Sequence[str]) -> str:
    """``optimizer=sgd lr=0.3``: a configuration in words (``row`` maps label to value)."""
    return " ".join(f"{c}={plain(row[c])}" for c in labels)


def json_number(v: Any) -> Any:
    """A JSON-safe number: NaN and ±inf become None, numpy scalars plain Python."""
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, float | np.floating):
        return float(v) if math.isfinite(v) else None
    return v
