"""The changes ``compare`` reports: exact ones for what is deterministic, and for timings a
test across the independent units that vary between two folders.

A timing is tested on *units*: one run, or one repeat of it, each summarized by its median
rate over its windows (``timing.unit_rates``). Windows inside one run share its machine state
(load, caches, the sibling hyperthread) and move together, so they are not independent
evidence; separate runs are. The change of a configuration is the ratio new/base of the
geometric means of its units' rates, with a Student-t interval on the logs. The variance of a
unit around its side's mean is pooled over every configuration of the comparison (all ran on
the same machine, interleaved in time), which gives the interval degrees of freedom that two
seeds a side cannot: with 2 runs a side the bootstrap over runs sees three distinct
resamples, and a rank test cannot reach 5%. Fewer than ``MIN_DEGREES`` degrees of freedom in
all is "too few runs to tell", never a regression. The test is a formula: the same timings
always give the same decision.

The configurations of one comparison ran side by side, so they share the machine's swings: the
overall interval is the mean of theirs in log scale (perfectly correlated errors), never
narrower than a single configuration's.

Two folders written minutes apart also differ by the machine's drift, which the units of one
folder cannot show: on a loaded 2-core machine a whole folder's CPU time ran 30-50% above the
other's with no change in the code. Where both folders timed the machine-speed probe
(``sgdbench.engine.probe``) on the same machine, torch and threads, a window's time is
measured in probe times (``match.units``): its CPU seconds divided by the probe's time
beside it. A minute in which the machine runs everything slower slows the probe as much as
the step, and the ratio stays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sgdbench import report, timing
from sgdbench.compare.limits import Metric, Threshold

# One degree of freedom has a 95% t multiplier of 12.7: an interval that says nothing.
MIN_DEGREES = 2
TOO_FEW = "too few runs to tell"
NO_INTERVAL = "no interval"  # results written before windows were stored


@dataclass(frozen=True)
class RatioInterval:
    """A ratio new/base and its ``timing.CONFIDENCE`` interval; ``note`` says why there is none."""

    ratio: float
    lo: float = math.nan
    hi: float = math.nan
    note: str | None = None
    units: tuple[int, int] = (0, 0)  # runs and repeats tested, base and new


def _t_quantile(degrees: int) -> float:
    from scipy.special import stdtrit  # lighter than scipy.stats; only compare needs it

    return float(stdtrit(degrees, 1 - (1 - timing.CONFIDENCE) / 2))


def unit_ratio_tests(
    pairs: Sequence[tuple[Sequence[timing.Windows], Sequence[timing.Windows]]],
) -> list[RatioInterval]:
    """For each (base units, new units) pair, the ratio of the geometric means of the units'
    rates, with a t interval whose variance is pooled over all pairs (module docstring)."""
    logs = [(np.log(timing.unit_rates(b)), np.log(timing.unit_rates(n))) for b, n in pairs]
    sides = [x for pair in logs for x in pair if len(x)]
    degrees = sum(len(x) - 1 for x in sides)
    squares = sum(float(((x - x.mean()) ** 2).sum()) for x in sides)
    out = []
    for lb, ln in logs:
        if not len(lb) or not len(ln):
            out.append(RatioInterval(math.nan, note=NO_INTERVAL))
            continue
        d = float(ln.mean() - lb.mean())
        units = (len(lb), len(ln))
        if degrees < MIN_DEGREES:
            out.append(RatioInterval(math.exp(d), note=TOO_FEW, units=units))
            continue
        half = _t_quantile(degrees) * math.sqrt(squares / degrees * (1 / len(lb) + 1 / len(ln)))
        out.append(RatioInterval(math.exp(d), math.exp(d - half), math.exp(d + half), None, units))
    return out


def usable(v: Any) -> bool:
    return v is not None and not pd.isna(v) and math.isfinite(float(v))


def change(
    base: float, new: float, higher_is_better: bool, threshold: float | Threshold
) -> dict[str, Any]:
    """Relative change new/base - 1 and whether it is a regression beyond ``threshold`` (a
    fraction, or a ``Threshold``). For deterministic quantities, compared exactly.

    Not reaching target (NaN) or diverging (+inf loss) where the baseline did is a regression;
    the reverse an improvement.
    """
    limit = threshold if isinstance(threshold, Threshold) else Threshold(threshold)
    out: dict[str, Any] = {
        "base": report.json_number(base),
        "new": report.json_number(new),
        "change": None,
    }
    b_ok, n_ok = usable(base), usable(new)
    if not b_ok and not n_ok:
        out["regression"] = False
        return out
    if b_ok != n_ok:  # one side reached target / stayed finite, the other did not
        out["regression"] = b_ok
        out["change"] = None
        out["note"] = "lost" if b_ok else "gained"
        return out
    if base == new:
        rel = 0.0
    elif base == 0:
        rel = math.inf
    else:
        rel = new / base - 1
    out["change"] = rel if math.isfinite(rel) else None
    out["regression"] = bool(limit.exceeded(float(base), float(new), higher_is_better))
    return out


def timed_change(
    base: float,
    new: float,
    test: RatioInterval | None,
    higher_is_better: bool,
    threshold: float | Threshold,
    *,
    tested_change: bool = False,
) -> dict[str, Any]:
    """``change`` for a timing, with the interval of ``test`` (a ratio new/base). The change is
    ``significant`` when the interval lies on one side of 1, and a regression only when the
    whole interval lies beyond ``threshold`` on the worse side: beyond both the threshold and
    the noise. ``tested_change``: the change shown is the test's ratio (steps/s, where the test
    may use CPU time) rather than new/base of the shown values. An absolute threshold applies
    to base times the interval's end."""
    limit = threshold if isinstance(threshold, Threshold) else Threshold(threshold)
    out = change(base, new, higher_is_better, limit)
    out["interval"] = None
    out["significant"] = False
    if out.get("note") or out["change"] is None:
        return out
    if tested_change and test is not None and usable(test.ratio):
        out["change"] = test.ratio - 1
    if test is None or test.note or not (usable(test.lo) and usable(test.hi)):
        out["regression"] = False  # no timings stored, or too few runs: never a change
        out["note"] = test.note if test is not None and test.note else NO_INTERVAL
        return out
    out["interval"] = [test.lo - 1, test.hi - 1]
    out["significant"] = bool(test.lo > 1 or test.hi < 1)
    least_worse = test.hi if higher_is_better else test.lo  # the end nearest "better"
    out["regression"] = bool(
        limit.exceeded(float(base), float(base) * least_worse, higher_is_better)
    )
    if not out["significant"]:
        out["note"] = "no significant change"
    return out


def time_to_target_change(
    b: pd.Series, n: pd.Series, rate: RatioInterval, wall: RatioInterval, limit: Threshold
) -> dict[str, Any]:
    """The change in time to target, judged on what it is made of.

    A run's time to target is read once, and includes the warm-up steps (allocation, the
    noisiest part of a run), so there is nothing to measure its noise with: its interval is
    the measured ratio times the relative interval of the wall-clock throughput (``wall``).
    Whether it changed beyond the noise is judged on the exact steps to target over the
    throughput ``rate`` (the test steps/s is judged by): slower only when all of that interval
    says so, so warm-up noise or machine load alone never make a change."""
    tb, tn = b["time_to_target_s_median"], n["time_to_target_s_median"]
    sb, sn = b["steps_to_target_median"], n["steps_to_target_median"]
    measurable = all(usable(v) for v in (tb, tn, sb, sn)) and tb > 0 and sb > 0
    test = None
    if measurable and not wall.note and usable(wall.lo) and wall.lo > 0:
        measured = tn / tb
        test = RatioInterval(
            measured, measured * wall.ratio / wall.hi, measured * wall.ratio / wall.lo
        )
    elif measurable:
        test = RatioInterval(tn / tb, note=wall.note or NO_INTERVAL)
    out = timed_change(tb, tn, test, False, limit)
    if test is None or out["interval"] is None or not usable(rate.lo):
        return out
    lo, hi = (sn / sb) / rate.hi, (sn / sb) / rate.lo
    direction = 1 if lo > 1 else -1 if hi < 1 else 0
    measured_direction = 0 if out["change"] is None else (1 if out["change"] > 0 else -1)
    if out["significant"] and direction != measured_direction:
        out["significant"] = False
        out["note"] = "no significant change"
    beyond = direction > 0 and limit.exceeded(float(tb), float(tb) * lo, False)
    out["regression"] = bool(out["regression"] and out["significant"] and beyond)
    return out


def overall(
    m: Metric, ratios: list[float], intervals: list[tuple[float, float]], limit: Threshold
) -> dict[str, Any]:
    """Geometric mean of new/base over the configurations where both sides have a number; for
    a timing, with the mean of their intervals in log scale (the configurations ran side by
    side, so their noise is shared, not averaged out), and a regression only beyond the
    threshold and the noise."""
    if not ratios or any(x <= 0 for x in ratios):
        return {"change": None, "n": len(ratios), "regression": False}
    geo = float(np.exp(np.mean(np.log(ratios))))
    # An absolute threshold has no meaning across configurations: only relative ones apply.
    regression = limit.relative and limit.exceeded(1.0, geo, m.higher_is_better)
    out: dict[str, Any] = {"change": geo - 1, "n": len(ratios)}
    if m.timed:
        out["interval"] = None
        if intervals and len(intervals) == len(ratios):
            lo, hi = np.exp(np.mean(np.log(np.asarray(intervals)), axis=0))
            out["interval"] = [float(lo) - 1, float(hi) - 1]
            least_worse = hi if m.higher_is_better else lo
            regression = regression and limit.exceeded(1.0, least_worse, m.higher_is_better)
        else:
            regression = False
    out["regression"] = bool(regression)
    return out
