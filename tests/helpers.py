"""Helpers shared by the tests: run the CLI in-process or as a subprocess.

Imported as ``from tests.helpers import cli``; conftest.py holds only fixtures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]


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


def wait_until(condition: Callable[[], bool], timeout_s: float = 120.0, what: str = "") -> None:
    """Poll ``condition`` until it holds (a wait on an event another process causes, never a
    guess at how long something takes); fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout_s:g} s, still waiting: {what or condition}")
        time.sleep(0.02)  # the polling interval, not a timing


def _forked_main(args: list[str], cwd: str, err: str, before: Callable[[], object] | None) -> None:
    os.chdir(cwd)
    with open(err, "w") as stream:  # the child's stderr (fd 2) into a file the parent reads
        os.dup2(stream.fileno(), 2)
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115 (lives as long as the child)
    if before is not None:
        before()
    from sgdbench.cli import app

    app(args)


def cli_forked(
    *args: str | Path, cwd: Path, before: Callable[[], object] | None = None, timeout: float = 300
) -> tuple[int | None, str]:
    """Run ``sgdbench ARGS`` in a forked child of this process: its own process (it can be
    killed, signalled or die half-way: ``before`` runs in the child first and may patch it to)
    without paying a fresh interpreter's torch import. Returns the exit code (``-N`` for
    signal N) and the child's stderr."""
    import multiprocessing
    import tempfile

    with tempfile.NamedTemporaryFile("r", suffix=".stderr") as err:
        child = multiprocessing.get_context("fork").Process(
            target=_forked_main, args=([str(a) for a in args], str(cwd), err.name, before)
        )
        child.start()
        child.join(timeout)
        if child.exitcode is None:
            child.kill()
            child.join()
            raise AssertionError(f"sgdbench {' '.join(map(str, args))}: still running")
        return child.exitcode, err.read()


# Runs the command like `python -m sgdbench`, then records its exit code and every module it had
# imported.
_PROBE = """
import json, runpy, sys
sys.argv = ["sgdbench", *sys.argv[2:]]
try:
    runpy.run_module("sgdbench", run_name="__main__")
except SystemExit as e:
    code = e.code
else:
    code = 0
with open({out!r}, "w") as f:
    json.dump({{"code": code, "modules": sorted(sys.modules)}}, f)
"""


def imported_modules(tmp_path: Path, *args: str | Path) -> tuple[int, set[str]]:
    """``sgdbench ARGS`` in a fresh interpreter: its exit code and the modules it imported."""
    out = tmp_path / "modules.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [sys.executable, "-c", _PROBE.format(out=str(out)), "-", *map(str, args)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    data = json.loads(out.read_text())
    return data["code"], set(data["modules"])
