"""Results on disk (DESIGN §4): runs.parquet, steps/ and evals/ Parquet datasets, logs.

Every file appears atomically: written under a temporary dot-name in the same folder, fsynced,
then renamed. A run is committed when its row lands in runs.parquet, which is written after its
steps and evals files; files without a row are leftovers of a killed process and are removed by
``clean_orphans``. Only the driver process writes here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sgdbench import SCHEMA_VERSION
from sgdbench.atomic import atomic_write, atomic_write_text, is_temporary
from sgdbench.engine.trajectory import EVAL_COLUMNS, FINAL_STATUSES, Trajectory
from sgdbench.spec import RunSpec

RUNS_FILE = "runs.parquet"
STEPS_DIR = "steps"
EVALS_DIR = "evals"
LOGS_DIR = "logs"
MODELS_DIR = "models"

STEP_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("step", pa.int64()),
        ("epoch", pa.int32()),
        ("samples_seen", pa.int64()),
        ("loss", pa.float32()),
        ("lr", pa.float64()),
        ("time_s", pa.float64()),
    ]
)
EVAL_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("step", pa.int64()),
        ("epoch", pa.float64()),
        ("samples_seen", pa.int64()),
        ("time_s", pa.float64()),
        ("train_loss", pa.float64()),
        ("train_accuracy", pa.float64()),
        ("val_loss", pa.float64()),
        ("val_accuracy", pa.float64()),
    ]
)
# runs.parquet: DESIGN §4's columns first, then sgdbench's additions.
RUN_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("name", pa.string()),
        ("problem", pa.string()),
        ("optimizer", pa.string()),
        ("optimizer_kwargs", pa.string()),
        ("lr", pa.float64()),
        ("batch_size", pa.int64()),
        ("device", pa.string()),
        ("seed", pa.int64()),
        ("engine", pa.string()),
        ("status", pa.string()),
        ("message", pa.string()),
        ("steps", pa.int64()),
        ("epochs", pa.float64()),
        ("final_loss", pa.float64()),
        ("best_loss", pa.float64()),
        ("steps_to_target", pa.int64()),
        ("samples_to_target", pa.int64()),
        ("time_to_target_s", pa.float64()),
        ("steps_per_s", pa.float64()),
        ("samples_per_s", pa.float64()),
        ("train_time_s", pa.float64()),
        ("wall_time_s", pa.float64()),
        ("loss_digest", pa.string()),
        ("torch_version", pa.string()),
        ("device_name", pa.string()),
        ("threads", pa.int64()),
        ("git_sha", pa.string()),
        ("started_at", pa.string()),
        # additions
        ("config_id", pa.string()),
        ("optimizer_class", pa.string()),
        ("optimizer_impl", pa.string()),
        ("full_batch", pa.bool_()),
        ("schedule", pa.string()),
        ("target_loss", pa.float64()),
        ("samples_seen", pa.int64()),
        ("warmup_s", pa.float64()),
        ("warmup_steps", pa.int64()),
        ("final_val_loss", pa.float64()),
        ("final_val_accuracy", pa.float64()),
        ("deterministic", pa.bool_()),
        ("problem_kwargs", pa.string()),
        ("axes", pa.string()),
        ("spec", pa.string()),
        ("schema_version", pa.int64()),
        ("resumed_from_step", pa.int64()),
        ("verdict", pa.string()),
        ("verdict_detail", pa.string()),
        ("projected_steps_to_target", pa.float64()),
        ("update_cosine", pa.float64()),
        ("best_val_loss", pa.float64()),
        ("best_val_step", pa.int64()),
        # stacked engine (null on the eager engine): the group, its size and training time
        ("group_id", pa.string()),
        ("group_size", pa.int64()),
        ("group_train_time_s", pa.float64()),
        # how the run was chosen ([search]): grid | random | sobol | halton | halving, the trial
        ("search", pa.string()),
        ("trial", pa.int64()),
        ("rung", pa.int64()),  # halving: the last rung reached (len(rungs): the full budget)
    ]
)


def _write_table(path: Path, table: pa.Table) -> None:
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def steps_table(spec: RunSpec, traj: Trajectory) -> pa.Table:
    from sgdbench.metrics import per_step_columns

    cols = per_step_columns(spec, traj.steps)
    return pa.table(
        {
            "run_id": pa.array([traj.run_id] * traj.steps, pa.string()),
            "step": cols["step"],
            "epoch": cols["epoch"],
            "samples_seen": cols["samples_seen"],
            "loss": traj.losses.astype(np.float32),
            "lr": cols["lr"],
            "time_s": traj.time_s,
        },
        schema=STEP_SCHEMA,
    )


def evals_table(spec: RunSpec, traj: Trajectory) -> pa.Table:
    from sgdbench.metrics import samples_after

    step = np.asarray(traj.evals["step"], dtype=np.int64)
    data: dict[str, Any] = {
        "run_id": pa.array([traj.run_id] * len(step), pa.string()),
        "step": step,
        "epoch": step / spec.steps_per_epoch,
        "samples_seen": np.asarray(samples_after(spec, step), dtype=np.int64),
    }
    for col in EVAL_COLUMNS[1:]:
        data[col] = np.asarray(traj.evals[col], dtype=np.float64)
    return pa.table(data, schema=EVAL_SCHEMA)


def run_row(spec: RunSpec, traj: Trajectory, git_sha: str | None) -> dict[str, Any]:
    """One runs.parquet row for a finished (or failed, or skipped) run."""
    from sgdbench.metrics import summarize

    info = traj.info
    return {
        "run_id": traj.run_id,
        "name": spec.name,
        "problem": spec.problem,
        "optimizer": spec.optimizer,
        "optimizer_kwargs": json.dumps(spec.optimizer_kwargs),
        "lr": spec.lr,
        "batch_size": spec.batch_size,
        "device": spec.device,
        "seed": spec.seed,
        "engine": spec.engine,
        "status": traj.status,
        "message": traj.message,
        **summarize(spec, traj),
        "torch_version": info.get("torch_version"),
        "device_name": info.get("device_name"),
        "threads": info.get("threads"),
        "git_sha": git_sha,
        "started_at": traj.started_at,
        "config_id": spec.config_id,
        "optimizer_class": spec.optimizer_class,
        "optimizer_impl": info.get("optimizer_impl"),
        "full_batch": spec.full_batch,
        "schedule": json.dumps(spec.schedule),
        "target_loss": spec.target_loss,
        "deterministic": spec.deterministic,
        "problem_kwargs": json.dumps(spec.problem_kwargs),
        "axes": json.dumps(spec.axes),
        "spec": spec.to_json(),
        "schema_version": SCHEMA_VERSION,
        "resumed_from_step": info.get("resumed_from_step"),
        "group_id": info.get("group_id"),
        "group_size": info.get("group_size"),
        "group_train_time_s": info.get("group_train_time_s"),
        "search": spec.search,
        "trial": spec.trial,
        "rung": info.get("rung"),
    }


def _rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=RUN_SCHEMA)


class ResultsStore:
    """A results folder. Open it once per command; it keeps runs.parquet in memory and rewrites
    it atomically after each committed run."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._rows: dict[str, dict[str, Any]] | None = None

    @property
    def runs_path(self) -> Path:
        return self.root / RUNS_FILE

    def create(self) -> None:
        for sub in (STEPS_DIR, EVALS_DIR):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def rows(self) -> dict[str, dict[str, Any]]:
        if self._rows is None:
            self._rows = {}
            if self.runs_path.exists():
                table = pq.read_table(self.runs_path)
                self._rows = {r["run_id"]: r for r in table.to_pylist()}
        return self._rows

    def completed_ids(self) -> set[str]:
        """Runs a rerun skips: finished with a final status (failed and skipped are retried)."""
        return {rid for rid, r in self.rows().items() if r["status"] in FINAL_STATUSES}

    def write_meta(self, grid_text: str, env: dict[str, Any]) -> None:
        atomic_write_text(self.root / "grid.toml", grid_text)
        atomic_write_text(self.root / "env.json", json.dumps(env, indent=2, sort_keys=True) + "\n")

    def write_run_files(
        self, spec: RunSpec, traj: Trajectory, git_sha: str | None
    ) -> dict[str, Any]:
        """Write a run's steps, evals, log and model; return its runs.parquet row (not yet
        committed: until ``commit_rows`` these files are orphans a rerun removes)."""
        _write_table(self.root / STEPS_DIR / f"{traj.run_id}.parquet", steps_table(spec, traj))
        _write_table(self.root / EVALS_DIR / f"{traj.run_id}.parquet", evals_table(spec, traj))
        if traj.traceback:
            (self.root / LOGS_DIR).mkdir(exist_ok=True)
            atomic_write_text(self.root / LOGS_DIR / f"{traj.run_id}.log", traj.traceback)
        if traj.model_state is not None:
            import torch

            (self.root / MODELS_DIR).mkdir(exist_ok=True)
            state = traj.model_state
            atomic_write(
                self.root / MODELS_DIR / f"{traj.run_id}.pt", lambda tmp: torch.save(state, tmp)
            )
        return run_row(spec, traj, git_sha)

    def commit_rows(self, new_rows: list[dict[str, Any]]) -> None:
        """Rewrite runs.parquet with ``new_rows`` added: the commit point of those runs."""
        if not new_rows:
            return
        rows = self.rows()
        rows.update((row["run_id"], row) for row in new_rows)
        _write_table(self.runs_path, _rows_to_table(list(rows.values())))

    def forget(self, run_ids: list[str]) -> None:
        """Remove these runs' rows (``--force``): their files are orphans until recommitted."""
        rows = self.rows()
        gone = [rid for rid in run_ids if rid in rows]
        if gone:
            for rid in gone:
                del rows[rid]
            _write_table(self.runs_path, _rows_to_table(list(rows.values())))

    def clean_orphans(self) -> list[Path]:
        """Remove temporaries and step/eval files of runs that never committed."""
        known = set(self.rows())
        removed = []
        for sub in (STEPS_DIR, EVALS_DIR, "", LOGS_DIR, MODELS_DIR, "checkpoints"):
            folder = self.root / sub
            if not folder.is_dir():
                continue
            for f in folder.iterdir():
                orphan = (
                    sub in (STEPS_DIR, EVALS_DIR) and f.suffix == ".parquet" and f.stem not in known
                )
                if is_temporary(f) or orphan:
                    f.unlink(missing_ok=True)
                    removed.append(f)
        return removed
