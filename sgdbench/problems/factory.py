"""Instantiate a problem for one run: seeded model initialisation and the ``init`` override."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from sgdbench.lazy_dynamo import manual_seed
from sgdbench.problems import plugin
from sgdbench.problems.base import Problem
from sgdbench.problems.registry import builder_for

if TYPE_CHECKING:
    from sgdbench.spec import RunSpec


def build_problem(
    name: str, kwargs: dict[str, Any], init_seed: int, search_path: str | None = None
) -> Problem:
    """Build ``name`` with ``kwargs``; model initialisation draws from ``init_seed`` only.

    The global RNG is forked, so building leaves no trace on other runs and no other run's
    state leaks into this one. ``search_path`` (the grid's folder) is where a plug-in's module
    may also live; it is never put on ``sys.path``.

    A plug-in that exits (``sys.exit()``, or any ``BaseException`` but Ctrl-C) while loading or
    building raises ``PluginError`` instead: the grid reports it, a run records it as failed.
    """
    try:
        builder = builder_for(name, search_path)
        with torch.random.fork_rng(devices=[]):
            manual_seed(init_seed)
            problem = builder(**kwargs)
    except (Exception, KeyboardInterrupt):
        raise
    except BaseException as e:
        raise plugin.PluginError(f"{plugin.exit_message(e)} while loading or building") from e
    if not isinstance(problem, Problem):
        raise TypeError(f"{name} returned {type(problem).__name__}, not an sgdbench.Problem")
    return problem


def build_for_run(spec: RunSpec) -> Problem:
    """The problem of one run: initialised from the run's seed (its own stream), then ``init``."""
    from sgdbench.engine import seeding

    problem = build_problem(
        spec.problem,
        spec.problem_kwargs,
        seeding.derive_seed(spec.seed, seeding.INIT),
        spec.search_path,
    )
    apply_init(problem, spec.init)
    return problem


def apply_init(problem: Problem, init: str | list[float]) -> None:
    """Set the trainable parameters from ``init``: "default" keeps them, "zeros" zeroes them,
    a list sets them flat in parameter order (a linear model's weights, then its bias)."""
    params = problem.trainable_parameters()
    with torch.no_grad():
        if init == "zeros":
            for p in params:
                p.zero_()
        elif isinstance(init, list):
            n = sum(p.numel() for p in params)
            if len(init) != n:
                raise ValueError(f"init has {len(init)} values, the model has {n} parameters")
            flat = torch.tensor(init, dtype=params[0].dtype)
            torch.nn.utils.vector_to_parameters(flat, params)


def parameter_count(problem: Problem) -> int:
    return sum(p.numel() for p in problem.trainable_parameters())
