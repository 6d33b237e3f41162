"""Independent random streams derived from a run's seed (never from run order)."""

from __future__ import annotations

import numpy as np

INIT, DATA_ORDER, GLOBAL = 0, 1, 2  # stream ids


def derive_seed(seed: int, stream: int, *words: int) -> int:
    """A 63-bit seed for ``stream`` (and e.g. the epoch) of run ``seed``."""
    state = np.random.SeedSequence([seed, stream, *words]).generate_state(1, np.uint64)[0]
    return int(state >> np.uint64(1))
