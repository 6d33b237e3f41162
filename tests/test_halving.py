"""Successive halving: rungs, deterministic decisions, pruning inside the stacked engine."""

from __future__ import annotations

import json
import math
import os
import signal
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sgdbench import halving
from sgdbench.engine import execute_unit, plan
from sgdbench.engine.context import StopRequested
from sgdbench.metrics import loss_digest
from sgdbench.plan import load_grid
from tests.helpers import cli, cli_forked

GRID = """
    name = "halved"
    [problem]
    name = "linear"
    n_samples = 128
    n_features = 4
    noise = 0.1
    [train]
    engine = "stacked"
    steps = 90
    eval_every = 30
    [grid]
    lr = [0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0]
    batch_size = 8
    seed = [0, 1, 2]
    [search]
    method = "halving"
    eta = 3
    min_steps = 10
"""


def test_rungs_grow_by_eta_below_the_full_budget() -> None:
    assert halving.rung_steps(10, 90, 3) == [10, 30]
    assert halving.rung_steps(10, 91, 3) == [10, 30, 90]
    assert halving.rung_steps(100, 90, 3) == []  # the first rung is the full budget: no pruning


def test_survivors_keep_the_best_third_by_median_over_seeds() -> None:
    scores = {
        "a": [1.0, 9.0, 1.1],  # median 1.1 (one bad seed does not sink it)
        "b": [1.0, 1.2, 1.3],  # median 1.2
        "c": [0.5, math.nan, math.inf],  # median inf: two seeds diverged
        "d": [2.0, 2.0, 2.0],
        "e": [3.0, 3.0, 3.0],
        "f": [4.0, 4.0, 4.0],
    }
    assert halving.survivors(scores, 3) == ["a", "b"]
    assert halving.survivors({"z": [1.0], "y": [1.0], "x": [1.0]}, 3) == ["x"]  # ties: by id
    assert halving.survivors({"only": [math.nan]}, 3) == ["only"]  # at least one goes on


def test_pruner_counts_retired_seeds_as_infinite() -> None:
    # Members 0-1 are configuration "a", 2-3 "b", 4-5 "c"; eta 3 keeps one configuration.
    pruner = halving.Pruner(["a", "a", "b", "b", "c", "c"], [10], 3)
    pruner.retire(0)  # a's first seed diverged before the rung
    pruned = pruner.decide([1, 2, 3, 4, 5], [0.1, 0.5, 0.5, 0.9, 0.9])
    # a's median is (0.1 + inf) / 2 = inf, so b (0.5) continues.
    assert pruned == [1, 4, 5]


def test_planned_steps_count_each_rung_once() -> None:
    # 9 configurations x 3 seeds: 27 runs to 10 steps, 3 configs to 30, 1 config to 90.
    assert halving.planned_steps([10, 30], 90, 3, [3] * 9) == 27 * 10 + 9 * 20 + 3 * 60


def test_halving_prunes_in_the_stack_and_continues_the_survivors(
    write_grid: Callable[..., Path],
) -> None:
    grid = load_grid(write_grid(GRID))
    assert {tuple(s.halving["rungs"]) for s in grid.runs} == {(10, 30)}
    units = plan(grid.runs)
    assert len(units) == 1
    # Decisions compare every configuration: a group cap never splits a halving group.
    assert len(plan(grid.runs, max_group_size=4)) == 1
    trajs = execute_unit(units[0])
    by_status: dict[str, list[int]] = {}
    for traj in trajs:
        by_status.setdefault(traj.status, []).append(traj.steps)
    # Survivors run the whole budget; pruned runs stop at a rung with their losses so far.
    assert set(by_status["ok"]) == {90}
    assert set(by_status["pruned"]) <= {10, 30}
    assert sum(len(v) for k, v in by_status.items() if k == "ok") == 3  # 1 configuration x 3 seeds

    # Never restarted: a survivor's trajectory equals the same run without halving, bit for bit.
    survivor = next(i for i, t in enumerate(trajs) if t.status == "ok")
    plain = replace(units[0][survivor], halving=None)
    alone = execute_unit([plain])[0]
    np.testing.assert_array_equal(alone.losses, trajs[survivor].losses)
    # And a pruned run's losses are the plain run's prefix.
    pruned = next(i for i, t in enumerate(trajs) if t.status == "pruned")
    prefix = execute_unit([replace(units[0][pruned], halving=None)])[0].losses
    np.testing.assert_array_equal(prefix[: trajs[pruned].steps], trajs[pruned].losses)
    assert "pruned at rung" in trajs[pruned].message

    # Deterministic: the same grid prunes the same runs.
    again = execute_unit(plan(load_grid(write_grid(GRID, name="again.toml")).runs)[0])
    assert [t.status for t in again] == [t.status for t in trajs]


@pytest.mark.slow  # a sweep end to end: run, report, plot, rerun
def test_halving_run_records_rungs_and_report_shows_them(
    write_grid: Callable[..., Path], tmp_path: Path
) -> None:
    grid = write_grid(GRID)
    dry = cli("run", grid, "--dry-run")
    assert dry.exit_code == 0
    planned = 27 * 10 + 9 * 20 + 3 * 60
    assert f"budget {planned:,} steps (at most; the full grid: {27 * 90:,})" in dry.stderr

    out = tmp_path / "out"
    ran = cli("run", grid, "--out", out, "-q")
    assert ran.exit_code == 0, ran
    runs = pd.read_parquet(out / "runs.parquet")
    assert set(runs["search"]) == {"halving"}
    ok = runs[runs["status"] == "ok"]
    assert set(ok["rung"]) == {2} and len(ok) == 3
    assert runs["steps"].sum() <= planned
    # The best of the full budget is among the lrs that work on this problem.
    assert 0.01 <= ok["lr"].iloc[0] <= 0.3

    report = cli("report", out)
    assert "Successive halving (eta 3): rungs at steps 10, 30, 90" in report.stdout
    # The lr plot leaves pruned configurations out (no final loss) and says so.
    svg = tmp_path / "lr.svg"
    assert cli("plot", out, "--kind", "lr", "--out", svg).exit_code == 0
    assert "pruned by halving, not drawn" in svg.read_text()
    # Finished: a rerun skips every run, pruned ones included.
    again = cli("run", grid, "--out", out)
    assert "27 of 27 runs already complete" in again.stderr


def test_halving_run_ids_differ_from_the_plain_grid(write_grid: Callable[..., Path]) -> None:
    halved = load_grid(write_grid(GRID)).runs
    plain = load_grid(write_grid(GRID.split("[search]")[0], name="plain.toml")).runs
    # A halving run may stop early: it is not the same computation as the full run.
    assert not {s.run_id for s in halved} & {s.run_id for s in plain}


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("min_steps = 10", "", "search: halving needs exactly one of min_steps or min_epochs"),
        ("eta = 3", "eta = 1", "search.eta: must be an integer >= 2, got 1"),
        (
            '"linear"\n    n_samples = 128\n    n_features = 4\n    noise = 0.1\n    [train]',
            '"logistic"\n    n_samples = 128\n    n_features = 4\n    [train]\n'
            "    early_stopping = {patience = 2}",
            "train.early_stopping: successive halving ranks runs at its rungs",
        ),
    ],
)
def test_bad_halving_is_one_line_exit_2(
    write_grid: Callable[..., Path], tmp_path: Path, old: str, new: str, message: str
) -> None:
    grid = write_grid(GRID.replace(old, new))
    result = cli("run", grid, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert result.stderr.strip().startswith(f"{grid}: {message}")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


EAGER_GRID = GRID.replace('engine = "stacked"', 'engine = "eager"')


def test_eager_halving_trains_rung_by_rung_and_survivors_are_the_plain_runs(
    write_grid: Callable[..., Path],
) -> None:
    grid = load_grid(write_grid(EAGER_GRID))
    assert {s.engine for s in grid.runs} == {"eager"}
    units = plan(grid.runs)
    assert [len(u) for u in units] == [27]  # the halving group is one unit of work
    trajs = execute_unit(units[0])
    steps = {t.status: sorted({t.steps for tt in trajs if tt.status == t.status}) for t in trajs}
    assert steps["ok"] == [90] and set(steps["pruned"]) <= {10, 30}
    assert sum(t.status == "ok" for t in trajs) == 3  # 9 -> 3 -> 1 configuration, 3 seeds
    assert {t.info["rung"] for t in trajs if t.status == "ok"} == {2}
    assert all(t.info["rung"] == [10, 30].index(t.steps) for t in trajs if t.status == "pruned")
    # Paused and resumed, never restarted: a survivor's losses are the run's without halving.
    for i in [i for i, t in enumerate(trajs) if t.status == "ok"]:
        alone = execute_unit([replace(units[0][i], halving=None)])[0]
        np.testing.assert_array_equal(alone.losses, trajs[i].losses)
        assert trajs[i].steps_to_target == alone.steps_to_target
    pruned = next(i for i, t in enumerate(trajs) if t.status == "pruned" and t.steps == 30)
    prefix = execute_unit([replace(units[0][pruned], halving=None)])[0].losses
    np.testing.assert_array_equal(prefix[:30], trajs[pruned].losses)
    assert trajs[pruned].message.startswith("pruned at rung 1 (step 30)")
    assert trajs[pruned].evals["step"] == [0, 10, 30]  # each rung evaluates
    # Deterministic: the same grid prunes the same runs.
    again = execute_unit(plan(load_grid(write_grid(EAGER_GRID, name="again.toml")).runs)[0])
    assert [t.status for t in again] == [t.status for t in trajs]


def test_eager_halving_groups_across_optimizers(write_grid: Callable[..., Path]) -> None:
    text = EAGER_GRID.replace("batch_size = 8", 'batch_size = 8\n    optimizer = ["sgd", "adam"]')
    specs = load_grid(write_grid(text)).runs
    (unit,) = plan(specs)  # one halving: the optimizers compete at each rung
    assert len(unit) == 54
    short = load_grid(write_grid(text.replace("steps = 90", "steps = 80"), name="b.toml")).runs
    assert len(plan(specs + short)) == 2  # another budget (other rungs) is another halving


def test_eager_halving_resumes_from_the_last_rung_reached(
    write_grid: Callable[..., Path], tmp_path: Path
) -> None:
    grid = load_grid(write_grid(EAGER_GRID))
    reference = execute_unit(plan(grid.runs)[0])
    ckpt = tmp_path / "checkpoints"
    unit = [replace(s, checkpoint_dir=str(ckpt)) for s in plan(grid.runs)[0]]
    # Every member that reaches the first rung leaves its state there (the diverged do not).
    paused = sum(t.status in ("ok", "pruned") for t in reference)
    # Stop (as Ctrl-C does) once a survivor's state at the second rung replaced its first
    # (a new file, atomically renamed): the next window end is inside the last stretch.
    survivor = ckpt / f"{unit[[t.status for t in reference].index('ok')].run_id}.pt"
    inodes: set[int] = set()

    def second_rung_written() -> bool:
        if survivor.exists():
            inodes.add(survivor.stat().st_ino)
        return len(inodes) > 1

    with pytest.raises(StopRequested):
        execute_unit(unit, should_stop=second_rung_written)
    assert len(list(ckpt.glob("*.pt"))) == paused
    resumed = execute_unit(unit)
    assert [t.status for t in resumed] == [t.status for t in reference]
    for again, ref in zip(resumed, reference, strict=True):
        np.testing.assert_array_equal(again.losses, ref.losses)
        assert again.evals["train_loss"] == ref.evals["train_loss"]
    # Nothing redone before the last rung each member reached.
    starts = {t.info.get("resumed_from_step") for t in resumed if t.status == "ok"}
    assert starts == {30}
    assert all(t.info.get("resumed_from_step") == t.steps for t in resumed if t.status == "pruned")


@pytest.mark.parametrize(
    "executor",
    [  # worker processes
        pytest.param(["--jobs", "2", "--always-parallel"], marks=pytest.mark.slow, id="jobs"),
        pytest.param(
            ["--executor", "dask", "--jobs", "2", "--always-parallel"],
            marks=pytest.mark.slow,
            id="dask",
        ),
    ],
)
def test_eager_halving_on_executors_commits_every_run_and_report_json_shows_rungs(
    write_grid: Callable[..., Path], tmp_path: Path, executor: list[str]
) -> None:
    if "dask" in executor:
        pytest.importorskip("distributed")
    grid = write_grid(EAGER_GRID)
    reference = execute_unit(plan(load_grid(grid).runs)[0])
    out = tmp_path / "out"
    ran = cli("run", grid, "--out", out, "-q", *executor)
    assert ran.exit_code == 0, ran
    runs = pd.read_parquet(out / "runs.parquet").set_index("run_id")
    # Worker processes make the same decisions, and a committed run leaves no checkpoint.
    assert [runs.loc[t.run_id, "status"] for t in reference] == [t.status for t in reference]
    digests = [runs.loc[t.run_id, "loss_digest"] for t in reference]
    assert digests == [loss_digest(t.losses) for t in reference]
    assert not list((out / "checkpoints").glob("*.pt"))
    report = json.loads(cli("report", out, "--format", "json").stdout)
    rungs = {c["lr"]: c["halving"] for c in report["configurations"]}
    assert len(rungs) == 9
    (best,) = [h for h in rungs.values() if h["rung"] == 2]
    assert best["rung_steps"] == [10, 30, 90] and len(best["rung_loss"]) == 3
    at_second = [h["rung_loss"][1] for h in rungs.values() if h["rung"] == 1]
    assert len(at_second) == 2 and best["rung_loss"][1] <= min(at_second)
    # The loss that ranked a configuration is the median over its seeds at the rung.
    survivor = runs[runs["status"] == "ok"].index
    at_30 = [pd.read_parquet(out / "evals" / f"{r}.parquet").set_index("step") for r in survivor]
    assert best["rung_loss"][1] == pytest.approx(
        float(np.median([e.loc[30, "train_loss"] for e in at_30]))
    )


LONG_HALVING = """
name = "long_halving"
[problem]
name = "linear"
n_samples = 128
n_features = 4
[train]
steps = 300
eval_every = 0
[grid]
lr = [0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0]
batch_size = 8
seed = [0, 1, 2]
[search]
method = "halving"
eta = 3
min_steps = 10
"""


def kill_at_rung_save(run_id: str, nth: int) -> Callable[[], None]:
    """A patch for a forked CLI: SIGKILL itself right after ``run_id``'s ``nth`` rung state is
    saved (each rung's state is a new file renamed into place): a known point, however loaded
    the machine is, so the sweep can be short."""

    def patch() -> None:
        from sgdbench import checkpoint

        real_save, count = checkpoint.save, [0]

        def save(spec, state):  # type: ignore[no-untyped-def]
            real_save(spec, state)
            if spec.run_id == run_id:
                count[0] += 1
                if count[0] == nth:
                    os.kill(os.getpid(), signal.SIGKILL)

        checkpoint.save = save

    return patch


@pytest.mark.slow  # a forked CLI killed with SIGKILL
def test_kill_9_during_eager_halving_resumes_from_the_last_rung(tmp_path: Path) -> None:
    # 300 steps (rungs 10, 30, 90, 270): the kill lands at the third rung (90) whatever the
    # budget, so a longer sweep (it was 1000 steps, raced against a poll) covers nothing more.
    ref = tmp_path / "ref"
    ref.mkdir()
    (ref / "grid.toml").write_text(LONG_HALVING)
    done = cli("run", "grid.toml", "--out", "out", "-q", cwd=ref)
    assert done.exit_code == 0, done
    expected = pd.read_parquet(ref / "out" / "runs.parquet").set_index("run_id")
    survivor = expected.index[expected["status"] == "ok"][0]

    work = tmp_path / "work"
    work.mkdir()
    (work / "grid.toml").write_text(LONG_HALVING)
    code, _ = cli_forked(
        "run", "grid.toml", "--out", "out", "-q", cwd=work, before=kill_at_rung_save(survivor, 3)
    )
    assert code == -signal.SIGKILL
    assert not (work / "out" / "runs.parquet").exists()  # killed inside the unit

    again = cli("run", "grid.toml", "--out", "out", "-q", cwd=work)
    assert again.exit_code == 0, again
    runs = pd.read_parquet(work / "out" / "runs.parquet").set_index("run_id")
    assert runs["loss_digest"].to_dict() == expected["loss_digest"].to_dict()
    assert runs["status"].to_dict() == expected["status"].to_dict()
    # The survivors went on from the last rung each had reached (30 or 90 steps), not from 0.
    resumed = runs.loc[runs["status"] == "ok", "resumed_from_step"]
    assert (resumed >= 30).all() and resumed.max() >= 90
    assert not list((work / "out" / "checkpoints").glob("*.pt"))


def test_a_halving_units_rows_are_committed_together(write_grid: Callable[..., Path]) -> None:
    from sgdbench.runner import PendingRows

    class Store:
        def __init__(self) -> None:
            self.commits: list[list[str]] = []

        def commit_rows(self, rows: list[dict[str, str]]) -> None:
            self.commits.append([r["run_id"] for r in rows])

    halved = plan(load_grid(write_grid(EAGER_GRID)).runs)
    plain = plan(load_grid(write_grid(EAGER_GRID.split("[search]")[0], name="plain.toml")).runs)
    store = Store()
    pending = PendingRows(store, every_s=3600, max_rows=10, units=[*halved, *plain[:2]])
    (unit,) = halved
    for spec in unit[:-1]:  # more than max_rows, but not the whole unit: nothing committed
        pending.add(spec, {"run_id": spec.run_id})
    pending.flush()
    assert store.commits in ([], [[]])
    pending.add(plain[0][0], {"run_id": plain[0][0].run_id})  # a plain run commits as usual
    pending.flush()
    assert store.commits[-1] == [plain[0][0].run_id]
    pending.add(unit[-1], {"run_id": unit[-1].run_id})  # the last member: all 27 at once
    assert store.commits[-1] == [s.run_id for s in unit]


@pytest.mark.parametrize(
    ("rungs_done", "optimizer"), [pytest.param(1, "sgd", marks=pytest.mark.slow), (2, "adam")]
)
def test_kill_9_during_stacked_halving_resumes_from_the_last_rung(
    write_grid: Callable[..., Path], tmp_path: Path, rungs_done: int, optimizer: str
) -> None:
    # Adam: the optimizer's state rows (moments, step count) must come back too.
    grid = write_grid(
        GRID.replace("batch_size = 8", f'batch_size = 8\n    optimizer = "{optimizer}"')
    )
    assert cli("run", grid, "--out", tmp_path / "ref", "-q").exit_code == 0
    expected = pd.read_parquet(tmp_path / "ref" / "runs.parquet").set_index("run_id")
    assert "pruned" in set(expected["status"])  # the rungs pruned: the checkpoint drops rows

    def kill_after_rung() -> None:  # in the forked child: SIGKILL once rung N's file is in place
        from sgdbench.engine import stacked_checkpoint

        save, count = stacked_checkpoint.save, [0]

        def save_then_die(group: object) -> None:
            save(group)  # type: ignore[arg-type]
            count[0] += 1
            if count[0] == rungs_done:
                os.kill(os.getpid(), signal.SIGKILL)

        stacked_checkpoint.save = save_then_die  # type: ignore[assignment]

    out = tmp_path / "out"
    code, _ = cli_forked("run", grid, "--out", out, "-q", cwd=tmp_path, before=kill_after_rung)
    assert code == -signal.SIGKILL
    assert not (out / "runs.parquet").exists()  # killed inside the unit
    assert len(list((out / "checkpoints").glob("*.group.pt"))) == 1

    ran = cli("run", grid, "--out", out, "-q")
    assert ran.exit_code == 0, ran
    runs = pd.read_parquet(out / "runs.parquet").set_index("run_id")
    for col in ("loss_digest", "status", "steps", "rung", "message"):
        assert runs[col].to_dict() == expected[col].to_dict(), col
    for run_id in expected.index:  # the evaluations too, of pruned runs and survivors alike
        cols = ["step", "train_loss", "val_loss"]
        again = pd.read_parquet(out / "evals" / f"{run_id}.parquet", columns=cols)
        pd.testing.assert_frame_equal(
            again, pd.read_parquet(tmp_path / "ref" / "evals" / f"{run_id}.parquet", columns=cols)
        )
    # Every member came from the checkpoint of that rung (10 or 30 steps), not from step 0; the
    # members that had ended by then (pruned at an earlier rung, diverged) from the step they
    # stopped at, as on the eager engine (a pruned run resumes at its last rung).
    rung = [10, 30][rungs_done - 1]
    assert rungs_done == 1 or (runs["steps"] == 10).any()  # some pruned at the first rung
    expected_from = runs["steps"].clip(upper=rung)
    assert runs["resumed_from_step"].to_dict() == expected_from.to_dict()
    assert not list((out / "checkpoints").glob("*.pt"))  # removed once the rows are committed


@pytest.mark.slow  # a forked CLI and its workers, killed with SIGKILL
def test_kill_9_during_stacked_halving_under_jobs_2_resumes_to_the_reference(
    write_grid: Callable[..., Path], tmp_path: Path
) -> None:
    # Two optimizers: two stacked halving groups, two units, so --jobs 2 --always-parallel
    # trains them in two worker processes.
    grid = write_grid(
        GRID.replace("batch_size = 8", 'batch_size = 8\n    optimizer = ["sgd", "adam"]')
    )
    assert len(plan(load_grid(grid).runs)) == 2
    assert cli("run", grid, "--out", tmp_path / "ref", "-q").exit_code == 0
    expected = pd.read_parquet(tmp_path / "ref" / "runs.parquet").set_index("run_id")
    killer = tmp_path / "killer"

    def kill_after_second_rung() -> None:  # in the forked driver; its workers fork from it
        from sgdbench.engine import stacked_checkpoint

        save, count, driver = stacked_checkpoint.save, [0], os.getpid()

        def save_then_die(group: object) -> None:
            save(group)  # type: ignore[arg-type]
            count[0] += 1
            if count[0] == 2:  # a group's second rung, in the worker training it
                killer.write_text("worker" if os.getpid() != driver else "driver")
                os.kill(driver, signal.SIGKILL)  # the driver; its other worker dies with it
                os.kill(os.getpid(), signal.SIGKILL)

        stacked_checkpoint.save = save_then_die  # type: ignore[assignment]

    out = tmp_path / "out"
    jobs = ("--jobs", "2", "--always-parallel")  # short groups: workers all the same
    code, _ = cli_forked(
        "run", grid, "--out", out, "-q", *jobs, cwd=tmp_path, before=kill_after_second_rung
    )
    assert code == -signal.SIGKILL
    assert killer.read_text() == "worker"
    assert not (out / "runs.parquet").exists()  # killed inside both units
    assert list((out / "checkpoints").glob("*.group.pt"))

    ran = cli("run", grid, "--out", out, "-q", *jobs)
    assert ran.exit_code == 0, ran
    runs = pd.read_parquet(out / "runs.parquet").set_index("run_id")
    for col in ("loss_digest", "status", "steps", "rung", "message"):
        assert runs[col].to_dict() == expected[col].to_dict(), col
    assert (runs["resumed_from_step"] == 30).any()  # the killed group went on from its rung
    assert not list((out / "checkpoints").glob("*.pt"))
