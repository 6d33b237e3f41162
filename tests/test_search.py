"""Random and quasi-random search: ``[search]`` with distributions on ``[grid]`` axes."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sgdbench import search
from sgdbench.errors import GridError, KeyedError
from sgdbench.plan import load_grid
from tests.helpers import cli

GRID = """
    name = "searched"
    [problem]
    name = "linear"
    n_samples = 64
    n_features = 3
    [train]
    steps = 8
    eval_every = 4
    [grid]
    lr = {{loguniform = [1e-3, 0.3]}}
    momentum = {{uniform = [0.0, 0.9]}}
    batch_size = 16
    seed = [0, 1]
    [search]
    method = "{method}"
    trials = {trials}
    seed = {seed}
"""


def trials(method: str, n: int, seed: int, **grid: object) -> tuple[tuple[object, ...], ...]:
    return search.plan({"method": method, "trials": n, "seed": seed}, dict(grid)).trials


LR = {"loguniform": [1e-4, 1.0]}
RANDOM = {"method": "random", "trials": 4}


@pytest.mark.parametrize("method", ["random", "sobol", "halton"])
def test_same_seed_same_trials_other_seed_other_trials(method: str) -> None:
    first = trials(method, 8, 7, lr=LR, momentum={"uniform": [0, 1]})
    assert first == trials(method, 8, 7, lr=LR, momentum={"uniform": [0, 1]})
    assert first != trials(method, 8, 8, lr=LR, momentum={"uniform": [0, 1]})
    assert len(set(first)) == 8


def test_loguniform_is_uniform_in_log_space_within_bounds() -> None:
    lrs = np.array([t[0] for t in trials("random", 4000, 0, lr=LR)])
    assert lrs.min() >= 1e-4 and lrs.max() <= 1.0
    # Each decade gets a quarter of the draws (a uniform draw would put ~90% in the last one).
    per_decade = np.histogram(np.log10(lrs), bins=[-4, -3, -2, -1, 0])[0] / len(lrs)
    np.testing.assert_allclose(per_decade, 0.25, atol=0.03)


def test_sobol_points_are_stratified() -> None:
    # 16 scrambled Sobol points put exactly one point in each sixteenth of [0, 1): random draws
    # almost never do (probability 16!/16^16), so this tells the sampler apart.
    values = [t[0] for t in trials("sobol", 16, 5, x={"uniform": [0.0, 1.0]})]
    assert sorted(int(v * 16) for v in values) == list(range(16))
    randoms = [t[0] for t in trials("random", 16, 5, x={"uniform": [0.0, 1.0]})]
    assert sorted(int(v * 16) for v in randoms) != list(range(16))


def test_halton_differs_from_sobol_and_covers_choices() -> None:
    grid = {"optimizer": {"choice": ["sgd", "adam", "rmsprop"]}}
    halton = trials("halton", 9, 1, **grid)
    assert {t[0] for t in halton} == {"sgd", "adam", "rmsprop"}
    assert halton != trials("sobol", 9, 1, **grid)


def test_sampled_numbers_are_rounded_to_six_digits() -> None:
    for (lr,) in trials("random", 20, 0, lr=LR):
        assert float(f"{lr:.6g}") == lr


def test_randint_draws_every_integer_between_both_ends_equally() -> None:
    values = [t[0] for t in trials("random", 6000, 0, k={"randint": [3, 8]})]
    assert all(isinstance(v, int) and not isinstance(v, bool) for v in values)
    counts = np.bincount(values, minlength=9)[3:]
    assert counts.sum() == 6000 and len(counts) == 6  # 3..8, both ends included
    np.testing.assert_allclose(counts / 6000, 1 / 6, atol=0.02)


def test_lograndint_gives_each_octave_the_same_share() -> None:
    values = np.array([t[0] for t in trials("sobol", 4096, 1, b={"lograndint": [8, 127]})])
    assert values.min() == 8 and values.max() == 127
    # [8, 16), [16, 32), [32, 64), [64, 128): a quarter each (uniform would put half in the last)
    per_octave = np.histogram(values, bins=[8, 16, 32, 64, 128])[0] / len(values)
    np.testing.assert_allclose(per_octave, 0.25, atol=0.01)


def test_integer_distribution_on_batch_size_runs_as_integers(
    write_grid: Callable[..., Path],
) -> None:
    text = GRID.format(method="random", trials=5, seed=0).replace(
        "batch_size = 16", "batch_size = {lograndint = [4, 32]}"
    )
    grid = load_grid(write_grid(text))
    sizes = {s.batch_size for s in grid.runs}
    assert sizes <= set(range(4, 33)) and len(sizes) > 1
    assert all(isinstance(s.axes["batch_size"], int) for s in grid.runs)


@pytest.mark.parametrize(
    ("search_table", "grid", "key", "message"),
    [
        (None, {"lr": LR}, "grid.lr", "needs [search]"),
        ({"method": "random", "trials": 4}, {"lr": {"loguniform": [0, 1]}}, "grid.lr", "low > 0"),
        ({"method": "random", "trials": 4}, {"lr": {"uniform": [1, 0.1]}}, "grid.lr", "low < high"),
        ({"method": "random"}, {"lr": LR}, "search.trials", "required"),
        ({"method": "random", "trials": 0}, {"lr": LR}, "search.trials", ">= 1"),
        ({"method": "grid_search", "trials": 2}, {"lr": LR}, "search.method", "must be one of"),
        ({"method": "random", "trials": 2, "budget": 1}, {"lr": LR}, "search.budget", "unknown"),
        ({"method": "random", "trails": 2}, {"lr": LR}, "search.trails", "did you mean trials?"),
        ({"method": "random", "trials": 2}, {"lr": [0.1]}, "search.method", "distribution"),
        ({"method": "random", "trials": 2, "eta": 3}, {"lr": LR}, "search.eta", "halving"),
        (RANDOM, {"batch_size": {"randint": [8, 64.0]}}, "grid.batch_size", "two integers"),
        (RANDOM, {"batch_size": {"randint": [64, 8]}}, "grid.batch_size", "low < high"),
        (RANDOM, {"batch_size": {"lograndint": [0, 8]}}, "grid.batch_size", "low >= 1"),
        (RANDOM, {"batch_size": {"randint": [1, True]}}, "grid.batch_size", "two integers"),
    ],
)
def test_bad_search_is_a_keyed_error(
    search_table: dict[str, object] | None, grid: dict[str, object], key: str, message: str
) -> None:
    with pytest.raises(KeyedError) as info:
        search.plan(search_table, grid)
    assert info.value.key == key
    assert message in info.value.message


def test_grid_crosses_trials_with_seeds_and_records_how(
    write_grid: Callable[..., Path], tmp_path: Path
) -> None:
    grid = write_grid(GRID.format(method="random", trials=3, seed=11))
    loaded = load_grid(grid)
    assert len(loaded.runs) == 6  # 3 trials x 2 seeds
    assert {(s.search, s.trial, s.seed) for s in loaded.runs} == {
        ("random", t, seed) for t in range(3) for seed in (0, 1)
    }
    # Run ids are those of the same values typed as a plain grid: resume and compare work.
    spec = loaded.runs[0]
    typed = write_grid(
        GRID.format(method="random", trials=3, seed=11)
        .replace("{loguniform = [1e-3, 0.3]}", repr(spec.lr))
        .replace("{uniform = [0.0, 0.9]}", repr(spec.optimizer_kwargs["momentum"]))
        .split("[search]")[0],
        name="typed.toml",
    )
    assert spec.run_id in {s.run_id for s in load_grid(typed).runs}

    out = tmp_path / "out"
    assert cli("run", grid, "--out", out, "-q").exit_code == 0
    runs = pd.read_parquet(out / "runs.parquet")
    assert set(runs["search"]) == {"random"}
    assert sorted(runs["trial"].tolist()) == [0, 0, 1, 1, 2, 2]
    assert set(runs["lr"]) == {s.lr for s in loaded.runs}
    again = cli("run", grid, "--out", out)
    assert again.exit_code == 0
    assert "6 of 6 runs already complete" in again.stderr

    other = tmp_path / "other"
    assert cli("run", grid, "--out", other, "-q").exit_code == 0
    # compare matches configurations by the searched values; throughput of 8-step runs is
    # noise, so only the deterministic quantities are checked here.
    compared = cli("compare", out, other, "--format", "json")
    configs = json.loads(compared.stdout)["configurations"]
    assert sorted(c["axes"]["lr"] for c in configs) == sorted({s.lr for s in loaded.runs})
    assert all(c["final loss"]["change"] == 0.0 for c in configs)


def test_plain_grid_records_search_grid(write_grid: Callable[..., Path], tmp_path: Path) -> None:
    text = GRID.format(method="random", trials=1, seed=0).split("[search]")[0]
    text = text.replace("{loguniform = [1e-3, 0.3]}", "[0.01]").replace(
        "{uniform = [0.0, 0.9]}", "0.5"
    )
    assert {(s.search, s.trial) for s in load_grid(write_grid(text)).runs} == {("grid", None)}


def test_dry_run_shows_trials_and_total_budget(write_grid: Callable[..., Path]) -> None:
    grid = write_grid(GRID.format(method="sobol", trials=4, seed=2))
    result = cli("run", grid, "--dry-run")
    assert result.exit_code == 0
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["run_id", "seed", "lr", "momentum", "trial"]
    assert len(rows) == 8
    assert "budget 64 steps, sobol search over 4 trial(s) (seed 2)" in result.stderr


def test_bad_distribution_in_a_file_is_one_line_exit_2(
    write_grid: Callable[..., Path], tmp_path: Path
) -> None:
    grid = write_grid(
        GRID.format(method="random", trials=2, seed=0).replace("1e-3, 0.3", "-1, 0.3")
    )
    result = cli("run", grid, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"{grid}: grid.lr: loguniform needs low > 0, got [-1, 0.3]")
    assert not (tmp_path / "out").exists()


def test_loguniform_quantiles_map_to_the_ends() -> None:
    d = search.parse_distribution("lr", {"loguniform": [1e-4, 1.0]})
    assert d.at(0.0) == pytest.approx(1e-4)
    assert d.at(0.5) == pytest.approx(1e-2)
    assert math.isclose(d.at(0.999999), 1.0, rel_tol=1e-4)


def test_halving_draws_its_distributions_with_the_sampler() -> None:
    got = search.plan(
        {"method": "halving", "trials": 4, "min_steps": 5, "sampler": "sobol", "seed": 1},
        {"lr": LR},
    )
    assert got.sampler == "sobol"
    assert got.trials == trials("sobol", 4, 1, lr=LR)
    assert got.halving_for(steps=50, steps_per_epoch=10) == {"eta": 3, "rungs": [5, 15, 45]}
    by_epochs = search.plan({"method": "halving", "min_epochs": 2}, {"lr": [0.1]})
    assert by_epochs.halving_for(steps=100, steps_per_epoch=10) == {"eta": 3, "rungs": [20, 60]}


def test_run_count_limit_counts_trials(write_grid: Callable[..., Path]) -> None:
    # 100 seeds x 1_001 trials: each factor is under the 100_000-run limit, the runs are not.
    crossed = GRID.format(method="random", trials=1_001, seed=0).replace(
        "seed = [0, 1]", f"seed = {list(range(100))}"
    )
    with pytest.raises(GridError) as info:
        load_grid(write_grid(crossed))
    assert "search.trials: 100_100 combinations, more than the limit of 100_000" in str(info.value)
    # Too many trials are refused before any is drawn.
    with pytest.raises(KeyedError, match="more than the limit of 100_000"):
        search.plan({"method": "sobol", "trials": 10**9}, {"lr": LR})
