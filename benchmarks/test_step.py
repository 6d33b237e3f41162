"""The training step itself: sgdbench's ``make_update`` (forward, backward, optimizer step) on a
fixed batch, for each optimizer × model × batch size, with the implementation "auto" picks."""

from __future__ import annotations

import pytest
import torch

from benchmarks import workloads
from benchmarks.conftest import devices
from sgdbench import optimizers
from sgdbench.engine import eager
from sgdbench.problems.base import Problem
from sgdbench.problems.builtin import mse_loss

CASES = [
    (model, batch_size)
    for model in ("linear1", "mlp4k", "mlp1m")
    for batch_size in (1, 32, 1024)
    if not (model == "mlp1m" and batch_size == 1024)  # ~0.1 s a step on one CPU thread
]


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize(("model", "batch_size"), CASES, ids=[f"{m}-bs{b}" for m, b in CASES])
@pytest.mark.parametrize("optimizer", list(workloads.OPTIMIZERS))
def test_step(benchmark, optimizer, model, batch_size, device):
    dev = torch.device(device)
    net, X, y = workloads.step_inputs(model, batch_size, dev)
    cls, kwargs, lr = workloads.OPTIMIZERS[optimizer]
    opt, impl = optimizers.build_optimizer(cls, list(net.parameters()), lr, kwargs, "auto", dev)
    update = eager.make_update(Problem(net, mse_loss, X, y), opt, closure_style=False)
    benchmark.group = f"step {model} bs={batch_size} {device}"
    benchmark.extra_info.update(
        optimizer_impl=impl, n_parameters=sum(p.numel() for p in net.parameters())
    )
    for _ in range(3):  # optimizer state, allocator
        update(X, y)
    if dev.type == "cuda":

        def step() -> None:
            update(X, y)
            torch.cuda.synchronize(dev)

        benchmark(step)
    else:
        benchmark(update, X, y)
