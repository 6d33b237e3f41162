"""``sgdbench compare``: matching by axes, the changes, and the exit codes CI gates on."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sgdbench import compare, timing
from sgdbench.compare import stats
from sgdbench.errors import UsageError
from sgdbench.report import fmt_count
from tests.helpers import cli
from tests.report_results import results


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return results("seeds", tmp_path_factory)


@pytest.fixture(scope="module")
def quad(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return results("quad", tmp_path_factory)


def edited(src: Path, dst: Path, edit: Callable[[pd.DataFrame], pd.DataFrame]) -> Path:
    """A copy of a results folder whose runs.parquet went through ``edit``."""
    shutil.copytree(src, dst)
    runs = pd.read_parquet(dst / "runs.parquet")
    edit(runs).to_parquet(dst / "runs.parquet", index=False)
    return dst


def compare_json(*args: str | Path) -> tuple[int, dict]:
    r = cli("compare", *args, "--format", "json")
    return r.exit_code, (json.loads(r.stdout) if r.stdout else {})


def by_lr(doc: dict) -> dict[float, dict]:
    return {c["key"]["lr"]: c for c in doc["configurations"]}


def test_same_results_no_change_exit_0(seeds: Path) -> None:
    code, doc = compare_json(seeds, seeds)
    assert code == 0 and doc["regression"] is False
    assert doc["schema_version"] == compare.COMPARE_SCHEMA_VERSION
    rows = by_lr(doc)
    assert set(rows) == {0.05, 0.5}
    assert rows[0.05]["key"]["problem"] == "linear"
    assert rows[0.05]["steps/s"]["change"] == 0.0
    assert rows[0.05]["steps/s"]["note"] == "no significant change"
    assert rows[0.05]["trajectory"] == {"seeds": 4, "differ": 0, "identical": True}
    assert doc["overall"]["steps/s"]["change"] == pytest.approx(0.0)


def steady_timings(runs: pd.DataFrame, factor: float = 1.0, lr: float | None = None) -> None:
    """Replace the stored window timings (wall and CPU) with seeded synthetic ones (so that the
    outcome does not hang on this machine's load): each window at ~1000 steps/s with 20%
    lognormal noise, times ``factor`` for the runs at ``lr`` (all runs when None)."""
    rng = np.random.default_rng(7)
    seconds = []
    for steps, lr_ in zip(runs["window_steps"], runs["lr"], strict=True):
        t = np.asarray(steps) / 1000 * rng.lognormal(0, 0.2, len(steps))
        seconds.append(t * (factor if lr is None or lr_ == lr else 1.0))
    runs["window_s"] = seconds
    runs["window_cpu_s"] = [0.9 * t for t in seconds]  # CPU time: a little under wall time
    # the machine-speed probe took the same time throughout: a machine that did not drift
    runs["window_probe_s"] = [np.full(len(t), 5e-4) for t in seconds]


def drift(runs: pd.DataFrame, slower: float, probes: bool = True) -> None:
    """The machine ran every piece of CPU work ``slower`` times slower: the windows and, when
    ``probes``, the machine-speed probe (else the folder has no probe times)."""
    runs["window_cpu_s"] = [t * slower for t in runs["window_cpu_s"]]
    if probes:
        runs["window_probe_s"] = [p * slower for p in runs["window_probe_s"]]
    else:
        runs["window_probe_s"] = [np.full(len(p), np.nan) for p in runs["window_probe_s"]]


def test_same_timings_are_no_significant_change(seeds: Path, tmp_path: Path) -> None:
    base = edited(seeds, tmp_path / "base", lambda r: (steady_timings(r), r)[1])
    again = edited(base, tmp_path / "again", lambda r: r)
    r = cli("compare", base, again, "--format", "markdown")
    assert r.exit_code == 0, r
    assert "no significant change" in r.stdout
    row = by_lr(json.loads(cli("compare", base, again, "--format", "json").stdout))[0.05]
    lo, hi = row["steps/s"]["interval"]
    assert lo < 0 < hi and not row["steps/s"]["significant"]


def test_a_slower_step_is_a_regression_beyond_the_noise(seeds: Path, tmp_path: Path) -> None:
    base = edited(seeds, tmp_path / "base", lambda r: (steady_timings(r), r)[1])
    slow = edited(seeds, tmp_path / "slow", lambda r: (steady_timings(r, 1.5, lr=0.05), r)[1])
    code, doc = compare_json(base, slow)
    assert code == 1 and doc["regression"] is True
    rows = by_lr(doc)
    steps_per_s = rows[0.05]["steps/s"]
    assert steps_per_s["clock"] == "probe"
    assert steps_per_s["change"] == pytest.approx(1 / 1.5 - 1, abs=0.02)
    assert steps_per_s["significant"] and steps_per_s["interval"][1] < 0
    assert steps_per_s["regression"] and rows[0.05]["regression"]
    assert not rows[0.5]["regression"]
    # Beyond the noise but within the threshold: not a regression.
    assert cli("compare", base, slow, "--threshold", "40%").exit_code == 0
    assert cli("compare", base, slow, "--fail-on", "steps_per_s:40").exit_code == 1  # absolute
    assert cli("compare", base, slow, "--fail-on", "steps_per_s:40%").exit_code == 0
    table = cli("compare", base, slow).stdout
    assert "-33% [" in table and "REGRESSION" in table
    assert cli("compare", slow, base).exit_code == 0  # faster is not a regression


def test_wall_clock_windows_are_tested_when_cpu_time_is_missing(
    seeds: Path, tmp_path: Path
) -> None:
    def on_gpu(factor: float):  # CUDA runs store no CPU time (NaN)
        def edit(runs: pd.DataFrame) -> pd.DataFrame:
            steady_timings(runs, factor, lr=0.05)
            runs["window_cpu_s"] = [np.full(len(t), np.nan) for t in runs["window_s"]]
            return runs

        return edit

    base = edited(seeds, tmp_path / "base", on_gpu(1.0))
    slow = edited(seeds, tmp_path / "slow", on_gpu(1.5))
    code, doc = compare_json(base, slow)
    assert code == 1
    assert by_lr(doc)[0.05]["steps/s"]["clock"] == "wall"
    assert compare_json(base, base)[0] == 0


def test_a_throughput_without_stored_timings_is_never_a_change(seeds: Path, tmp_path: Path) -> None:
    def older(runs: pd.DataFrame) -> pd.DataFrame:
        runs["steps_per_s"] *= 0.5
        windows = ["window_steps", "window_samples", "window_s", "window_cpu_s", "window_repeat"]
        return runs.drop(columns=windows)

    new = edited(seeds, tmp_path / "new", older)
    code, doc = compare_json(seeds, new)
    assert code == 0
    assert by_lr(doc)[0.05]["steps/s"]["note"] == "no interval"


def test_trajectories_and_steps_are_compared_exactly(seeds: Path, tmp_path: Path) -> None:
    r = cli("compare", seeds, seeds)
    assert "identical trajectory in all 2 configuration(s)" in r.stdout

    def changed(runs: pd.DataFrame) -> pd.DataFrame:
        at = runs.index[runs["lr"] == 0.05]
        runs.loc[at[0], "loss_digest"] = "0" * 64
        runs.loc[at, "steps_to_target"] = runs.loc[at, "steps_to_target"] + 5
        return runs

    base_steps = pd.read_parquet(seeds / "runs.parquet").query("lr == 0.05")["steps_to_target"]
    before = float(base_steps.median())  # exact steps: a median of 4 seeds may be a half
    new = edited(seeds, tmp_path / "new", changed)
    r = cli("compare", seeds, new, "--fail-on", "steps_to_target:1000%")
    assert r.exit_code == 0, r
    assert "lr=0.05: trajectory differs (1 of 4 seeds)" in r.stdout
    change = 100 * 5 / before
    assert (
        f"lr=0.05: steps to target {fmt_count(before)} → {fmt_count(before + 5)}, +{change:.1f}%"
        in r.stdout
    )
    assert "identical trajectory in all" not in r.stdout
    # Any increase in steps fails at 0%; time and throughput keep the default.
    assert cli("compare", seeds, new, "--fail-on", "steps_to_target:0%").exit_code == 1


@pytest.mark.parametrize(
    "bad, message",
    [
        ("steps_per_s", "expected METRIC:N% or METRIC:N"),
        ("steps_per_s:", "expected METRIC:N% or METRIC:N"),
        ("steps_to_targt:0%", "unknown metric; did you mean steps_to_target?"),
        ("steps_per_s:-5%", "must be a number >= 0"),
        ("steps_per_s:ten%", "must be a number >= 0"),
        ("steps_per_s:nan", "must be a number >= 0"),
    ],
)
def test_fail_on_grammar_errors_exit_2(seeds: Path, bad: str, message: str) -> None:
    r = cli("compare", seeds, seeds, "--fail-on", bad)
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr.startswith("--fail-on: ") and message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_different_environments_warn_in_one_line(seeds: Path, tmp_path: Path) -> None:
    new = edited(seeds, tmp_path / "new", lambda r: r)
    env = json.loads((new / "env.json").read_text())
    env["torch_version"], env["torch_threads"] = "0.0.1", 64
    (new / "env.json").write_text(json.dumps(env))
    r = cli("compare", seeds, new)
    assert r.exit_code == 0
    warnings = [line for line in r.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1
    assert "torch_version" in warnings[0] and "0.0.1" in warnings[0] and "torch_threads" in r.stderr
    assert "warning" not in cli("compare", seeds, seeds).stderr


def test_fewer_seeds_reaching_target_is_a_regression(seeds: Path, tmp_path: Path) -> None:
    def lose_one(runs: pd.DataFrame) -> pd.DataFrame:
        first = runs.index[runs["lr"] == 0.05][0]
        runs.loc[first, ["steps_to_target", "samples_to_target", "time_to_target_s"]] = None
        return runs

    new = edited(seeds, tmp_path / "new", lose_one)
    code, doc = compare_json(seeds, new, "--threshold", "1000%")
    assert code == 1
    reached = by_lr(doc)[0.05]["reached"]
    assert (reached["base"], reached["new"], reached["regression"]) == ("4/4", "3/4", True)


def test_markdown_rows_and_unmatched_configurations(seeds: Path, tmp_path: Path) -> None:
    new = edited(seeds, tmp_path / "new", lambda runs: runs[runs["lr"] == 0.05])
    r = cli("compare", seeds, new, "--format", "markdown")
    assert r.exit_code == 0, r
    rows = [line for line in r.stdout.splitlines() if line.startswith("|")]
    assert len(rows) == 2 + 1 + 1  # header, rule, lr=0.05, overall
    assert rows[2].startswith("| 0.05 | identical |")
    assert "Only in base (1): lr=0.5" in r.stdout


def test_nothing_matches_exit_2(seeds: Path, quad: Path) -> None:
    r = cli("compare", seeds, quad)
    assert r.exit_code == 2 and "no configuration" in r.stderr
    assert cli("compare", seeds, seeds, "--threshold", "five").exit_code == 2


def test_change_rules() -> None:
    assert compare.change(100.0, 94.0, True, 0.05)["regression"] is True
    assert compare.change(100.0, 96.0, True, 0.05)["regression"] is False
    assert compare.change(10.0, 10.6, False, 0.05)["regression"] is True
    lost = compare.change(10.0, float("nan"), False, 0.05)
    assert (lost["regression"], lost["note"]) == (True, "lost")
    assert compare.change(float("inf"), 1.0, False, 0.05)["regression"] is False
    assert compare.parse_threshold("7.5%") == pytest.approx(0.075)
    absolute = compare.Threshold(3.0, relative=False)
    assert compare.change(100.0, 96.0, True, absolute)["regression"] is True
    assert compare.change(100.0, 98.0, True, absolute)["regression"] is False
    limits = compare.parse_fail_on(["steps_per_s:10%", "final_loss:0.5"], 0.05)
    assert limits["steps_per_s"] == compare.Threshold(0.10)
    assert limits["final_loss"] == compare.Threshold(0.5, relative=False)
    assert limits["steps_to_target"] == compare.Threshold(0.05)
    with pytest.raises(UsageError):
        compare.parse_threshold("-1%")


# ---- the test across runs: calibrated where a bootstrap over windows was not ----------------


def simulated_side(
    rng: np.random.Generator, runs: int, run_sigma: float, slowdown: float = 1.0
) -> list[timing.Windows]:
    """``runs`` runs of 20 windows of 20 steps at ~1000/slowdown steps/s: each run has its own
    speed (lognormal, ``run_sigma``: the machine's state during that run) and each window 20%
    lognormal noise on top."""
    out = []
    for _ in range(runs):
        speed = 1000 / slowdown * rng.lognormal(0, run_sigma)
        steps = np.full(20, 20.0)
        out.append(timing.Windows.of(steps, steps / speed * rng.lognormal(0, 0.2, 20)))
    return out


def simulated_comparisons(run_sigma: float, slowdown: float, trials: int = 300) -> list[list]:
    """Per trial, the tests of 2 configurations x 2 runs a side (the default grid's shape)."""
    rng = np.random.default_rng(13)
    return [
        stats.unit_ratio_tests(
            [
                (simulated_side(rng, 2, run_sigma), simulated_side(rng, 2, run_sigma, slowdown))
                for _ in range(2)
            ]
        )
        for _ in range(trials)
    ]


def test_between_run_noise_is_no_significant_change() -> None:
    # Runs differ by ~15% in speed; the windows of one run cannot show that, the runs can. On
    # these identical pairs the bootstrap over windows and runs (timing.ratio) called 17% of
    # the configurations a change.
    trials = simulated_comparisons(run_sigma=0.15, slowdown=1.0)
    intervals = [t for tests in trials for t in tests]
    false_alarms = sum(t.lo > 1 or t.hi < 1 for t in intervals)
    assert false_alarms / len(intervals) < 0.08  # 95% intervals: 5.7% of these 600
    widths = [t.hi / t.lo for t in intervals]
    assert np.median(widths) > 1.3  # the run-to-run spread is in the interval


def test_a_one_and_a_half_times_slower_step_is_beyond_the_noise() -> None:
    trials = simulated_comparisons(run_sigma=0.10, slowdown=1.5)
    caught = sum(any(t.hi < 0.95 for t in tests) for tests in trials)  # wholly beyond 5%
    assert caught / len(trials) > 0.7
    ratios = [t.ratio for tests in trials for t in tests]
    assert np.median(ratios) == pytest.approx(1 / 1.5, rel=0.03)


def test_one_run_a_side_is_too_few_to_tell(seeds: Path, tmp_path: Path) -> None:
    def one_seed(factor: float):
        def edit(runs: pd.DataFrame) -> pd.DataFrame:
            steady_timings(runs, factor)
            return runs[runs["seed"] == 0]

        return edit

    base = edited(seeds, tmp_path / "base", one_seed(1.0))
    slow = edited(seeds, tmp_path / "slow", one_seed(2.0))
    code, doc = compare_json(base, slow)
    assert code == 0  # no run-to-run spread to judge a change by: never a regression
    steps_per_s = by_lr(doc)[0.05]["steps/s"]
    assert steps_per_s["note"] == stats.TOO_FEW and steps_per_s["interval"] is None
    assert steps_per_s["change"] == pytest.approx(-0.5, abs=0.05)
    assert "too few runs to tell" in cli("compare", base, slow).stdout


def test_heavy_run_to_run_noise_is_not_a_regression(seeds: Path, tmp_path: Path) -> None:
    # Two seeds a side, each run at its own speed (the machine's state while it ran), the same
    # for every window of the run: new looks 24% slower, but its runs spread about as much as
    # that. The bootstrap over windows and runs called it significant (-25% [-38,-5]).
    def speeds(by_seed: dict[int, float]):
        def edit(runs: pd.DataFrame) -> pd.DataFrame:
            runs = runs[runs["seed"].isin(list(by_seed))].copy()
            steady_timings(runs)
            speed = [by_seed[s] for s in runs["seed"]]
            runs["window_cpu_s"] = [t / v for t, v in zip(runs["window_cpu_s"], speed, strict=True)]
            return runs

        return edit

    base = edited(seeds, tmp_path / "base", speeds({0: 1.0, 1: 0.8}))
    new = edited(seeds, tmp_path / "new", speeds({0: 0.75, 1: 0.62}))
    code, doc = compare_json(base, new)
    row = by_lr(doc)[0.05]["steps/s"]
    assert row["change"] == pytest.approx(-0.24, abs=0.03)
    assert code == 0 and not row["regression"] and not row["significant"]
    assert row["units"] == [2, 2]
    assert "2 timed run(s) a side (seeds × repeats)" in cli("compare", base, new).stdout
    assert compare_json(base, new) == (code, doc)  # a formula: the same decision every time
    # Runs 10% apart, and 1.5x slower: beyond the noise.
    steady = edited(seeds, tmp_path / "steady", speeds({0: 1.0, 1: 0.9}))
    slow = edited(seeds, tmp_path / "slow", speeds({0: 1.0 / 1.5, 1: 0.9 / 1.5}))
    assert compare_json(steady, slow)[0] == 1


def test_overall_interval_is_no_narrower_than_its_configurations() -> None:
    steps_per_s = compare.METRICS[0]
    out = stats.overall(steps_per_s, [0.8, 0.9], [(0.7, 0.95), (0.8, 1.0)], compare.Threshold(0.05))
    lo, hi = out["interval"]
    assert lo == pytest.approx(np.sqrt(0.7 * 0.8) - 1) and hi == pytest.approx(np.sqrt(0.95) - 1)
    assert out["regression"] is False  # hi is -2.5%: not wholly beyond 5%
    out = stats.overall(steps_per_s, [0.6, 0.7], [(0.5, 0.7), (0.6, 0.8)], compare.Threshold(0.05))
    assert out["regression"] is True


def test_the_machine_drifting_between_folders_is_not_a_change(seeds: Path, tmp_path: Path) -> None:
    # The new folder ran in a minute when the machine did all CPU work 1.4x slower (as a
    # loaded 2-core machine does): the probe slowed as much as the step, so nothing changed.
    def ran(slower: float, step: float = 1.0, probes: bool = True):
        def edit(runs: pd.DataFrame) -> pd.DataFrame:
            steady_timings(runs, step, lr=0.05)
            drift(runs, slower, probes)
            return runs

        return edit

    base = edited(seeds, tmp_path / "base", ran(1.0))
    drifted = edited(seeds, tmp_path / "drifted", ran(1.4))
    code, doc = compare_json(base, drifted)
    row = by_lr(doc)[0.05]["steps/s"]
    assert code == 0 and row["clock"] == "probe" and not row["regression"]
    assert row["change"] == pytest.approx(0.0, abs=0.02)
    words = " ".join(cli("compare", base, drifted).stdout.split())
    assert "CPU time measured in machine-speed probe times in" in words
    # A real 1.5x slower step on the drifted machine: the change is the step's alone.
    slow = edited(seeds, tmp_path / "slow", ran(1.4, step=1.5))
    code, doc = compare_json(base, slow)
    row = by_lr(doc)[0.05]["steps/s"]
    assert code == 1 and row["regression"]
    assert row["change"] == pytest.approx(1 / 1.5 - 1, abs=0.03)
    assert not by_lr(doc)[0.5]["steps/s"]["regression"]
    # Without probe times the same drift reads as a 29% slower step: CPU time alone cannot
    # tell the machine from the code.
    base_np = edited(seeds, tmp_path / "base_np", ran(1.0, probes=False))
    drifted_np = edited(seeds, tmp_path / "drifted_np", ran(1.4, probes=False))
    code, doc = compare_json(base_np, drifted_np)
    row = by_lr(doc)[0.05]["steps/s"]
    assert row["clock"] == "cpu" and code == 1
    assert row["change"] == pytest.approx(1 / 1.4 - 1, abs=0.02)


def test_probe_times_are_not_used_across_machines_or_torch_versions(
    seeds: Path, tmp_path: Path
) -> None:
    # Another machine (or torch) runs the probe at another speed for reasons that are the
    # very thing compared: the plain CPU-time test then.
    def ran(runs: pd.DataFrame) -> pd.DataFrame:
        steady_timings(runs)
        return runs

    base = edited(seeds, tmp_path / "base", ran)
    other = edited(seeds, tmp_path / "other", ran)
    env = json.loads((other / "env.json").read_text())
    env["torch_version"] = "0.0.1"
    (other / "env.json").write_text(json.dumps(env))
    row = by_lr(compare_json(base, other)[1])[0.05]["steps/s"]
    assert row["clock"] == "cpu"
    assert by_lr(compare_json(base, base)[1])[0.05]["steps/s"]["clock"] == "probe"
    # a folder without env.json cannot show it ran on the same machine
    unknown = edited(seeds, tmp_path / "unknown", ran)
    (unknown / "env.json").unlink()
    assert by_lr(compare_json(base, unknown)[1])[0.05]["steps/s"]["clock"] == "cpu"


def test_a_window_is_timed_against_the_probe_beside_it() -> None:
    from sgdbench.compare import match

    runs = pd.DataFrame(
        {
            "window_cpu_s": [np.array([1.0, 2.0, 3.0, 4.0, 5.0])],
            # repeat 0: probes after windows 1 and 2 (0-based); repeat 1: after window 3 only
            "window_probe_s": [np.array([np.nan, 0.5, 0.25, np.nan, 2.0])],
            "window_repeat": [np.array([0, 0, 0, 1, 1])],
        }
    )
    seconds = match.in_probe_times(runs, "window_cpu_s")[0]
    # the next probe of the same repeat, else the last before it; never another repeat's
    # (each probe the median of itself and its neighbours: of two, their mean)
    np.testing.assert_allclose(seconds, [1 / 0.375, 2 / 0.375, 3 / 0.375, 4 / 2.0, 5 / 2.0])
    # one interrupted probe (10x) among steady ones rescales no window
    for probes in ([0.5, 0.5, 5.0, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5, np.nan, 5.0]):
        runs["window_cpu_s"] = [np.ones(6)]
        runs["window_probe_s"] = [np.array(probes)]
        runs["window_repeat"] = [np.zeros(6, dtype=int)]
        np.testing.assert_allclose(match.in_probe_times(runs, "window_cpu_s")[0], np.full(6, 2.0))
