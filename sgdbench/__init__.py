"""sgdbench: an experiment runner and benchmark for stochastic gradient descent in PyTorch.

Importing the package is cheap (no torch) so that ``sgdbench --help`` stays fast; ``Problem``,
``load`` and ``load_evals`` (tidy per-step and per-evaluation tables of a results folder, in
``sgdbench.tidy``) are loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
SCHEMA_VERSION = 1  # bump when the meaning or layout of results on disk changes

if TYPE_CHECKING:
    from sgdbench.problems.base import Problem
    from sgdbench.tidy import load, load_evals

__all__ = ["SCHEMA_VERSION", "Problem", "__version__", "load", "load_evals"]


def __getattr__(name: str) -> Any:
    if name == "Problem":
        from sgdbench.problems.base import Problem

        return Problem
    if name in ("load", "load_evals"):
        import importlib

        return getattr(importlib.import_module("sgdbench.tidy"), name)
    raise AttributeError(f"module 'sgdbench' has no attribute {name!r}")
