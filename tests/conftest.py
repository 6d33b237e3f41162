"""Shared fixtures (helpers that tests import live in tests/helpers.py)."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

# Tiny models run fastest on one intra-op thread, and OpenMP threads spinning against each other on
# a loaded 2-core machine made single steps 10-30x slower. Subprocesses inherit this.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def write_grid(tmp_path: Path) -> Callable[..., Path]:
    """``write_grid(text, name="grid.toml")`` writes a dedented grid file into tmp_path."""

    def write(text: str, name: str = "grid.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write
