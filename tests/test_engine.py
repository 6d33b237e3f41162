"""Engine behaviour: exact trajectories, statuses, failure isolation, schedules."""

from __future__ import annotations

import textwrap
import uuid

import numpy as np
import pandas as pd
import pytest
import torch

from tests.helpers import cli


def run_grid(tmp_path, text: str, *args: str):
    (tmp_path / "grid.toml").write_text(textwrap.dedent(text))
    result = cli("run", "grid.toml", "--out", "out", "-q", *args, cwd=tmp_path)
    out = tmp_path / "out"
    runs = pd.read_parquet(out / "runs.parquet") if (out / "runs.parquet").exists() else None
    return result, runs, out


def steps_of(out, run_id: str) -> pd.DataFrame:
    steps = pd.read_parquet(out / "steps")
    return steps[steps["run_id"] == run_id].sort_values("step")


def plugin(tmp_path, body: str) -> str:
    """Write a plug-in module; returns its ``module:make`` name."""
    name = f"plug_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(body))
    return f"{name}:make"


QUADRATIC = """
[problem]
name = "quadratic"
[train]
steps = 12
init = [-1.5]
eval_every = 1
[grid]
optimizer = "sgd"
lr = {lrs}
"""


def test_gradient_descent_on_x_squared_matches_closed_form(tmp_path):
    lrs = [0.01, 0.1, 0.25, 0.5, 0.9]
    result, runs, out = run_grid(tmp_path, QUADRATIC.format(lrs=lrs))
    assert result.exit_code == 0
    for _, run in runs.iterrows():
        gamma = run["lr"]
        t = np.arange(12)
        expected = (-1.5 * (1 - 2 * gamma) ** t) ** 2  # loss at step t, before its update
        losses = steps_of(out, run["run_id"])["loss"].to_numpy()
        np.testing.assert_allclose(losses, expected, rtol=1e-5, atol=1e-12)
    assert set(runs["status"]) == {"ok"}


def test_divergence_is_a_result_and_the_grid_goes_on(tmp_path):
    result, runs, out = run_grid(
        tmp_path, QUADRATIC.format(lrs=[0.1, 1.5]).replace("steps = 12", "steps = 600")
    )
    assert result.exit_code == 0
    by_lr = runs.set_index("lr")
    assert by_lr.loc[1.5, "status"] == "diverged"
    assert by_lr.loc[1.5, "message"].endswith("at step 7 (above 10000 x the first (2.25))")
    assert by_lr.loc[0.1, "status"] == "ok" and by_lr.loc[0.1, "steps"] == 600
    # Checks happen at chunk boundaries: the diverged run stopped within one chunk (256 steps)
    # of the blow-up (|1 - 2*1.5| = 2, loss x4 per step: above 1e4 x after 7 steps).
    assert 7 < by_lr.loc[1.5, "steps"] <= 256
    losses = steps_of(out, by_lr.loc[1.5, "run_id"])["loss"].to_numpy()
    np.testing.assert_allclose(losses[:8], 2.25 * 4.0 ** np.arange(8), rtol=1e-5)


def test_nan_loss_is_diverged(tmp_path):
    name = plugin(
        tmp_path,
        """
        import torch
        from sgdbench import Problem
        def make():
            model = torch.nn.Linear(1, 1)
            X = torch.tensor([[1.0], [float("nan")]])
            return Problem(model, lambda out, y: ((out.squeeze(-1) - y) ** 2).mean(),
                           X, torch.zeros(2))
    """,
    )
    result, runs, _ = run_grid(
        tmp_path,
        f"""
        [problem]
        name = "{name}"
        [train]
        steps = 4
        shuffle = false
        [grid]
        lr = 0.1
        batch_size = 1
    """,
    )
    assert result.exit_code == 0
    assert runs["status"].item() == "diverged"
    assert "non-finite" in runs["message"].item() and "step 1" in runs["message"].item()


def test_a_failing_run_is_isolated_logged_and_exits_1(tmp_path):
    name = plugin(
        tmp_path,
        """
        import torch
        from sgdbench import Problem
        class Bomb(torch.nn.Module):
            def __init__(self, fail_lr):
                super().__init__()
                self.lin = torch.nn.Linear(2, 1)
            def forward(self, x):
                if x.shape[0] == 3:
                    raise RuntimeError("boom in forward")
                return self.lin(x)
        def make(fail_at_batch=3):
            g = torch.Generator().manual_seed(0)
            X = torch.randn(10, 2, generator=g)
            return Problem(Bomb(0), lambda o, y: ((o.squeeze(-1) - y) ** 2).mean(), X, X.sum(1))
    """,
    )
    result, runs, out = run_grid(
        tmp_path,
        f"""
        [problem]
        name = "{name}"
        [train]
        steps = 6
        [grid]
        lr = 0.1
        batch_size = [3, 5]
    """,
    )
    assert result.exit_code == 1
    by_bs = runs.set_index("batch_size")
    assert by_bs.loc[5, "status"] == "ok"
    assert by_bs.loc[3, "status"] == "failed"
    assert by_bs.loc[3, "message"] == "RuntimeError: boom in forward"
    log = out / "logs" / f"{by_bs.loc[3, 'run_id']}.log"
    assert "Traceback" in log.read_text() and "boom in forward" in log.read_text()
    assert "failed" in result.stderr and str(by_bs.loc[3, "run_id"]) in result.stderr
    # A rerun retries the failed run (it is not "complete") and skips the good one.
    again = cli("run", "grid.toml", "--out", "out", "-q", cwd=tmp_path)
    assert "1 of 2 runs already complete" in again.stderr and again.exit_code == 1


def test_a_builder_that_raises_is_a_grid_error_before_any_run(tmp_path):
    name = plugin(
        tmp_path,
        """
        from sgdbench import Problem
        def make():
            raise ValueError("cannot build")
    """,
    )
    (tmp_path / "grid.toml").write_text(
        textwrap.dedent(f"""
        [problem]
        name = "{name}"
        [train]
        steps = 2
        [grid]
        lr = [0.1, 0.2, 0.3]
    """)
    )
    # A builder that raises is caught at validation (exit 2), before any run starts.
    result = cli("run", "grid.toml", "--out", "out", "--fail-fast", cwd=tmp_path)
    assert result.exit_code == 2 and "cannot build" in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the CPU-only machine's behaviour")
def test_cuda_requested_without_cuda_is_skipped(tmp_path):
    result, runs, _ = run_grid(
        tmp_path,
        """
        [problem]
        name = "linear"
        n_samples = 8
        [train]
        steps = 2
        [grid]
        lr = 0.1
        batch_size = 4
        device = ["cpu", "cuda"]
    """,
    )
    assert result.exit_code == 0
    by_device = runs.set_index("device")
    assert by_device.loc["cpu", "status"] == "ok"
    assert by_device.loc["cuda", "status"] == "skipped"
    assert "CUDA is not available" in by_device.loc["cuda", "message"]


STALL_GRID = """
    [problem]
    name = "{name}"
    [train]
    steps = 50
    [grid]
    lr = 0.1
    batch_size = 4
"""


def test_stalled_when_the_forward_uses_a_copy(tmp_path):
    name = plugin(
        tmp_path,
        """
        import copy, torch
        from sgdbench import Problem
        class CopyingModel(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = torch.nn.Linear(2, 1)
            def forward(self, x):
                return copy.deepcopy(self.lin)(x)   # the classic bug: the copy gets the grads
        def make():
            X = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
            return Problem(CopyingModel(), lambda o, y: ((o.squeeze(-1) - y) ** 2).mean(),
                           X, X.sum(1))
    """,
    )
    result, runs, _ = run_grid(tmp_path, STALL_GRID.format(name=name))
    assert result.exit_code == 0
    assert runs["status"].item() == "stalled"
    assert runs["steps"].item() == 1  # stopped after the first update
    message = runs["message"].item()
    assert "no gradient reached lin.weight, lin.bias" in message and "deepcopy" in message
    assert "stalled" in result.stderr


def test_stalled_when_the_optimizer_holds_another_models_parameters(tmp_path):
    name = plugin(
        tmp_path,
        """
        import copy, torch
        from sgdbench import Problem
        def make():
            model = torch.nn.Linear(2, 1)
            stale = copy.deepcopy(model)     # deepcopy after "creating the optimizer"
            X = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
            return Problem(model, lambda o, y: ((o.squeeze(-1) - y) ** 2).mean(), X, X.sum(1),
                           params=stale.parameters())
    """,
    )
    _result, runs, _ = run_grid(tmp_path, STALL_GRID.format(name=name))
    assert runs["status"].item() == "stalled"
    message = runs["message"].item()
    assert "are not the model's" in message and "weight, bias got gradients" in message


def test_a_run_that_learns_is_not_stalled_even_if_some_parameters_are_frozen(tmp_path):
    name = plugin(
        tmp_path,
        """
        import torch
        from sgdbench import Problem
        def make():
            model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
            model[0].requires_grad_(False)
            X = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
            return Problem(model, lambda o, y: ((o.squeeze(-1) - y) ** 2).mean(), X, X.sum(1))
    """,
    )
    _, runs, _ = run_grid(tmp_path, STALL_GRID.format(name=name))
    assert runs["status"].item() == "ok" and runs["steps"].item() == 50


def test_max_seconds_stops_with_timeout(tmp_path):
    result, runs, out = run_grid(
        tmp_path,
        """
        [problem]
        name = "linear"
        n_samples = 64
        [train]
        steps = 10000000
        max_seconds = 0.2
        [grid]
        lr = 0.01
        batch_size = 8
    """,
    )
    assert result.exit_code == 0
    run = runs.iloc[0]
    assert run["status"] == "timeout" and 0 < run["steps"] < 10_000_000
    assert run["train_time_s"] >= 0.2
    assert len(steps_of(out, run["run_id"])) == run["steps"]


def test_lbfgs_runs_with_a_closure(tmp_path):
    result, runs, _ = run_grid(
        tmp_path,
        """
        [problem]
        name = "rosenbrock"
        [train]
        steps = 20
        [grid]
        optimizer = "LBFGS"
        lr = 1.0
    """,
    )
    assert result.exit_code == 0 and runs["status"].item() == "ok"
    assert runs["final_loss"].item() < 1e-3 < runs["best_loss"].item() + 1  # it converges


def test_step_schedule_drives_the_optimizer_and_the_lr_column(tmp_path):
    _result, runs, out = run_grid(
        tmp_path,
        """
        [problem]
        name = "quadratic"
        [train]
        steps = 6
        init = [1.0]
        schedule = {name = "step", step_size = 2, gamma = 0.5}
        [grid]
        lr = 0.2
    """,
    )
    steps = steps_of(out, runs["run_id"].item())
    assert steps["lr"].tolist() == [0.2, 0.2, 0.1, 0.1, 0.05, 0.05]
    x, expected = 1.0, []
    for lr in steps["lr"]:
        expected.append(x * x)
        x -= lr * 2 * x
    np.testing.assert_allclose(steps["loss"], expected, rtol=1e-6)


def test_warmup_cosine_never_starts_at_zero(tmp_path):
    _, runs, out = run_grid(
        tmp_path,
        """
        [problem]
        name = "quadratic"
        [train]
        steps = 20
        init = [1.0]
        schedule = {name = "warmup_cosine", warmup_steps = 4}
        [grid]
        lr = 0.1
    """,
    )
    lr = steps_of(out, runs["run_id"].item())["lr"].to_numpy()
    np.testing.assert_allclose(lr[:5], [0.025, 0.05, 0.075, 0.1, 0.1], rtol=1e-9)
    assert np.all(np.diff(lr[4:]) <= 0) and lr[-1] < 0.01
    assert runs["status"].item() == "ok"


def test_one_sample_dataset(tmp_path):
    result, runs, out = run_grid(
        tmp_path,
        """
        [problem]
        name = "linear"
        n_samples = 1
        n_features = 1
        [train]
        epochs = 5
        [grid]
        lr = 0.1
        batch_size = [1, "full"]
    """,
    )
    assert result.exit_code == 0
    # With one sample, batch size 1 is full-batch: the same computation, so one run.
    assert len(runs) == 1 and runs["full_batch"].item()
    assert runs["steps"].tolist() == [5] and set(runs["status"]) == {"ok"}
    assert steps_of(out, runs["run_id"].iloc[0])["samples_seen"].tolist() == [1, 2, 3, 4, 5]


def test_stop_at_target(tmp_path):
    _, runs, _ = run_grid(
        tmp_path,
        QUADRATIC.format(lrs=[0.25]).replace(
            "eval_every = 1", "eval_every = 1\ntarget_loss = 0.01\nstop_at_target = true"
        ),
    )
    run = runs.iloc[0]
    # x_t = -1.5 * 0.5^t: loss 2.25/4^t <= 0.01 first at t = 4
    assert run["steps_to_target"] == 4 and run["steps"] == 4 and run["status"] == "ok"


def test_minibatches_follow_file_order_without_shuffle_like_a_plain_loop(tmp_path):
    """sgdbench's per-step losses equal the loop a tutorial would write, to float32 precision."""
    g = torch.Generator().manual_seed(1)
    X = torch.randn(12, 3, generator=g)
    y = X @ torch.tensor([1.0, -2.0, 0.5]) + 0.3
    pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "target": y}).to_csv(
        tmp_path / "data.csv", index=False
    )
    _, runs, out = run_grid(
        tmp_path,
        """
        [problem]
        name = "file"
        path = "data.csv"
        target = "target"
        [train]
        epochs = 3
        shuffle = false
        init = "zeros"
        [grid]
        optimizer = "sgd"
        lr = 0.05
        batch_size = 1
    """,
    )
    data = pd.read_csv(tmp_path / "data.csv")
    X_file = torch.tensor(data[["a", "b", "c"]].to_numpy(), dtype=torch.float32)
    y_file = torch.tensor(data["target"].to_numpy(), dtype=torch.float32)
    model = torch.nn.Linear(3, 1)
    torch.nn.init.zeros_(model.weight)
    torch.nn.init.zeros_(model.bias)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    expected = []
    for _epoch in range(3):
        for i in range(len(X_file)):
            loss = torch.nn.functional.mse_loss(
                model(X_file[i : i + 1]).squeeze(-1), y_file[i : i + 1]
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            expected.append(loss.item())
    losses = steps_of(out, runs["run_id"].item())["loss"].to_numpy()
    np.testing.assert_allclose(losses, np.float32(expected), rtol=1e-6, atol=0)


FAILING = """
    import torch
    from sgdbench import Problem
    class Model(torch.nn.Module):
        def __init__(self, error):
            super().__init__()
            self.lin, self.error = torch.nn.Linear(1, 1), error
        def forward(self, x):
            if self.training:
                raise self.error
            return self.lin(x)
    def make(error="oom"):
        exc = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        err = exc if error == "oom" else RuntimeError("boom")
        return Problem(Model(err), lambda o, y: ((o.squeeze(-1) - y) ** 2).mean(),
                       torch.ones(4, 1), torch.ones(4))
"""


def test_out_of_memory_suggests_a_smaller_batch(tmp_path):
    name = plugin(tmp_path, FAILING)
    result, runs, _ = run_grid(
        tmp_path,
        f"""
        [problem]
        name = "{name}"
        [train]
        steps = 3
        [grid]
        lr = 0.1
        batch_size = 2
    """,
    )
    assert result.exit_code == 1
    message = runs["message"].item()
    assert message.startswith("OutOfMemoryError: CUDA out of memory")
    assert message.endswith("(out of memory: try a smaller batch_size)")


@pytest.mark.parametrize(
    ("flag", "expected_runs"),
    [("--fail-fast", 1), ("--max-consecutive-failures=2", 2), ("--max-consecutive-failures=0", 4)],
)
def test_failure_storms_stop_the_grid(tmp_path, flag, expected_runs):
    name = plugin(tmp_path, FAILING)
    result, runs, _ = run_grid(
        tmp_path,
        f"""
        [problem]
        name = "{name}"
        error = "boom"
        [train]
        steps = 3
        [grid]
        lr = [0.1, 0.2, 0.3, 0.4]
        batch_size = 2
    """,
        flag,
    )
    assert result.exit_code == 1
    assert len(runs) == expected_runs and set(runs["status"]) == {"failed"}
    if expected_runs < 4:
        assert "stopped" in result.stderr.splitlines()[-1]


def test_run_state_round_trips_through_a_checkpoint_with_its_early_stopping_count(tmp_path):
    import dataclasses

    from sgdbench.engine.state import RunState
    from sgdbench.engine.trajectory import EVAL_COLUMNS
    from sgdbench.plan import load_grid

    (tmp_path / "grid.toml").write_text(QUADRATIC.format(lrs=[0.1]))
    spec = dataclasses.replace(load_grid(tmp_path / "grid.toml").runs[0], early_stopping_patience=5)
    state = RunState(spec, {c: [] for c in EVAL_COLUMNS})
    state.record_eval({"train_loss": 2.0, "val_loss": 9.0})  # step 0: not counted by patience
    for chunk, elapsed, val in [([2.0, 1.5], 0.2, 1.0), ([1.2, 1.1], 0.1, 1.3), ([1.0], 0.1, 1.4)]:
        state.record_window(np.array(chunk, np.float32), elapsed)
        state.record_parameters(torch.tensor([float(state.step)], dtype=torch.float64))
        assert state.check_losses() is None
        state.check_evaluation(state.record_eval({"train_loss": chunk[-1], "val_loss": val}))
    assert (state.patience.best, state.patience.since) == (1.0, 2)

    path = tmp_path / "state.pt"
    torch.save(state.state_dict(), path)
    resumed = RunState(spec, {c: [] for c in EVAL_COLUMNS})
    resumed.load_state_dict(torch.load(path, weights_only=True))
    assert (resumed.step, resumed.checked, resumed.clock) == (5, 5, state.clock)
    np.testing.assert_array_equal(resumed.losses[:5], state.losses[:5])
    np.testing.assert_array_equal(resumed.times[:5], state.times[:5])
    for column, values in state.evals.items():  # NaN where a column does not apply
        np.testing.assert_array_equal(resumed.evals[column], values)
    assert [float(t) for t in resumed.tail] == [2.0, 4.0, 5.0]
    assert (resumed.patience.best, resumed.patience.since) == (1.0, 2)
    assert (resumed.warmup_steps, resumed.first_loss) == (0, 2.0)  # warm-up is 10 steps here
