"""Throughput with its interval (``sgdbench.timing``), stored per run and per configuration, and
repeat for timing (``[train] repeat`` / ``run --repeat``)."""

from __future__ import annotations

import io
import json
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sgdbench import timing
from tests.helpers import cli

LINEAR = """
name = "timing"
[problem]
name = "linear"
n_samples = 64
n_features = 3
[train]
epochs = 8
eval_every = 8
{extra}
[grid]
lr = 0.05
batch_size = 4
seed = [0, 1]
"""


def run(tmp_path: Path, *args: str, extra: str = "", text: str = LINEAR) -> tuple[int, Path]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    grid = tmp_path / "grid.toml"
    grid.write_text(textwrap.dedent(text.format(extra=extra)))
    out = tmp_path / "out"
    r = cli("run", grid, "--out", out, "-q", *args)
    return r.exit_code, out


def runs_of(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "runs.parquet").sort_values("seed").reset_index(drop=True)


# ---- the statistic --------------------------------------------------------------------------


def test_weighted_median_counts_work_not_windows() -> None:
    # Two short windows at 10/s and one long window at 100/s: most of the work ran at 100/s.
    units = [timing.Windows.of([1, 1, 50], [0.1, 0.1, 0.5])]
    assert timing.rate(units).median == pytest.approx(100.0)
    # Equal windows: the plain median of their rates.
    units = [timing.Windows.of([10, 10, 10], [1.0, 0.5, 0.25])]
    assert timing.rate(units).median == pytest.approx(20.0)


def test_unit_rates_is_each_units_own_weighted_median() -> None:
    units = [
        timing.Windows.of([1, 1, 50], [0.1, 0.1, 0.5]),  # most of its work at 100/s
        timing.Windows.of([], []),  # no windows: left out
        timing.Windows.of([10, 10, 10], [1.0, 0.5, 0.25]),
    ]
    assert timing.unit_rates(units) == pytest.approx([100.0, 20.0])


def test_interval_brackets_the_median_and_is_a_function_of_the_timings() -> None:
    rng = np.random.default_rng(1)
    seconds = 0.01 * rng.lognormal(0, 0.3, size=40)
    units = [timing.Windows.of(np.full(40, 10), seconds)]
    a, b = timing.rate(units), timing.rate(units)
    assert a == b  # seeded: same timings, same interval
    assert a.lo < a.median < a.hi
    # Noisier windows give a wider interval.
    noisy = [timing.Windows.of(np.full(40, 10), 0.01 * rng.lognormal(0, 1.0, size=40))]
    r = timing.rate(noisy)
    assert (r.hi - r.lo) / r.median > (a.hi - a.lo) / a.median


def test_between_run_noise_widens_the_interval() -> None:
    # Two repeats, each steady inside, but one ran at half the speed of the other: windows alone
    # would call the pooled median precise; resampling the repeats too does not.
    fast = timing.Windows.of(np.full(30, 10), np.full(30, 0.01))
    slow = timing.Windows.of(np.full(30, 10), np.full(30, 0.02))
    r = timing.rate([fast, slow])
    assert r.lo <= 500 * 1.01 and r.hi >= 1000 * 0.99


def test_ratio_holds_one_for_the_same_timings_and_not_for_a_slowdown() -> None:
    rng = np.random.default_rng(2)
    base = [timing.Windows.of(np.full(20, 10), 0.01 * rng.lognormal(0, 0.3, 20)) for _ in range(2)]
    same = timing.ratio(base, base)
    assert same.lo < 1 < same.hi
    slower = [timing.Windows.of(u.work, u.seconds * 1.5) for u in base]
    r = timing.ratio(base, slower)
    assert r.median == pytest.approx(1 / 1.5)
    assert r.hi < 1


# ---- stored per run and per configuration ---------------------------------------------------


def test_interval_columns_exist_and_bracket_the_median(tmp_path: Path) -> None:
    code, out = run(tmp_path)
    assert code == 0
    runs = runs_of(out)
    for name in ("steps", "samples"):
        median, lo, hi = (runs[f"{name}_per_s{s}"] for s in ("", "_lo", "_hi"))
        assert (lo <= median).all() and (median <= hi).all() and (lo > 0).all()
    np.testing.assert_allclose(runs["samples_per_s"], 4 * runs["steps_per_s"])
    first = runs.iloc[0]
    # The windows after the warm-up, with their samples (batch 4, 16 steps an epoch).
    assert sum(first["window_steps"]) == first["steps"] - first["warmup_steps"]
    assert list(first["window_samples"]) == [4 * s for s in first["window_steps"]]
    assert set(first["window_repeat"]) == {0} and first["repeats"] == 1
    rate = timing.rate([timing.Windows.of(first["window_steps"], first["window_s"])])
    assert first["steps_per_s"] == pytest.approx(rate.median)
    # Per configuration over seeds, in the report's aggregation.
    r = cli("report", out, "--format", "csv")
    table = pd.read_csv(io.StringIO(r.stdout))
    row = table.iloc[0]
    assert row["steps_per_s_lo"] <= row["steps_per_s_median"] <= row["steps_per_s_hi"]
    pooled = timing.rate(
        [
            timing.Windows.of(w, t)
            for w, t in zip(runs["window_steps"], runs["window_s"], strict=True)
        ]
    )
    assert row["steps_per_s_median"] == pytest.approx(pooled.median)
    assert row["steps_per_s_lo"] == pytest.approx(pooled.lo)


# ---- repeat for timing ----------------------------------------------------------------------


def test_repeat_keeps_every_timing_and_the_same_losses(tmp_path: Path) -> None:
    code, once = run(tmp_path / "once")
    assert code == 0
    code, thrice = run(tmp_path / "thrice", extra="repeat = 3")
    assert code == 0
    a, b = runs_of(once), runs_of(thrice)
    assert list(a["run_id"]) == list(b["run_id"])  # a timing choice, not another run
    assert list(a["loss_digest"]) == list(b["loss_digest"])
    assert (b["repeats"] == 3).all() and (b["status"] == "ok").all()
    for n_windows, repeats in zip(a["window_steps"].map(len), b["window_repeat"], strict=True):
        assert np.bincount(repeats).tolist() == [n_windows] * 3


def test_run_repeat_option_overrides_the_grid_and_works_stacked(tmp_path: Path) -> None:
    code, out = run(tmp_path, "--repeat", "2", "--engine", "stacked", extra="repeat = 5")
    assert code == 0
    runs = runs_of(out)
    assert (runs["engine"] == "stacked").all() and (runs["repeats"] == 2).all()
    assert all(set(r) == {0, 1} for r in runs["window_repeat"])


NONDETERMINISTIC = """
import torch
from sgdbench import Problem

BUILT = [0]

def make():
    # Each build shifts the data a little: a second training of the same seed differs.
    BUILT[0] += 1
    torch.manual_seed(0)
    X = torch.randn(32, 2)
    y = X.sum(1) + 0.001 * BUILT[0]
    return Problem(torch.nn.Linear(2, 1), lambda out, t: ((out.squeeze(-1) - t) ** 2).mean(), X, y)
"""


def test_repeat_fails_a_run_whose_losses_differ(tmp_path: Path) -> None:
    module = f"plug_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(NONDETERMINISTIC)
    grid = f"""
    name = "nondeterministic"
    [problem]
    name = "{module}:make"
    [train]
    steps = 20
    repeat = 2
    [grid]
    lr = 0.01
    batch_size = 8
    """
    code, out = run(tmp_path, text=grid)
    assert code == 1
    row = runs_of(out).iloc[0]
    assert row["status"] == "failed"
    assert "repeat 2 of 2: losses differ from the first repeat's from step 0" in row["message"]
    assert "not deterministic" in row["message"]


def test_repeat_must_be_a_positive_integer(tmp_path: Path) -> None:
    grid = tmp_path / "grid.toml"
    grid.write_text(textwrap.dedent(LINEAR.format(extra="repeat = 0")))
    r = cli("run", grid, "--out", tmp_path / "out")
    assert r.exit_code == 2
    assert r.stderr.strip() == f"{grid}: train.repeat: must be >= 1, got 0"
    assert not (tmp_path / "out").exists()
    assert cli("run", grid, "--repeat", "0").exit_code == 2


def test_repeat_is_shown_in_json_report_rows_of_runs(tmp_path: Path) -> None:
    code, out = run(tmp_path, "--repeat", "2")
    assert code == 0
    spec = json.loads(runs_of(out)["spec"].iloc[0])
    assert spec["repeat"] == 2
