"""``sgdbench compare BASE NEW``: per-configuration changes between two results folders.

Configurations are matched by their grid axes (``match``). What is deterministic is compared
exactly: the loss digests of the seeds both sides ran ("identical trajectory"), steps to target
and final loss. Timings are noisy, so they are compared with a test across the units that vary
between two folders, runs and repeats (``stats``), on the windows' CPU time where both sides
have it (other processes' load hardly moves it), measured in machine-speed probe times where
both have those too and ran on the same machine, torch and threads (the machine's drift
between the folders cancels), else on wall clock. A change in a timing is a
regression only when it is beyond both its threshold and the noise: the whole interval lies
beyond the threshold on the worse side. Thresholds (``limits``) default to ``--threshold`` and
are set per metric with ``--fail-on METRIC:5%`` or ``METRIC:N``, pytest-benchmark's grammar. A
regression makes ``sgdbench compare`` exit 1. The outputs are in ``render``.
"""

from sgdbench.compare.core import Comparison, compare
from sgdbench.compare.limits import (
    FAIL_ON_KEYS,
    METRICS,
    Metric,
    Threshold,
    parse_fail_on,
    parse_threshold,
)
from sgdbench.compare.render import COMPARE_SCHEMA_VERSION, render, to_json, to_markdown, to_rich
from sgdbench.compare.stats import change, timed_change

__all__ = [
    "COMPARE_SCHEMA_VERSION",
    "FAIL_ON_KEYS",
    "METRICS",
    "Comparison",
    "Metric",
    "Threshold",
    "change",
    "compare",
    "parse_fail_on",
    "parse_threshold",
    "render",
    "timed_change",
    "to_json",
    "to_markdown",
    "to_rich",
]
