"""The engine's per-step losses are bitwise those of a plain PyTorch loop, and reproducible."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from sgdbench.engine import eager
from sgdbench.metrics import loss_digest
from sgdbench.plan import load_grid
from sgdbench.spec import RunSpec
from tests._reference import reference_losses

OPTIMIZERS = {
    "momentum": 'type = "SGD"\nmomentum = 0.9',
    "nesterov": 'type = "SGD"\nmomentum = 0.9\nnesterov = true\nweight_decay = 0.001',
    "sgd": 'type = "SGD"',
    "adam": 'type = "Adam"',
    "adamw": 'type = "AdamW"',
    "rmsprop": 'type = "RMSprop"\nmomentum = 0.5',
    "adagrad": 'type = "Adagrad"',
}
PROBLEMS = {
    # 100 samples, batch 8: the last batch of every epoch is short (4 samples).
    "linear": 'name = "linear"\nn_samples = 100\nn_features = 5',
    "digits_mlp": 'name = "digits"\nmodel = "mlp"\nhidden = [16]\nclasses = [1, 7]',
}


def make_spec(
    write_grid: Callable[..., Path],
    optimizer: str,
    *,
    problem: str = "linear",
    shuffle: bool = True,
    schedule: str = "constant",
    impl: str = "auto",
    device: str = "cpu",
    epochs: int = 3,
) -> RunSpec:
    path = write_grid(
        f"""
        name = "ref"
        [problem]
        {PROBLEMS[problem]}
        [train]
        epochs = {epochs}
        shuffle = {str(shuffle).lower()}
        schedule = "{schedule}"
        optimizer_impl = "{impl}"
        eval_every = 7
        [grid]
        optimizer = ["opt"]
        lr = [0.01]
        batch_size = [8]
        device = ["{device}"]
        seed = [3]
        [optimizers.opt]
        """
    )
    path.write_text(path.read_text() + OPTIMIZERS[optimizer] + "\n")
    (spec,) = load_grid(path).runs
    return spec


def train(spec: RunSpec) -> eager.Trajectory:
    traj = eager.run(spec)
    assert traj.status == "ok", traj.message
    return traj


@pytest.mark.parametrize("shuffle", [True, False], ids=["shuffle", "in-order"])
@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
@pytest.mark.parametrize("problem", ["linear", "digits_mlp"])
def test_losses_bitwise_equal_to_plain_loop(write_grid, problem, optimizer, shuffle):
    spec = make_spec(write_grid, optimizer, problem=problem, shuffle=shuffle)
    traj = train(spec)
    expected = reference_losses(spec, traj.info["optimizer_impl"])
    assert len(traj.losses) == spec.steps
    np.testing.assert_array_equal(traj.losses, expected)


@pytest.mark.parametrize("optimizer", ["sgd", "nesterov", "adamw", "rmsprop", "adagrad"])
def test_other_optimizers_bitwise_equal_to_plain_loop(write_grid, optimizer):
    spec = make_spec(write_grid, optimizer)
    traj = train(spec)
    np.testing.assert_array_equal(traj.losses, reference_losses(spec, traj.info["optimizer_impl"]))


@pytest.mark.parametrize("schedule", ["cosine", "warmup_cosine", "step"])
def test_schedule_matches_lambdalr(write_grid, schedule):
    """The engine writes precomputed lrs into the param groups; the reference uses LambdaLR."""
    spec = make_spec(write_grid, "momentum", schedule=schedule)
    traj = train(spec)
    np.testing.assert_array_equal(traj.losses, reference_losses(spec, traj.info["optimizer_impl"]))


@pytest.mark.parametrize("impl", ["auto", "fused", "foreach", "forloop"])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam", "rmsprop", "adagrad"])
def test_each_impl_reproducible_run_to_run(write_grid, optimizer, impl):
    if impl == "fused" and optimizer == "rmsprop":
        pytest.skip("RMSprop has no fused implementation")
    spec = make_spec(write_grid, optimizer, impl=impl, epochs=2)
    first, second = train(spec), train(spec)
    if impl != "auto":
        assert first.info["optimizer_impl"] == impl
    assert loss_digest(first.losses) == loss_digest(second.losses)
