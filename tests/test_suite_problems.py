"""The DeepOBS problems, the digits CNN and the grammar transformer: definitions, seeds,
drop_last, learning at a sensible lr, and the stacked engine."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from sgdbench.engine import eager, execute_unit, plan
from sgdbench.engine.stacking import problem_reason
from sgdbench.metrics import samples_after
from sgdbench.plan import load_grid
from sgdbench.problems import deepobs
from sgdbench.problems.factory import build_problem
from sgdbench.problems.registry import PROBLEMS, resolve_params
from sgdbench.problems.sequence import markov_grammar
from tests.helpers import cli

NEW_PROBLEMS = ("noisy_quadratic", "two_d_rosenbrock", "digits_cnn", "grammar_transformer")


def _build(name: str, init_seed: int = 0, **params):
    return build_problem(name, resolve_params(name, params, base_dir=None), init_seed)


def _grid(write_grid, problem: str, grid: str, train: str):
    return write_grid(
        f"""
        name = "t"
        [problem]
        {problem}
        [train]
        {train}
        threads = 1
        [grid]
        {grid}
        """
    )


# ---------------------------------------------------------------------------------------------
# noisy_quadratic = DeepOBS quadratic_deep


def test_noisy_quadratic_has_deepobs_data_spectrum_and_test_set():
    problem = deepobs.noisy_quadratic()
    # DeepOBS's training and test samples: N(0, 0.6²) from NumPy RandomState(42) and (43).
    expected = np.random.RandomState(42).normal(0.0, 0.6, (1000, 100)).astype(np.float32)
    np.testing.assert_array_equal(problem.X.numpy(), expected)
    expected_test = np.random.RandomState(43).normal(0.0, 0.6, (1000, 100)).astype(np.float32)
    np.testing.assert_array_equal(problem.X_val.numpy(), expected_test)
    assert problem.drop_last
    eig = torch.linalg.eigvalsh(problem.model.Q.double())
    assert (eig < 1.0001).sum() == 90 and (eig >= -1e-4).all()
    assert ((eig > 29.999) & (eig < 60.001)).sum() == 10
    assert torch.equal(deepobs.noisy_quadratic().model.Q, problem.model.Q)  # fixed problem seed
    assert not torch.equal(deepobs.noisy_quadratic(seed=1).model.Q, problem.model.Q)
    # The loss is 0.5 (θ-x)ᵀQ(θ-x) per sample, θ starting at ones.
    x = problem.X[:2]
    d = torch.ones(100) - x
    expected_loss = 0.5 * torch.einsum("bi,ij,bj->b", d, problem.model.Q, d)
    torch.testing.assert_close(problem.model(x), expected_loss)
    # The loss floor (θ = the samples' mean) is DeepOBS's ~86, not the 244.8 of noise 1.0.
    with torch.no_grad():
        problem.model.theta.copy_(problem.X.mean(0))
        assert 84 < float(problem.model(problem.X).mean()) < 89


def test_rotation_is_haar_distributed():
    """Plain QR of a Gaussian matrix (no sign fix) is not uniform: its diagonal has a sign bias
    (LAPACK's Householder QR makes R's diagonal negative, so Q's diagonal leans negative)."""
    draws = np.stack([deepobs.haar_rotation(3, np.random.RandomState(i)) for i in range(3000)])
    np.testing.assert_allclose(draws[0] @ draws[0].T, np.eye(3), atol=1e-12)
    # Haar: every entry has mean 0 and variance 1/3 (the columns are uniform on the sphere).
    assert np.abs(draws.mean(0)).max() < 0.05
    np.testing.assert_allclose(draws.var(0), 1 / 3, atol=0.03)


def test_drop_last_skips_the_short_batch_in_steps_batches_and_samples(write_grid):
    path = _grid(
        write_grid,
        'name = "noisy_quadratic"',
        "optimizer = 'sgd'\nlr = 0.01\nbatch_size = 128\nseed = 0",
        "epochs = 3",
    )
    (spec,) = load_grid(path).runs
    assert (spec.steps_per_epoch, spec.steps) == (7, 21)  # 1000 // 128, not ceil: 8
    batches = eager.Batches(deepobs.noisy_quadratic(), spec, torch.device("cpu"))
    sizes = {len(batches(step)[0]) for step in range(spec.steps)}
    assert sizes == {128}
    seen = [set(map(tuple, batches(7 + i)[0][:, :2].tolist())) for i in range(7)]
    assert len(set().union(*seen)) == 896  # one epoch: 7 distinct full batches, 104 left out
    assert samples_after(spec, 7) == 896 and samples_after(spec, 8) == 896 + 128

    kept = _grid(
        write_grid,
        'name = "noisy_quadratic"\ndrop_last = false',
        "optimizer = 'sgd'\nlr = 0.01\nbatch_size = 128\nseed = 0",
        "epochs = 3",
    )
    (spec,) = load_grid(kept).runs
    assert (spec.steps_per_epoch, spec.steps) == (8, 24)
    assert samples_after(spec, 8) == 1000


# ---------------------------------------------------------------------------------------------
# two_d_rosenbrock


def test_two_d_rosenbrock_is_rosenbrock_plus_linear_noise():
    problem = deepobs.two_d_rosenbrock()
    assert problem.model.p.tolist() == [-0.5, 1.5]
    # DeepOBS's noise: all x, then all y, from RandomState(42).
    draws = np.random.RandomState(42).normal(0.0, 1.0, 20000).astype(np.float32)
    np.testing.assert_array_equal(problem.X[:, 0].numpy(), draws[:10000])
    np.testing.assert_array_equal(problem.X[:, 1].numpy(), draws[10000:])
    clean = (1 + 0.5) ** 2 + 100 * (1.5 - 0.25) ** 2
    with torch.no_grad():
        # The test set (validation slot) is noise-free: the plain Rosenbrock value.
        assert float(problem.model(problem.X_val).mean()) == pytest.approx(clean)
        noisy = float(problem.model(problem.X).mean())
    mean_x, mean_y = problem.X.double().mean(0).tolist()
    assert noisy == pytest.approx(clean - 0.5 * mean_x + 1.5 * mean_y, rel=1e-5)


# ---------------------------------------------------------------------------------------------
# digits_cnn and grammar_transformer


def test_digits_cnn_shapes_and_seeded_initialisation():
    problem = _build("digits_cnn")
    assert problem.X.shape == (1438, 64) and problem.X_val.shape == (359, 64)
    assert problem.model(problem.X[:5]).shape == (5, 10)
    assert sum(p.numel() for p in problem.model.parameters()) == 1898
    same, other = _build("digits_cnn"), _build("digits_cnn", init_seed=1)
    flat = torch.nn.utils.parameters_to_vector
    assert torch.equal(flat(same.model.parameters()), flat(problem.model.parameters()))
    assert not torch.equal(flat(other.model.parameters()), flat(problem.model.parameters()))
    binary = _build("digits_cnn", classes=[3, 7])
    assert binary.model(binary.X[:2]).shape == (2, 2)


def test_markov_grammar_is_seeded_and_has_an_entropy_floor():
    X, y, floor = markov_grammar(500, 8, 8, 0.1, 0)
    X2, y2, floor2 = markov_grammar(500, 8, 8, 0.1, 0)
    assert torch.equal(X, X2) and torch.equal(y, y2) and floor == floor2
    assert X.shape == (500, 8) and X.dtype == torch.int64 and y.shape == (500,)
    assert int(X.min()) >= 0 and int(X.max()) <= 7
    assert not torch.equal(markov_grammar(500, 8, 8, 0.1, 1)[0], X)
    assert 0 < floor < 0.6 * math.log(8)  # peaked rules: far below chance


def test_grammar_transformer_shapes_and_heads_must_divide_width(write_grid):
    problem = _build("grammar_transformer")
    assert problem.X.shape == (1600, 8) and problem.X_val.shape == (400, 8)
    assert problem.model(problem.X[:3]).shape == (3, 8)
    # Only the last position is read out, and it attends to every token: changing the first
    # token changes the prediction.
    changed = problem.X[:3].clone()
    changed[:, 0] = (changed[:, 0] + 1) % 8
    assert not torch.allclose(problem.model(changed), problem.model(problem.X[:3]))
    path = _grid(
        write_grid,
        'name = "grammar_transformer"\nwidth = 16\nheads = 3',
        "optimizer = 'sgd'\nlr = 0.01\nbatch_size = 32",
        "steps = 1",
    )
    result = cli("run", path, "--dry-run")
    assert result.exit_code == 2
    assert result.stderr.strip().endswith("problem.heads: must divide width (16), got 3")


@pytest.mark.parametrize(
    ("problem", "grid", "steps", "start_above", "end_below"),
    [
        ('name = "digits_cnn"', "optimizer = 'adam'\nlr = 0.01\nbatch_size = 32", 150, 2.0, 0.5),
        pytest.param(
            'name = "grammar_transformer"',
            "optimizer = 'adam'\nlr = 0.003\nbatch_size = 64",
            200,
            1.9,
            1.5,
            marks=pytest.mark.slow,  # 200 steps of a transformer
        ),
        (
            'name = "two_d_rosenbrock"',
            "optimizer = 'adam'\nlr = 0.01\nbatch_size = 128",
            300,
            150,
            5,
        ),
    ],
)
def test_learns_at_a_sensible_lr(write_grid, problem, grid, steps, start_above, end_below):
    path = _grid(write_grid, problem, grid + "\nseed = 0", f"steps = {steps}\neval_every = 0")
    (spec,) = load_grid(path).runs
    traj = eager.run(spec)
    assert traj.status == "ok", traj.message
    first, last = traj.evals["train_loss"][0], traj.evals["train_loss"][-1]
    assert first > start_above and last < end_below, (first, last)


def test_every_new_problem_is_registered_and_builds_from_its_defaults():
    for name in NEW_PROBLEMS:
        info = PROBLEMS[name]
        kwargs = resolve_params(name, {}, base_dir=None)
        assert set(kwargs) == {p.name for p in info.params}
        assert build_problem(name, kwargs, 0).n_samples > 1
    listed = cli("list", "problems").stdout
    assert all(f"\n{name}: " in "\n" + listed for name in NEW_PROBLEMS)


# ---------------------------------------------------------------------------------------------
# the stacked engine takes all four (vmap path) and matches the eager engine


@pytest.mark.parametrize(
    "problem",
    [
        pytest.param('name = "digits_cnn"\nchannels = 4', marks=pytest.mark.slow),  # a CNN
        pytest.param('name = "grammar_transformer"\nn_samples = 200', marks=pytest.mark.slow),
        'name = "two_d_rosenbrock"\nn_samples = 256',
        'name = "noisy_quadratic"\ndim = 10\nn_samples = 100',
    ],
)
def test_stacked_engine_matches_eager(write_grid, problem):
    grid = "optimizer = 'adam'\nlr = [0.001, 0.01]\nbatch_size = 24\nseed = [0, 1]"
    path = _grid(write_grid, problem, grid, "steps = 40\neval_every = 20")
    specs = [s for unit in plan(load_grid(path, engine="stacked").runs) for s in unit]
    assert all(s.engine == "stacked" for s in specs)
    assert problem_reason(build_problem(specs[0].problem, specs[0].problem_kwargs, 0)) is None
    stacked = [t for unit in plan(specs) for t in execute_unit(unit)]
    assert stacked[0].info["stacked_forward"] == "vmap"
    for spec, s in zip(specs, stacked, strict=True):
        e = eager.run(replace(spec, engine="eager"))
        assert s.status == e.status == "ok"
        np.testing.assert_allclose(s.losses, e.losses, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(s.evals["val_loss"], e.evals["val_loss"], rtol=1e-4)
