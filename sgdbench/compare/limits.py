"""The metrics ``compare`` reports and how much worse each may get: ``--threshold`` and
``--fail-on METRIC:N%`` (relative) or ``METRIC:N`` (absolute), pytest-benchmark's grammar."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from sgdbench.errors import UsageError, did_you_mean


@dataclass(frozen=True)
class Metric:
    column: str  # in report.summarize_runs's frame
    name: str
    higher_is_better: bool
    key: str  # its name in --fail-on
    timed: bool  # measured with a clock: compared with its noise, not exactly


METRICS = (
    Metric("steps_per_s_median", "steps/s", True, "steps_per_s", True),
    Metric("steps_to_target_median", "steps to target", False, "steps_to_target", False),
    Metric("time_to_target_s_median", "time to target", False, "time_to_target_s", True),
    Metric("final_loss_median", "final loss", False, "final_loss", False),
)
FAIL_ON_KEYS = tuple(m.key for m in METRICS)


@dataclass(frozen=True)
class Threshold:
    """How much worse a metric may get: a fraction (``relative``) or an amount in its unit."""

    value: float
    relative: bool = True

    def exceeded(self, base: float, new: float, higher_is_better: bool) -> bool:
        worse = (base - new) if higher_is_better else (new - base)
        if self.relative:
            if base == 0:
                return worse > 0
            return worse / abs(base) > self.value
        return worse > self.value


def parse_threshold(text: str | float) -> float:
    """``"5%"`` or ``5`` -> 0.05 (a bare number is a percentage)."""
    raw = str(text).strip()
    try:
        value = float(raw.removesuffix("%"))
    except ValueError:
        raise UsageError(f"--threshold: expected a percentage like 5%, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"--threshold: must be a percentage >= 0, got {text!r}")
    return value / 100


_FAIL_ON = re.compile(r"^\s*([A-Za-z_]+)\s*:\s*([^%\s]+)\s*(%?)\s*$")


def parse_fail_on(texts: list[str], default: float) -> dict[str, Threshold]:
    """Per-metric thresholds from ``--fail-on METRIC:N%`` (relative) or ``METRIC:N`` (absolute,
    in the metric's unit), pytest-benchmark's grammar; metrics not named get ``default``."""
    out = {key: Threshold(default) for key in FAIL_ON_KEYS}
    for text in texts:
        m = _FAIL_ON.match(text)
        if m is None:
            raise UsageError(
                f"--fail-on: expected METRIC:N% or METRIC:N (e.g. steps_per_s:10%), got {text!r}"
            )
        key, number, percent = m.groups()
        if key not in FAIL_ON_KEYS:
            raise UsageError(
                f"--fail-on: {key}: unknown metric{did_you_mean(key, FAIL_ON_KEYS)} "
                f"(one of {', '.join(FAIL_ON_KEYS)})"
            )
        try:
            value = float(number)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0:
            raise UsageError(f"--fail-on: {key}: must be a number >= 0, got {number!r}")
        out[key] = Threshold(value / 100, True) if percent else Threshold(value, False)
    return out
