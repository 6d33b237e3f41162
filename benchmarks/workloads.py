"""What the benchmarks train: models, optimizers, data, and the three loops that are compared.

One module owns the workloads so the step benchmarks, the throughput benchmarks and
``ratios.py`` time exactly the same things:

- ``engine_epoch``: ``sgdbench.engine.eager.run`` on a spec loaded from a grid file;
- ``hand_written_epoch`` (b): the fastest plain loop we know how to write with ``torch.optim``:
  the engine's per-step operations without any of its bookkeeping, and no loss recorded;
- ``idiomatic_epoch`` (b'): a good conventional loop (``randperm`` + indexing, ``zero_grad()``,
  torch's default optimizer implementation, no ``.item()``);
- ``tutorial_epoch``: the loop from the PyTorch tutorials (``DataLoader(TensorDataset,
  shuffle=True)``, ``loss.item()`` every step).

All of them do the same work around the loop: build the same problem with the same
initialisation (``build_problem`` with the run's init seed), evaluate the full-data loss (the
engine's ``evaluate``), train the same optimizer on the same data for ``spec.epochs`` epochs, and
evaluate again; so timing the whole call compares like with like.
"""

from __future__ import annotations

import itertools
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from benchmarks import slowdown
from sgdbench import optimizers
from sgdbench.engine import eager, seeding
from sgdbench.engine.trajectory import Trajectory
from sgdbench.plan import load_grid
from sgdbench.problems.base import Problem
from sgdbench.problems.builtin import mlp, mse_loss
from sgdbench.problems.factory import build_problem
from sgdbench.spec import RunSpec

PROBLEM = "benchmarks.workloads:regression"  # a plug-in problem (this module is importable)


@dataclass(frozen=True)
class Model:
    n_features: int
    hidden: tuple[int, ...]

    @property
    def n_parameters(self) -> int:
        widths = [self.n_features, *self.hidden, 1]
        return sum(a * b + b for a, b in itertools.pairwise(widths))


MODELS = {
    "linear1": Model(1, ()),  # nn.Linear(1, 1): 2 parameters, pure per-step overhead
    "mlp4k": Model(32, (64, 32)),  # 4,225 parameters
    "mlp1m": Model(256, (1024, 768)),  # 1,051,137 parameters
}

# name -> (torch.optim class, keyword arguments, lr)
OPTIMIZERS: dict[str, tuple[str, dict[str, Any], float]] = {
    "sgd": ("SGD", {}, 0.01),
    "momentum": ("SGD", {"momentum": 0.9}, 0.01),
    "adam": ("Adam", {}, 1e-3),
    "adamw": ("AdamW", {}, 1e-3),
    "rmsprop": ("RMSprop", {}, 1e-3),
    "adagrad": ("Adagrad", {}, 0.01),
}


def regression(
    n_samples: int = 1000, n_features: int = 1, hidden: list[int] | None = None, seed: int = 0
) -> Problem:
    """Synthetic regression (a random linear target plus noise) with an MLP; a plug-in problem."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n_samples, n_features, generator=g)
    w = torch.randn(n_features, generator=g) / n_features**0.5
    y = X @ w + 0.1 * torch.randn(n_samples, generator=g)
    return Problem(mlp(n_features, list(hidden or []), 1), mse_loss, X, y, task="regression")


def write_grid(
    folder: Path,
    model: str,
    optimizer: str,
    batch_size: int,
    n_samples: int,
    *,
    epochs: int = 1,
    device: str = "cpu",
    threads: int | None = 1,
    impl: str = "auto",
    shuffle: bool = True,
    seed: int = 0,
) -> Path:
    """A one-run grid file training ``model`` with ``optimizer`` for ``epochs`` epochs."""
    m = MODELS[model]
    cls, kwargs, lr = OPTIMIZERS[optimizer]
    preset = "".join(f"{k} = {v!r}\n" for k, v in kwargs.items())
    thread_line = f"threads = {threads}" if threads else ""
    text = f"""\
        name = "bench"
        [problem]
        name = "{PROBLEM}"
        n_samples = {n_samples}
        n_features = {m.n_features}
        hidden = {list(m.hidden)}
        [train]
        epochs = {epochs}
        shuffle = {str(shuffle).lower()}
        eval_every = 0
        optimizer_impl = "{impl}"
        {thread_line}
        [grid]
        optimizer = ["opt"]
        lr = [{lr}]
        batch_size = [{batch_size}]
        device = ["{device}"]
        seed = [{seed}]
        [optimizers.opt]
        type = "{cls}"
        """
    path = folder / f"{model}-{optimizer}-{batch_size}-{n_samples}-{device}-{impl}.toml"
    path.write_text(textwrap.dedent(text) + textwrap.indent(preset, ""))
    return path


def load_spec(grid_path: Path) -> RunSpec:
    (spec,) = load_grid(grid_path).runs
    return spec


def build(spec: RunSpec, device: torch.device) -> Problem:
    """The run's problem with the engine's seeded initialisation, on ``device``."""
    problem = build_problem(
        spec.problem, spec.problem_kwargs, seeding.derive_seed(spec.seed, seeding.INIT)
    )
    return problem.to(device)


def torch_default_optimizer(
    spec: RunSpec, params: list[torch.nn.Parameter]
) -> torch.optim.Optimizer:
    """The run's optimizer as most code builds it: torch's default implementation."""
    cls = getattr(torch.optim, spec.optimizer_class)
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.optimizer_kwargs.items()}
    return cls(params, lr=spec.lr, **kwargs)


def engine_epoch(spec: RunSpec) -> Trajectory:
    """sgdbench's eager engine: the whole ``run`` call (build, train, evaluate at 0 and end).

    With ``SGDBENCH_BENCH_SLOWDOWN=F`` set, each engine step costs F times as much
    (``benchmarks/slowdown.py``): a known regression, to measure what the benchmark checks catch.
    """
    factor = slowdown.factor_from_env()
    if factor > 1.0:
        spec = slowdown.slowed_spec(spec, factor)
    traj = eager.run(spec)
    if traj.status not in ("ok", "diverged"):
        raise RuntimeError(f"engine run {traj.status}: {traj.message}")
    return traj


def hand_written_epoch(spec: RunSpec, device: torch.device) -> None:
    """(b) The fastest plain loop we can write: the engine's per-step operations (same optimizer
    implementation, one gather per epoch then slices, ``p.grad = None``) with none of its
    bookkeeping: no loss kept, no clock, no windows, no checks."""
    problem = build(spec, device)
    model, loss_fn, X, y = problem.model, problem.loss_fn, problem.X, problem.y
    assert X is not None and y is not None
    eager.evaluate(problem)  # as the engine does at step 0
    params = list(model.parameters())
    optimizer, _ = optimizers.build_optimizer(
        spec.optimizer_class, params, spec.lr, spec.optimizer_kwargs, spec.optimizer_impl, device
    )
    g = torch.Generator(device=device)
    for epoch in range(spec.epochs or 1):
        g.manual_seed(seeding.derive_seed(spec.seed, seeding.DATA_ORDER, epoch))
        order = torch.randperm(len(X), generator=g, device=device)
        X_epoch, y_epoch = X[order], y[order]
        for start in range(0, len(X), spec.batch_size):
            stop = start + spec.batch_size
            loss = loss_fn(model(X_epoch[start:stop]), y_epoch[start:stop])
            for p in params:
                p.grad = None
            loss.backward()
            optimizer.step()
    eager.evaluate(problem)  # and at the end (its result is a host float: a sync on CUDA)


def idiomatic_epoch(spec: RunSpec, device: torch.device) -> None:
    """(b') A good conventional loop: data in memory, ``randperm`` and indexing every step,
    ``zero_grad()``, torch's default optimizer implementation, no ``.item()``."""
    problem = build(spec, device)
    model, loss_fn, X, y = problem.model, problem.loss_fn, problem.X, problem.y
    assert X is not None and y is not None
    eager.evaluate(problem)  # as the engine does at step 0
    optimizer = torch_default_optimizer(spec, list(model.parameters()))
    g = torch.Generator(device=device)
    for epoch in range(spec.epochs or 1):
        g.manual_seed(seeding.derive_seed(spec.seed, seeding.DATA_ORDER, epoch))
        order = torch.randperm(len(X), generator=g, device=device)
        for start in range(0, len(X), spec.batch_size):
            idx = order[start : start + spec.batch_size]
            loss = loss_fn(model(X[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    eager.evaluate(problem)  # and at the end (its result is a host float: a sync on CUDA)


def tutorial_epoch(spec: RunSpec, device: torch.device) -> list[float]:
    """The tutorial loop: a shuffling ``DataLoader`` and ``loss.item()`` after every step."""
    from torch.utils.data import DataLoader, TensorDataset

    problem = build(spec, device)
    model, loss_fn, X, y = problem.model, problem.loss_fn, problem.X, problem.y
    assert X is not None and y is not None
    eager.evaluate(problem)  # as the engine does at step 0
    optimizer = torch_default_optimizer(spec, list(model.parameters()))
    loader = DataLoader(TensorDataset(X, y), batch_size=spec.batch_size, shuffle=True)
    losses: list[float] = []
    for _epoch in range(spec.epochs or 1):
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    eager.evaluate(problem)
    return losses


def step_inputs(
    model: str, batch_size: int, device: torch.device
) -> tuple[torch.nn.Module, Tensor, Tensor]:
    """A fresh model and one batch, for timing the optimizer step in isolation."""
    m = MODELS[model]
    torch.manual_seed(0)
    net = mlp(m.n_features, list(m.hidden), 1).to(device)
    g = torch.Generator().manual_seed(1)
    X = torch.randn(batch_size, m.n_features, generator=g).to(device)
    y = torch.randn(batch_size, generator=g).to(device)
    return net, X, y
