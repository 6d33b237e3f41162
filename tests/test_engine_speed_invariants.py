"""What the speed work must not change: batches, the recorded implementation and warm-up."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from sgdbench import optimizers
from sgdbench.engine import eager
from sgdbench.problems.base import Problem
from tests.helpers import cli


@pytest.mark.parametrize("shuffle", [True, False])
def test_batches_are_the_indexed_rows_of_each_epoch(shuffle):
    n, batch_size = 10, 4  # 3 steps per epoch, the last one short
    X = torch.arange(n * 2, dtype=torch.float32).reshape(n, 2)
    problem = Problem(torch.nn.Linear(2, 1), lambda o, t: o.mean(), X, torch.arange(n) * 1.0)
    spec = SimpleNamespace(
        batch_size=batch_size, steps_per_epoch=3, shuffle=shuffle, full_batch=False, seed=5
    )
    batches = eager.Batches(problem, spec, torch.device("cpu"))  # type: ignore[arg-type]
    seen_orders = []
    for step in [0, 1, 2, 3, 4, 5, 1, 8]:  # forwards, then back to an earlier epoch
        epoch, i = divmod(step, 3)
        order = batches.order(epoch) if shuffle else torch.arange(n)
        idx = order[i * batch_size : (i + 1) * batch_size]
        xb, yb = batches(step)
        assert torch.equal(xb, X[idx]) and torch.equal(yb, problem.y[idx])
        assert xb.is_contiguous()
        seen_orders.append(order)
    if shuffle:
        assert not torch.equal(seen_orders[0], seen_orders[3])  # a new order every epoch


def test_full_batch_and_function_problems_get_all_data():
    X = torch.randn(6, 2)
    problem = Problem(torch.nn.Linear(2, 1), lambda o, t: o.mean(), X, torch.randn(6))
    spec = SimpleNamespace(batch_size=6, steps_per_epoch=1, shuffle=True, full_batch=True, seed=0)
    xb, _ = eager.Batches(problem, spec, torch.device("cpu"))(3)  # type: ignore[arg-type]
    assert xb is X


@pytest.mark.parametrize(
    ("name", "kwargs", "expected"),
    [
        ("SGD", {}, "forloop"),
        ("SGD", {"momentum": 0.0}, "forloop"),
        ("SGD", {"momentum": 0.9}, "fused"),
        ("Adam", {}, "fused"),
        ("AdamW", {}, "fused"),
        ("Adagrad", {}, "fused"),
        ("RMSprop", {}, "forloop"),  # no fused RMSprop; foreach is slower on CPU
        ("LBFGS", {}, "forloop"),  # neither fused nor foreach
    ],
)
def test_auto_impl_on_cpu(name, kwargs, expected):
    params = [torch.nn.Parameter(torch.zeros(3))]
    _, impl = optimizers.build_optimizer(name, params, 0.1, kwargs, "auto", torch.device("cpu"))
    assert impl == expected


def test_forced_impl_the_class_lacks_is_an_error():
    params = [torch.nn.Parameter(torch.zeros(3))]
    with pytest.raises(ValueError, match="fused"):
        optimizers.build_optimizer("RMSprop", params, 0.1, {}, "fused", torch.device("cpu"))


def test_runs_parquet_records_impl_and_warmup(write_grid, tmp_path):
    grid = write_grid(
        """
        name = "impl"
        [problem]
        name = "linear"
        n_samples = 64
        [train]
        epochs = 2
        [grid]
        optimizer = ["sgd", "adam", "rmsprop"]
        lr = [0.01]
        batch_size = [4]
        """
    )
    out = tmp_path / "out"
    assert cli("run", grid, "--out", out, "-q").exit_code == 0
    runs = pd.read_parquet(out / "runs.parquet").set_index("optimizer")
    assert runs["optimizer_impl"].to_dict() == {
        "sgd": "forloop",
        "adam": "fused",
        "rmsprop": "forloop",
    }
    assert (runs["warmup_steps"] == eager.WARMUP_STEPS).all()
    assert ((runs["warmup_s"] > 0) & (runs["warmup_s"] < runs["train_time_s"])).all()


def test_sync_debug_env_is_harmless_on_cpu(write_grid, tmp_path, monkeypatch):
    monkeypatch.setenv(eager.SYNC_DEBUG_ENV, "1")
    grid = write_grid(
        """
        [problem]
        name = "linear"
        n_samples = 32
        [train]
        steps = 20
        [grid]
        optimizer = ["adam"]
        lr = [0.01]
        batch_size = [4]
        """
    )
    assert cli("run", grid, "--out", tmp_path / "out", "-q").exit_code == 0
