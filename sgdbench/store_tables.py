"""A results folder's layout and Parquet tables (DESIGN §4): file and folder names, the schemas
of runs.parquet, steps/ and evals/, reading them (a corrupt file is named), and building a run's
tables and runs.parquet row. Writing them, atomically and in order, is ``store``'s job.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sgdbench import SCHEMA_VERSION
from sgdbench.engine.trajectory import EVAL_COLUMNS, Trajectory
from sgdbench.errors import UsageError
from sgdbench.spec import RunSpec

RUNS_FILE = "runs.parquet"
STEPS_DIR = "steps"
EVALS_DIR = "evals"
LOGS_DIR = "logs"
MODELS_DIR = "models"
CHECKPOINTS_DIR = "checkpoints"
GRIDS_DIR = "grids"
MARKER = ".sgdbench"
JOURNAL = ".sgdbench.commit.parquet"
STAGED = ".staged"
# Files sgdbench writes at the top of a results folder (and nothing else lives there).
ROOT_FILES = (RUNS_FILE, "grid.toml", "env.json", MARKER, JOURNAL, ".lock")

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
        # the grid version (see ``grid_id``) the run last belonged to; null in older folders
        ("grid_id", pa.string()),
        # how the run was chosen ([search]): grid | random | sobol | halton | halving, the trial
        ("search", pa.string()),
        ("trial", pa.int64()),
        ("rung", pa.int64()),  # halving: the last rung reached (len(rungs): the full budget)
        # throughput intervals (see sgdbench.timing), and the timed windows they come from:
        # per steady-state window its steps, samples, training seconds, CPU seconds (NaN on
        # CUDA), repeat (0-based) and the machine-speed probe's CPU seconds after it (NaN:
        # no probe then; sgdbench.engine.probe)
        ("steps_per_s_lo", pa.float64()),
        ("steps_per_s_hi", pa.float64()),
        ("samples_per_s_lo", pa.float64()),
        ("samples_per_s_hi", pa.float64()),
        ("repeats", pa.int64()),
        ("window_steps", pa.list_(pa.int64())),
        ("window_samples", pa.list_(pa.int64())),
        ("window_s", pa.list_(pa.float64())),
        ("window_cpu_s", pa.list_(pa.float64())),
        ("window_repeat", pa.list_(pa.int64())),
        ("window_probe_s", pa.list_(pa.float64())),
    ]
)


def read_table(path: Path, columns: list[str] | None = None) -> pa.Table:
    """A results Parquet file, or one ``UsageError`` line naming it when it is corrupt or
    truncated (exit 2; nothing is written)."""
    if columns is None:  # one file: no pyarrow.dataset (and the pandas it imports, 0.8 s)
        try:
            with pq.ParquetFile(path) as f:
                return f.read()
        except (pa.ArrowException, OSError):
            pass  # pq.read_table names the problem, as it always has
    try:
        return pq.read_table(path, columns=columns)
    except (pa.ArrowException, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"{path}: unreadable results file ({first})") from None


def read_schema_names(path: Path) -> list[str]:
    """Column names of a results Parquet file (``UsageError`` when it is unreadable)."""
    try:
        return list(pq.read_schema(path).names)
    except (pa.ArrowException, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"{path}: unreadable results file ({first})") from None


def read_files(paths: list[Path], columns: list[str]) -> pa.Table:
    """Several per-run files (steps or evals) as one table; a corrupt one is named."""
    import pyarrow.dataset as ds

    if not paths:
        return pa.table({c: pa.array([], pa.null()) for c in columns})
    try:
        return ds.dataset([str(p) for p in paths], format="parquet").to_table(columns=columns)
    except (pa.ArrowException, OSError):
        for p in paths:  # find the file to name
            read_table(p, columns)
        raise


# ``pa.array`` (and so ``pa.table`` of numpy columns, ``Table.from_pylist``) imports pandas on
# its first call, 0.8 s of CPU that a ``sgdbench run`` otherwise never needs: the tables a run
# writes are built from numpy buffers and (runs.parquet) Arrow's JSON reader instead.
_NUMPY_TYPES = {
    pa.int32(): np.int32,
    pa.int64(): np.int64,
    pa.float32(): np.float32,
    pa.float64(): np.float64,
}


def _numbers(values: Any, type_: pa.DataType) -> pa.Array:
    """A numeric column from a numpy array (or sequence), as ``pa.array`` would build it."""
    data = np.ascontiguousarray(values, dtype=_NUMPY_TYPES[type_])
    return pa.Array.from_buffers(type_, len(data), [None, pa.py_buffer(data)])


def _repeated(text: str, n: int) -> pa.Array:
    """A string column holding ``text`` ``n`` times."""
    raw = text.encode()
    offsets = np.arange(n + 1, dtype=np.int32) * len(raw)
    return pa.Array.from_buffers(
        pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(raw * n)]
    )


def _table(columns: dict[str, Any], schema: pa.Schema) -> pa.Table:
    arrays = [
        columns[f.name] if f.name == "run_id" else _numbers(columns[f.name], f.type) for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def steps_table(spec: RunSpec, traj: Trajectory) -> pa.Table:
    from sgdbench.metrics import per_step_columns

    cols = per_step_columns(spec, traj.steps)
    return _table(
        {
            "run_id": _repeated(traj.run_id, traj.steps),
            "step": cols["step"],
            "epoch": cols["epoch"],
            "samples_seen": cols["samples_seen"],
            "loss": traj.losses,
            "lr": cols["lr"],
            "time_s": traj.time_s,
        },
        STEP_SCHEMA,
    )


def evals_table(spec: RunSpec, traj: Trajectory) -> pa.Table:
    from sgdbench.metrics import samples_after

    step = np.asarray(traj.evals["step"], dtype=np.int64)
    data: dict[str, Any] = {
        "run_id": _repeated(traj.run_id, len(step)),
        "step": step,
        "epoch": step / spec.steps_per_epoch,
        "samples_seen": np.asarray(samples_after(spec, step), dtype=np.int64),
    }
    for col in EVAL_COLUMNS[1:]:
        data[col] = np.asarray(traj.evals[col], dtype=np.float64)
    return _table(data, EVAL_SCHEMA)


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


def _json_value(value: Any) -> Any:
    """numpy scalars and arrays in a row, for ``json.dumps``."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in runs.parquet")


def rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    """runs.parquet rows as a table of ``RUN_SCHEMA`` (``Table.from_pylist`` would import pandas:
    the rows go through Arrow's JSON reader, which parses floats exactly, NaN and infinities
    included)."""
    import pyarrow.json as pj

    if not rows:
        return RUN_SCHEMA.empty_table()
    data = "\n".join(json.dumps(row, default=_json_value) for row in rows).encode()
    return pj.read_json(
        pa.BufferReader(data),
        read_options=pj.ReadOptions(use_threads=False, block_size=len(data) + 1),
        parse_options=pj.ParseOptions(
            explicit_schema=RUN_SCHEMA, unexpected_field_behavior="ignore"
        ),
    )
