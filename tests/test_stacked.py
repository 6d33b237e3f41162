"""The stacked engine: its optimizers against torch.optim, its runs against the eager engine,
grouping, fall-back to eager, and the end-to-end command line."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from sgdbench import stacked_optim
from sgdbench.engine import eager, execute_unit, plan
from sgdbench.metrics import loss_digest
from sgdbench.plan import load_grid
from sgdbench.spec import RunSpec
from tests.helpers import cli

# ---------------------------------------------------------------------------------------------
# the optimizers against torch.optim, member by member, on tensors (no engine)

OPTIMIZER_CASES: dict[str, tuple[str, list[dict]]] = {
    "sgd": ("SGD", [{}, {}, {}]),
    "sgd-momentum-mixed": (
        "SGD",
        [
            {"momentum": 0.9, "dampening": 0.1, "weight_decay": 0.01},
            {"momentum": 0.0},
            {"momentum": 0.5},
        ],
    ),
    "sgd-nesterov": (
        "SGD",
        [
            {"momentum": 0.9, "nesterov": True},
            {"momentum": 0.5, "nesterov": True, "weight_decay": 0.1},
        ],
    ),
    "adam": ("Adam", [{}, {"betas": (0.8, 0.99), "eps": 1e-6}, {"weight_decay": 0.1}]),
    "adam-amsgrad": ("Adam", [{"amsgrad": True}, {"amsgrad": True, "betas": (0.5, 0.9)}]),
    "adam-decoupled": (
        "Adam",
        [{"decoupled_weight_decay": True, "weight_decay": 0.1}, {"decoupled_weight_decay": True}],
    ),
    "adamw": ("AdamW", [{}, {"weight_decay": 0.0}, {"weight_decay": 0.5, "betas": (0.7, 0.9)}]),
    "adamw-amsgrad": ("AdamW", [{"amsgrad": True}, {"amsgrad": True, "weight_decay": 0.2}]),
    "rmsprop": ("RMSprop", [{}, {"alpha": 0.9, "eps": 1e-6, "weight_decay": 0.01}]),
    "rmsprop-centered-momentum": (
        "RMSprop",
        [
            {"centered": True, "momentum": 0.9},
            {"centered": True, "momentum": 0.0},
            {"centered": True, "momentum": 0.5, "alpha": 0.9},
        ],
    ),
    "adagrad": (
        "Adagrad",
        [{}, {"lr_decay": 0.01, "weight_decay": 0.01, "initial_accumulator_value": 0.1}],
    ),
    "sgd-maximize": ("SGD", [{"maximize": True, "momentum": 0.9}, {"maximize": True}]),
}


def _gradient(p: torch.Tensor, A: torch.Tensor, step: int) -> torch.Tensor:
    """A deterministic, step-dependent gradient of a rotated quadratic (any rows of p)."""
    return p @ A + 0.1 * torch.sin(torch.arange(p.shape[-1]) + step)


@pytest.mark.parametrize("case", OPTIMIZER_CASES)
@pytest.mark.parametrize("schedule", [None, "decay"])
def test_stacked_optimizer_matches_torch_member_by_member(case: str, schedule: str | None) -> None:
    class_name, kwargs_list = OPTIMIZER_CASES[case]
    members, n, steps = len(kwargs_list), 7, 60
    g = torch.Generator().manual_seed(0)
    A = torch.randn(n, n, generator=g)
    A = A @ A.T / n + 0.1 * torch.eye(n)
    start = torch.randn(members, n, generator=g)
    lrs = [0.01 * (k + 1) for k in range(members)]
    factors = 0.99 ** np.arange(steps) if schedule else np.ones(steps)
    if kwargs_list[0].get("maximize"):
        A = -A

    stacked_p = start.clone()
    opt = stacked_optim.StackedOptimizer.create(class_name, stacked_p, lrs, kwargs_list)
    scalars = opt.window_scalars(steps, factors)
    for i in range(steps):
        opt.step(_gradient(stacked_p, A, i), scalars[i])

    cls = getattr(torch.optim, class_name)
    for m, kwargs in enumerate(kwargs_list):
        p = torch.nn.Parameter(start[m].clone())
        ref = cls([p], lr=lrs[m], foreach=False, **kwargs)
        for i in range(steps):
            for group in ref.param_groups:
                group["lr"] = lrs[m] * float(factors[i])
            p.grad = _gradient(p.detach(), A, i)
            ref.step()
        torch.testing.assert_close(stacked_p[m], p.detach(), rtol=2e-6, atol=1e-7)


def test_unsupported_optimizers_are_named() -> None:
    assert "LBFGS" in (stacked_optim.unsupported_reason("LBFGS", {}) or "")
    assert stacked_optim.unsupported_reason("SGD", {"momentum": 0.9, "nesterov": True}) is None
    assert stacked_optim.unsupported_reason("Adam", {"foo": 1}) is not None


# ---------------------------------------------------------------------------------------------
# stacked runs against the same runs on the eager engine


# 300 steps cross every kind of window end (step 1, the warm-up, the 256-step chunk, the
# evaluations, the last 8 steps' update snapshots) and leave bias corrections, momenta, Adagrad's
# lr_decay and the schedules far from their first-step values, so a wrong rule or a member mixed
# up shows as it did over 1000 steps (checked by breaking, one step off, stacked_optim's Adam bias
# correction and Adagrad's lr_decay: the losses differ from the second step on).
DEFAULT_TRAIN = "steps = 300\neval_every = 100"


def _grid(write_grid: Callable[..., Path], problem: str, grid: str, train: str = "") -> Path:
    """A grid file; one intra-op thread (two threads on a busy 2-core machine thrash)."""
    return write_grid(
        f"""
        name = "t"
        [problem]
        {problem}
        [train]
        {train or DEFAULT_TRAIN}
        threads = 1
        [grid]
        {grid}
        """
    )


def _run_both(path: Path) -> tuple[list[RunSpec], list, list]:
    """Every run of the grid on the stacked engine (grouped by ``plan``) and on the eager one."""
    specs = [s for unit in plan(load_grid(path, engine="stacked").runs) for s in unit]
    assert all(s.engine == "stacked" for s in specs)
    stacked_trajs = [t for unit in plan(specs) for t in execute_unit(unit)]
    eager_trajs = [eager.run(replace(s, engine="eager")) for s in specs]
    return specs, stacked_trajs, eager_trajs


def _assert_close_losses(a: np.ndarray, b: np.ndarray) -> None:
    assert len(a) == len(b)
    a, b = a.astype(np.float64), b.astype(np.float64)
    ok = np.abs(a - b) <= np.maximum(1e-5 * np.abs(b), 1e-7)
    assert ok.all(), (
        f"{(~ok).sum()} steps differ; first at {np.argmax(~ok)}: {a[~ok][:3]} vs {b[~ok][:3]}"
    )


LINEAR = 'name = "linear"\nn_samples = 64\nn_features = 3\nnoise = 0.5'
MLP = 'name = "digits"\nclasses = [3, 7]\nmodel = "mlp"\nhidden = [8]'
# Each case: 2 configurations x 2 seeds (per-member init and data order) in one group.
OPTIMIZER_GRIDS = {
    "sgd": 'optimizer = ["sgd", "momentum"]\nlr = 0.03\ndampening = 0.1\nweight_decay = 0.01',
    "nesterov": 'optimizer = ["nesterov"]\nlr = [0.01, 0.03]',
    "adam": 'optimizer = ["adam"]\nlr = [0.001, 0.01]',
    "adamw-amsgrad": 'optimizer = ["adamw"]\nlr = 0.003\namsgrad = true\nweight_decay = [0.0, 0.1]',
    "rmsprop": 'optimizer = ["rmsprop"]\nlr = 0.001\nmomentum = [0.0, 0.5]\ncentered = true',
    "adagrad": 'optimizer = ["adagrad"]\nlr = 0.05\nlr_decay = [0.0, 0.001]',
}


# Every optimizer on the linear problem; on the MLP (the vmap path), sgd and adam in the edit
# loop, the others in the whole suite only (slow: they are the same path with other rules).
PER_STEP_CASES = [
    pytest.param(
        problem,
        optimizer,
        id=f"{optimizer}-{problem}",
        marks=pytest.mark.slow if problem == "mlp" and optimizer not in ("sgd", "adam") else (),
    )
    for optimizer in OPTIMIZER_GRIDS
    for problem in ("linear", "mlp")
]


@pytest.mark.parametrize(("problem", "optimizer"), PER_STEP_CASES)
def test_stacked_matches_eager_per_step(write_grid, problem: str, optimizer: str) -> None:
    text = LINEAR if problem == "linear" else MLP
    path = _grid(write_grid, text, OPTIMIZER_GRIDS[optimizer] + "\nbatch_size = 8\nseed = [0, 1]")
    specs, s_trajs, e_trajs = _run_both(path)
    for spec, s, e in zip(specs, s_trajs, e_trajs, strict=True):
        assert (s.status, e.status) == ("ok", "ok"), (s.message, e.message)
        assert s.steps == spec.steps == 300
        _assert_close_losses(s.losses, e.losses)
        assert s.evals["step"] == e.evals["step"]
        np.testing.assert_allclose(
            s.evals["train_loss"], e.evals["train_loss"], rtol=1e-5, atol=1e-7
        )


@pytest.mark.slow  # 3 problems x 300 steps on both engines
def test_other_problems_match_eager(write_grid) -> None:
    """Logistic (matmul path, written-out BCE gradient); rosenbrock (a FunctionModel) and the
    noisy quadratic (a custom module) through torch.vmap and autograd."""
    cases = [
        ('name = "logistic"\nn_samples = 80\nn_features = 3', "matmul"),
        ('name = "rosenbrock"', "vmap"),
        ('name = "noisy_quadratic"\ndim = 5\nn_samples = 64', "vmap"),
    ]
    for problem, kind in cases:
        grid = 'optimizer = "adam"\nlr = [0.001, 0.01]\nseed = [0, 1]'
        if "rosenbrock" not in problem:
            grid += "\nbatch_size = 8"
        path = _grid(write_grid, problem, grid, train="steps = 300")
        _specs, s_trajs, e_trajs = _run_both(path)
        assert s_trajs[0].info["stacked_forward"] == kind
        for s, e in zip(s_trajs, e_trajs, strict=True):
            assert s.status == e.status == "ok"
            _assert_close_losses(s.losses, e.losses)
            np.testing.assert_allclose(s.evals["train_loss"], e.evals["train_loss"], rtol=1e-5)


def test_schedule_and_stop_at_target_match_eager(write_grid) -> None:
    path = _grid(
        write_grid,
        LINEAR,
        "lr = [0.005, 0.05]\nbatch_size = 8\nseed = [0, 1]",
        train='steps = 500\neval_every = 20\nschedule = "cosine"\ntarget_loss = 0.3\n'
        "stop_at_target = true",
    )
    _specs, s_trajs, e_trajs = _run_both(path)
    assert len({s.steps for s in s_trajs}) > 1  # members stopped at different steps
    for s, e in zip(s_trajs, e_trajs, strict=True):
        assert (s.status, s.message, s.steps) == (e.status, e.message, e.steps)
        _assert_close_losses(s.losses, e.losses)


def test_stacked_runs_are_reproducible_bit_for_bit(write_grid) -> None:
    path = _grid(
        write_grid,
        MLP,
        'optimizer = "adam"\nlr = [0.001, 0.01]\nbatch_size = 8\nseed = [0, 1]',
        train="steps = 200",
    )
    unit = plan(load_grid(path, engine="stacked").runs)[0]
    first = [loss_digest(t.losses) for t in execute_unit(unit)]
    again = [loss_digest(t.losses) for t in execute_unit(unit)]
    assert first == again and len(set(first)) == 4


def test_diverged_and_stalled_members_leave_without_disturbing_the_others(write_grid) -> None:
    path = _grid(
        write_grid,
        LINEAR,
        "lr = [1e-30, 0.02, 5.0]\nbatch_size = 8\nseed = [0, 1]",
        train="steps = 600",
    )
    specs, s_trajs, e_trajs = _run_both(path)
    by_lr = {(sp.lr, sp.seed): (s, e) for sp, s, e in zip(specs, s_trajs, e_trajs, strict=True)}
    for seed in (0, 1):
        stalled, _ = by_lr[(1e-30, seed)]
        assert stalled.status == "stalled" and stalled.steps == 1
        diverged, eager_diverged = by_lr[(5.0, seed)]
        assert diverged.status == eager_diverged.status == "diverged"
        assert diverged.steps == eager_diverged.steps < 600
        assert diverged.message == eager_diverged.message
        ok, eager_ok = by_lr[(0.02, seed)]
        assert ok.status == "ok" and ok.steps == 600
        _assert_close_losses(ok.losses, eager_ok.losses)
        # each member is charged an equal share of the group's time while in the stack
        assert ok.train_time_s > diverged.train_time_s > 0
    assert sum(t.train_time_s for t in s_trajs) == pytest.approx(
        s_trajs[0].info["group_train_time_s"]
    )


# ---------------------------------------------------------------------------------------------
# grouping and the choice of engine


def test_group_id_ignores_stackable_axes_only(write_grid) -> None:
    path = _grid(
        write_grid,
        LINEAR,
        'optimizer = ["sgd", "momentum", "nesterov"]\nlr = [0.01, 0.1]\n'
        "batch_size = [4, 8]\nseed = [0, 1]",
    )
    specs = load_grid(path, engine="stacked").runs
    groups = {(s.batch_size, s.optimizer == "nesterov"): set() for s in specs}
    for s in specs:
        groups[(s.batch_size, s.optimizer == "nesterov")].add(s.group_id)
    assert all(len(ids) == 1 for ids in groups.values())
    assert len({next(iter(ids)) for ids in groups.values()}) == 4
    units = plan(specs)
    assert sorted(len(u) for u in units) == [4, 4, 8, 8]
    assert sorted(len(u) for u in plan(specs, max_group_size=3)) == [1, 1, 2, 2, *[3] * 6]
    assert [s for u in plan([replace(s, engine="eager") for s in specs]) for s in u] == [
        replace(s, engine="eager") for s in specs
    ]


def test_auto_and_fallback_to_eager_say_why(write_grid, tmp_path: Path) -> None:
    (tmp_path / "dropmodel.py").write_text(
        textwrap.dedent(
            """
            import torch
            from sgdbench import Problem
            from sgdbench.problems.builtin import mse_loss

            def make():
                X = torch.linspace(0, 1, 32).unsqueeze(1)
                model = torch.nn.Sequential(torch.nn.Linear(1, 1), torch.nn.Dropout(0.5))
                return Problem(model, mse_loss, X, 2 * X.squeeze(1))
            """
        )
    )
    plug = _grid(write_grid, 'name = "dropmodel:make"', "lr = [0.1, 0.2]\nbatch_size = 4")
    grid = load_grid(plug, engine="stacked")
    assert all(s.engine == "eager" for s in grid.runs)
    assert "vmap" in grid.notes[0] and "2 run(s)" in grid.notes[0]

    lbfgs = _grid(
        write_grid,
        LINEAR,
        'optimizer = ["lbfgs", "sgd"]\nlr = [0.1, 0.2]\nbatch_size = 8',
    )
    grid = load_grid(lbfgs, engine="auto")
    engines = {(s.optimizer, s.engine) for s in grid.runs}
    assert engines == {("lbfgs", "eager"), ("sgd", "stacked")}
    assert any("LBFGS" in n for n in grid.notes)
    single = _grid(write_grid, LINEAR, "lr = 0.1\nbatch_size = 8")
    assert load_grid(single, engine="auto").runs[0].engine == "eager"
    assert load_grid(single, engine="stacked").runs[0].engine == "stacked"


def test_cli_stacked_writes_ordinary_rows_that_report_reads(write_grid, tmp_path: Path) -> None:
    path = _grid(
        write_grid,
        LINEAR,
        'optimizer = ["sgd", "adam"]\nlr = [0.01, 0.1, 100.0]\nbatch_size = 8\nseed = [0, 1]',
        train="epochs = 3\ntarget_loss = 0.5",
    )
    out = tmp_path / "res"
    result = cli("run", path, "--engine", "stacked", "--out", out, "-q")
    assert result.exit_code == 0, result.stderr
    runs = pd.read_parquet(out / "runs.parquet")
    assert len(runs) == 12 and set(runs.engine) == {"stacked"}
    assert runs.group_id.notna().all() and runs.group_id.nunique() == 2
    assert set(runs.group_size) == {6}
    assert "diverged" in set(runs.status) and "ok" in set(runs.status)
    steps = pd.read_parquet(out / "steps")
    assert set(steps.run_id) == set(runs.run_id)
    assert steps.groupby("run_id").size().to_dict() == dict(
        zip(runs.run_id, runs.steps, strict=True)
    )
    report = cli("report", out, "--format", "csv")
    assert report.exit_code == 0 and "stacked" not in report.stderr
    assert len(report.stdout.strip().splitlines()) > 1
    rerun = cli("run", path, "--engine", "stacked", "--out", out, "-q")
    assert rerun.exit_code == 0 and "12 of 12 runs already complete" in rerun.stderr


def test_checkpointing_and_early_stopping_runs_fall_back_to_eager(write_grid):
    from sgdbench.plan import load_grid

    base = """
[problem]
name = "digits"
classes = [3, 7]
[train]
steps = 20
{extra}
[grid]
lr = [0.01, 0.1]
batch_size = 8
"""
    for extra, why in [
        ("checkpoint_every = 10", "does not checkpoint"),
        ("early_stopping = {patience = 2}", "does not stop members early"),
    ]:
        grid = load_grid(write_grid(base.format(extra=extra)), engine="stacked")
        assert {r.engine for r in grid.runs} == {"eager"}
        assert any(why in note for note in grid.notes)


def test_dry_run_shows_the_engine_each_run_gets(tmp_path, write_grid):
    from tests.helpers import cli

    write_grid("""
[problem]
name = "linear"
n_samples = 16
[train]
steps = 5
[grid]
optimizer = ["sgd", "LBFGS"]
lr = [0.1, 0.2]
batch_size = 4
""")
    result = cli("run", "grid.toml", "--dry-run", "--engine", "auto", cwd=tmp_path)
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["run_id", "optimizer", "lr", "engine"]
    engines = {tuple(line.split()[1:]) for line in lines[1:]}
    assert ("sgd", "0.1", "stacked") in engines and ("LBFGS", "0.1", "eager") in engines


def test_the_grid_can_choose_its_engine_and_the_command_line_overrides_it(write_grid):
    from sgdbench.plan import load_grid

    path = write_grid("""
[problem]
name = "linear"
n_samples = 16
[train]
steps = 5
engine = "stacked"
[grid]
lr = [0.1, 0.2]
batch_size = 4
""")
    assert {r.engine for r in load_grid(path).runs} == {"stacked"}
    assert {r.engine for r in load_grid(path, engine="eager").runs} == {"eager"}


def test_stacked_members_get_the_same_verdicts_as_eager_runs(tmp_path):
    import pandas as pd

    from tests.helpers import REPO, cli

    grid = REPO / "experiments" / "learning_rate_too_low_high.toml"
    verdicts = {}
    for engine in ("eager", "stacked"):
        result = cli("run", grid, "--engine", engine, "--out", tmp_path / engine, "-q")
        assert result.exit_code == 0, result
        runs = pd.read_parquet(tmp_path / engine / "runs.parquet")
        assert set(runs["engine"]) == {engine}
        verdicts[engine] = runs.set_index("lr")["verdict"].to_dict()
    assert verdicts["stacked"] == verdicts["eager"]
    assert verdicts["stacked"][1.0] == "oscillating"


@pytest.mark.parametrize(
    ("budget", "explicit", "eager_every", "every"),
    [
        ("steps = 500", "", 5, 50),  # eager: every 1% of the run; stacked: every 10%
        ("steps = 35", "", 1, 4),  # rounded up: at most ~10 evaluations
        ("epochs = 25", "", 13, 39),  # 13 steps an epoch: every epoch / every 3 epochs
        ("steps = 500", "eval_every = 7", 7, 7),  # the grid's own eval_every always wins
        ("steps = 500", "eval_every = 0", 0, 0),
    ],
)
def test_stacked_runs_evaluate_about_ten_times_unless_the_grid_says(
    write_grid: Callable[..., Path], budget: str, explicit: str, eager_every: int, every: int
) -> None:
    grid = write_grid(f"""
        [problem]
        name = "linear"
        n_samples = 400
        n_features = 3
        [train]
        {budget}
        {explicit}
        [grid]
        lr = [0.01, 0.1]
        batch_size = 32
    """)
    assert {s.eval_every for s in load_grid(grid, engine="eager").runs} == {eager_every}
    stacked = load_grid(grid, engine="stacked").runs
    assert {s.engine for s in stacked} == {"stacked"}
    assert {s.eval_every for s in stacked} == {every}
    trajs = execute_unit(plan(stacked)[0])
    steps = stacked[0].steps
    expected = 1 + (steps // every if every else 0)  # step 0, then every `every` steps
    if not every or steps % every:
        expected += 1  # and the end of the run
    assert [len(t.evals["step"]) for t in trajs] == [expected, expected]
