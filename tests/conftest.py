"""Shared fixtures: write grids and data files, run the CLI in-process or as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]

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


class CliResult:
    def __init__(self, code: int, stdout: str, stderr: str) -> None:
        self.exit_code, self.stdout, self.stderr = code, stdout, stderr

    def __repr__(self) -> str:
        return (
            f"CliResult(exit_code={self.exit_code}, stdout={self.stdout!r}, stderr={self.stderr!r})"
        )


def cli(*args: str | Path, cwd: Path | None = None) -> CliResult:
    """Run ``sgdbench ARGS`` in-process (fast); stdout and stderr are captured separately."""
    from sgdbench.cli import app

    old = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    finally:
        os.chdir(old)
    return CliResult(result.exit_code, result.stdout, result.stderr)


def cli_subprocess(
    *args: str | Path,
    cwd: Path | None = None,
    timeout: float = 300,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m sgdbench ARGS`` in a fresh interpreter using this checkout's package."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "sgdbench", *map(str, args)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
