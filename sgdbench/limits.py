"""Documented limits of a grid (README, "Grid file"), shared by the schema and the registry.

A leaf: no imports from the package, so anything may use it.
"""

from __future__ import annotations

# Every float becomes a float32 tensor or scalar somewhere; a larger value passes validation and
# fails (or turns to inf) later, so it is refused at load.
FLOAT32_MAX = 3.4028234663852886e38
MAX_SEED = 2**32 - 1  # data and run seeds; also keeps them inside the int64 columns of the results
# The name is a folder name (255 bytes on most file systems, and files inside it add their own
# names); runs and steps are counted before anything is allocated.
MAX_NAME_LENGTH = 100
MAX_RUNS = 100_000
MAX_STEPS = 100_000_000  # every step is a row of steps/ and a slot of the in-memory loss buffer
MAX_SECONDS = 10_000_000.0  # about 116 days
MAX_THREADS = 1024
MAX_REPEAT = 1000  # [train] repeat: trainings of each run
MAX_DEPTH = 16  # nesting of tables and arrays: no valid grid needs more than 3
