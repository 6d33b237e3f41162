"""Drive a grid: skip finished runs, execute the rest, commit each result as it arrives."""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sgdbench.errors import UsageError
from sgdbench.executors import Activity, ExecutorOptions
from sgdbench.spec import Grid, RunSpec


@dataclass
class GridOutcome:
    """What happened to a grid's runs in one ``sgdbench run``."""

    total: int
    already_complete: int
    counts: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (run_id, message)
    stalled: list[tuple[str, str]] = field(default_factory=list)
    stopped_early: bool = False  # --fail-fast

    @property
    def exit_code(self) -> int:
        return 1 if self.counts["failed"] else 0


def prepare_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir}: results folder is a file, not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{out_dir}: cannot create results folder: {e.strerror}") from None


def pending_runs(grid: Grid, completed: set[str], force: bool) -> list[RunSpec]:
    return [s for s in grid.runs if force or s.run_id not in completed]


def run_grid(
    grid: Grid,
    out_dir: Path,
    *,
    force: bool = False,
    executor: str = "serial",
    options: ExecutorOptions | None = None,
    fail_fast: bool = False,
    progress: bool = True,
) -> GridOutcome:
    """Run every pending run of ``grid`` into ``out_dir`` on ``executor`` (see ``executors``)."""
    from tqdm import tqdm

    from sgdbench import env, executors
    from sgdbench.store import ResultsStore

    prepare_out_dir(out_dir)
    store = ResultsStore(out_dir)
    store.create()
    store.clean_orphans()
    environment = env.collect(grid.path.resolve().parent)
    store.write_meta(grid.text, environment)
    todo = pending_runs(grid, store.completed_ids(), force)
    outcome = GridOutcome(total=len(grid.runs), already_complete=len(grid.runs) - len(todo))
    if outcome.already_complete:
        print(
            f"sgdbench: {outcome.already_complete} of {outcome.total} runs already complete, "
            "skipped (--force reruns them)",
            file=sys.stderr,
        )
    bar = tqdm(
        total=len(todo),
        desc=grid.name,
        unit="run",
        file=sys.stderr,
        disable=not progress or not sys.stderr.isatty(),
        dynamic_ncols=True,
    )
    activity = Activity()

    def show_notes() -> None:
        while activity.notes:
            tqdm.write(activity.notes.pop(0), file=sys.stderr)

    results = None
    try:
        from sgdbench.engine import plan

        results = executors.get(executor)(
            plan(todo), options=options or ExecutorOptions(), activity=activity
        )
        for spec, traj in results:
            store.commit(spec, traj, environment["git_sha"])
            outcome.counts[traj.status] += 1
            if traj.status == "failed":
                outcome.failures.append((traj.run_id, traj.message))
            elif traj.status == "stalled":
                outcome.stalled.append((traj.run_id, traj.message))
            show_notes()
            postfix = {k: v for k, v in sorted(outcome.counts.items())}
            if executor != "serial":
                postfix["running"] = activity.running
            bar.set_postfix(postfix, refresh=False)
            bar.update(1)
            if fail_fast and traj.status == "failed":
                outcome.stopped_early = True
                break
    finally:
        if results is not None and hasattr(results, "close"):
            results.close()  # stop the workers now, not when the generator is collected
        bar.close()
        show_notes()
    return outcome
