"""Learning-rate schedules as closed-form factors of the base learning rate.

One function per schedule owns the math: the engines write ``lr_per_step`` into the optimizer's
param groups before each step (the stacked engine per window), and the recorded per-step ``lr``
column is the same array. The reference-loop tests check it against ``LambdaLR``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sgdbench.errors import KeyedError

if TYPE_CHECKING:
    import numpy as np

# name -> {parameter: (default, help)}; defaults of None are filled from the run's length.
SCHEDULES: dict[str, dict[str, tuple[Any, str]]] = {
    "constant": {},
    "step": {
        "step_size": (None, "steps between decays (default: a third of the run)"),
        "gamma": (0.1, "multiplicative decay"),
    },
    "cosine": {"final_factor": (0.0, "final lr as a fraction of the initial lr")},
    "warmup_cosine": {
        "warmup_steps": (None, "linear warm-up length in steps (default: 5% of the run)"),
        "final_factor": (0.0, "final lr as a fraction of the peak lr"),
    },
}


def resolve(name: str, params: dict[str, Any], total_steps: int) -> dict[str, Any]:
    """Fill defaults and validate; returns ``{"name": ..., **params}``. Raises ``KeyedError``."""
    if name not in SCHEDULES:
        raise KeyedError("name", f"unknown schedule {name!r} (known: {', '.join(SCHEDULES)})")
    known = SCHEDULES[name]
    for key in params:
        if key not in known:
            raise KeyedError(
                key,
                f"unknown parameter for schedule {name!r} (allowed: {', '.join(known) or 'none'})",
            )
    out: dict[str, Any] = {"name": name}
    for key, (default, _) in known.items():
        value = params.get(key, default)
        if value is None and key == "step_size":
            value = max(1, total_steps // 3)
        if value is None and key == "warmup_steps":
            value = max(1, round(0.05 * total_steps))
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise KeyedError(key, f"must be a number, got {value!r}")
        if key in ("step_size", "warmup_steps"):
            if not isinstance(value, int) or value < 1:
                raise KeyedError(key, f"must be an integer >= 1, got {value!r}")
        elif not 0 <= value <= 1:
            raise KeyedError(key, f"must be in [0, 1], got {value!r}")
        else:
            value = float(value)  # gamma = 0 and 0.0 are one schedule (and one run id)
        out[key] = value
    return out


def factor_fn(schedule: dict[str, Any], total_steps: int) -> Callable[[Any], Any]:
    """``f(step)`` -> lr multiplier, for an int or a numpy array of steps."""
    import numpy as np  # here: checking a grid's schedule (``resolve``) needs no numpy

    name = schedule["name"]
    if name == "constant":
        return lambda t: np.ones_like(t, dtype=np.float64)
    if name == "step":
        size, gamma = schedule["step_size"], schedule["gamma"]
        return lambda t: gamma ** (np.asarray(t) // size)
    final = schedule["final_factor"]
    warmup = schedule.get("warmup_steps", 0)
    span = max(1, total_steps - warmup)

    def cosine(t: Any) -> Any:
        t = np.asarray(t, dtype=np.float64)
        progress = np.clip((t - warmup) / span, 0.0, 1.0)
        decayed = final + (1 - final) * 0.5 * (1 + np.cos(math.pi * progress))
        # Warm-up from lr/warmup (never exactly zero, so the first step updates something).
        return np.where(t < warmup, (t + 1) / max(warmup, 1), decayed)

    return cosine


def lr_per_step(schedule: dict[str, Any], lr: float, total_steps: int, steps: int) -> np.ndarray:
    """The lr used at each of the first ``steps`` steps."""
    import numpy as np

    return lr * factor_fn(schedule, total_steps)(np.arange(steps)).astype(np.float64)
