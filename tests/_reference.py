"""A plain PyTorch training loop, written independently of the engine, for bitwise comparisons.

It shares with the engine only what defines the run: the problem factory (same seeded
initialisation), the seeds of the data order, and the optimizer class, keywords and
implementation. Everything else is the textbook loop: ``randperm`` and indexing every step,
``zero_grad``, ``backward``, ``step``, ``LambdaLR`` for a schedule, ``loss.item()``.
"""

from __future__ import annotations

import numpy as np
import torch

from sgdbench import schedules
from sgdbench.engine import seeding
from sgdbench.problems.factory import apply_init, build_problem
from sgdbench.spec import RunSpec

IMPL_KWARGS = {
    "fused": {"fused": True},
    "foreach": {"foreach": True},
    "forloop": {"foreach": False},
}


def reference_losses(spec: RunSpec, impl: str, device: str = "cpu") -> np.ndarray:
    """Per-step minibatch losses (before each update) of ``spec`` trained by the plain loop."""
    problem = build_problem(
        spec.problem, spec.problem_kwargs, seeding.derive_seed(spec.seed, seeding.INIT)
    )
    apply_init(problem, spec.init)
    problem.to(torch.device(device))
    model, loss_fn, X, y = problem.model, problem.loss_fn, problem.X, problem.y
    assert X is not None and y is not None
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.optimizer_kwargs.items()}
    cls = getattr(torch.optim, spec.optimizer_class)
    optimizer = cls(model.parameters(), lr=spec.lr, **kwargs, **IMPL_KWARGS[impl])
    scheduler = None
    if spec.schedule["name"] != "constant":
        factor = schedules.factor_fn(spec.schedule, spec.steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: float(factor(t)))
    losses: list[float] = []
    n, bs = len(X), spec.batch_size
    epoch = 0
    while len(losses) < spec.steps:
        if spec.shuffle:
            g = torch.Generator(device=device)
            g.manual_seed(seeding.derive_seed(spec.seed, seeding.DATA_ORDER, epoch))
            order = torch.randperm(n, generator=g, device=device)
        else:
            order = torch.arange(n, device=device)
        for start in range(0, n, bs):
            if len(losses) == spec.steps:
                break
            idx = order[start : start + bs]
            optimizer.zero_grad()
            loss = loss_fn(model(X[idx]), y[idx])
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            losses.append(loss.item())
        epoch += 1
    return np.asarray(losses, dtype=np.float32)
