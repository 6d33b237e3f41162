"""Throughput from window timings: a median rate and a bootstrap interval around it.

The engine times *windows* (runs of steps between two bookkeeping points, see
``engine.windows``), never single steps. A window of ``a`` units of work (steps, or samples)
that took ``t`` seconds ran at ``a / t`` units per second, and stands for ``a`` units of work.
The throughput of a set of windows is the median over units of work of that rate: the
weighted median of the window rates, each weighted by its work. Long windows count for more
than short ones, and a window slowed down by a burst of machine load moves it no further than
its share of the work.

Its uncertainty comes from a bootstrap with two levels, because windows of one run share its
machine load while separate runs (repeats, seeds) do not: resample the *units* (one run or one
repeat of it) with replacement, then the windows inside each unit. The interval is the 2.5th
and 97.5th percentile of the resampled medians; with one unit only the windows are resampled.
The random generator is seeded with a constant, so the interval is a function of the timings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

BOOTSTRAP_ROUNDS = 1000
CONFIDENCE = 0.95
SEED = 20_240_613  # fixed: the same timings always give the same interval
# A unit with more windows is cut into this many blocks of consecutive windows (a block
# bootstrap), which keeps the resampling cheap and respects the correlation of neighbours.
MAX_WINDOWS_PER_UNIT = 256


@dataclass(frozen=True)
class Rate:
    """A throughput: median units of work per second and its ``CONFIDENCE`` interval."""

    median: float
    lo: float
    hi: float


NAN_RATE = Rate(float("nan"), float("nan"), float("nan"))


@dataclass(frozen=True)
class Windows:
    """The timed windows of one unit (a run, or one repeat of it): work done and seconds."""

    work: np.ndarray  # steps or samples per window
    seconds: np.ndarray

    @classmethod
    def of(cls, work: Sequence[float], seconds: Sequence[float]) -> Windows:
        a = np.asarray(work, dtype=np.float64)
        t = np.asarray(seconds, dtype=np.float64)
        keep = (a > 0) & (t > 0) & np.isfinite(t)
        a, t = a[keep], t[keep]
        if len(a) > MAX_WINDOWS_PER_UNIT:
            edges = np.linspace(0, len(a), MAX_WINDOWS_PER_UNIT + 1).astype(int)[:-1]
            a, t = np.add.reduceat(a, edges), np.add.reduceat(t, edges)
        return cls(a, t)


def weighted_median(rates: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted median of ``rates`` (sorted ascending) along the last axis of ``weights``:
    the smallest rate whose cumulative weight reaches half the total."""
    cum = np.cumsum(weights, axis=-1)
    half = cum[..., -1:] / 2
    index = np.argmax(cum >= half, axis=-1)
    return rates[index]


def _pooled(units: Sequence[Windows]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All windows sorted by rate: (rates, work, unit index of each window)."""
    work = np.concatenate([u.work for u in units])
    rates = work / np.concatenate([u.seconds for u in units])
    owner = np.concatenate([np.full(len(u.work), i) for i, u in enumerate(units)])
    order = np.argsort(rates, kind="stable")
    return rates[order], work[order], owner[order]


def bootstrap_medians(
    units: Sequence[Windows], rounds: int = BOOTSTRAP_ROUNDS, seed: int = SEED
) -> np.ndarray:
    """``rounds`` resampled median rates (two-level bootstrap, see the module docstring)."""
    units = [u for u in units if len(u.work)]
    if not units:
        return np.full(rounds, np.nan)
    rng = np.random.default_rng(seed)
    rates, work, owner = _pooled(units)
    n_units = len(units)
    picked = rng.multinomial(n_units, np.full(n_units, 1 / n_units), size=rounds)  # [B, U]
    weights = np.empty((rounds, len(rates)))
    for i in range(n_units):
        mine = owner == i
        n = int(mine.sum())
        counts = rng.multinomial(n, np.full(n, 1 / n), size=rounds)  # [B, windows of unit]
        weights[:, mine] = picked[:, i : i + 1] * counts * work[mine]
    return weighted_median(rates, weights)


def unit_rates(units: Sequence[Windows]) -> np.ndarray:
    """Each unit's median rate (its windows' rates weighted by their work); units without
    windows are left out."""
    out = []
    for u in units:
        if len(u.work):
            rates = u.work / u.seconds
            order = np.argsort(rates, kind="stable")
            out.append(float(weighted_median(rates[order], u.work[order])))
    return np.asarray(out, dtype=np.float64)


# rate() of timings already seen: the members of a stacked group share the group's clock, so
# all 64 members of a sweep usually have the same windows (and so the same 1000-round
# bootstrap). A pure function of the timings: the cached result is the one it would compute.
_RATES: dict[tuple[bytes, ...], Rate] = {}
_MAX_CACHED = 4096


def rate(units: Sequence[Windows]) -> Rate:
    """Median rate over all windows of ``units`` and its bootstrap interval."""
    units = [u for u in units if len(u.work)]
    if not units:
        return NAN_RATE
    key = tuple(
        b for u in units for b in (u.work.dtype.str.encode(), u.work.tobytes(), u.seconds.tobytes())
    )
    cached = _RATES.get(key)
    if cached is None:
        if len(_RATES) >= _MAX_CACHED:
            _RATES.clear()
        cached = _RATES[key] = _rate(units)
    return cached


def _rate(units: list[Windows]) -> Rate:
    rates, work, _ = _pooled(units)
    median = float(weighted_median(rates, work))
    tail = 100 * (1 - CONFIDENCE) / 2
    lo, hi = np.percentile(bootstrap_medians(units), [tail, 100 - tail])
    return Rate(median, float(lo), float(hi))


def ratio(base: Sequence[Windows], new: Sequence[Windows]) -> Rate:
    """new / base median rate, with the bootstrap interval of the ratio (each side resampled
    on its own): an interval that holds 1 means no significant change."""
    b = [u for u in base if len(u.work)]
    n = [u for u in new if len(u.work)]
    if not b or not n:
        return NAN_RATE
    point = rate(n).median / rate(b).median
    # Independent draws for the two sides (another seed), each still fixed by the timings.
    ratios = bootstrap_medians(n, seed=SEED + 1) / bootstrap_medians(b)
    tail = 100 * (1 - CONFIDENCE) / 2
    lo, hi = np.percentile(ratios, [tail, 100 - tail])
    return Rate(float(point), float(lo), float(hi))
