"""How long ``sgdbench report`` takes on a big results folder (DESIGN goal: 10 million step rows
in under 5 s).

The folder is synthetic but has the real layout and schemas: ``RUNS`` runs of ``STEPS`` steps
each (steps/<run_id>.parquet), 100 evaluations per run, and runs.parquet with a real RunSpec per
run. It is built once per session in a temporary folder. The default size is the goal's, 10
million step rows; ``SGDBENCH_BENCH_STEP_ROWS=1000000`` makes a quicker one.

    pytest benchmarks/test_report_speed.py --benchmark-only
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sgdbench import SCHEMA_VERSION, report
from sgdbench.spec import RunSpec
from sgdbench.store import EVAL_SCHEMA, RUN_SCHEMA, STEP_SCHEMA

STEP_ROWS = int(os.environ.get("SGDBENCH_BENCH_STEP_ROWS", 10_000_000))
RUNS = 1000
STEPS = STEP_ROWS // RUNS
EVALS = 100
OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
LRS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0)
SEEDS = 25  # 4 optimizers x 10 lrs x 25 seeds = 1000 runs


def _spec(optimizer: str, lr: float, seed: int) -> RunSpec:
    return RunSpec(
        problem="linear",
        problem_kwargs={"n_samples": 1000, "n_features": 10},
        optimizer=optimizer,
        optimizer_class="SGD",
        optimizer_kwargs={},
        lr=lr,
        batch_size=32,
        full_batch=False,
        device="cpu",
        seed=seed,
        steps=STEPS,
        epochs=None,
        steps_per_epoch=32,
        n_samples=1000,
        shuffle=True,
        init="default",
        target_loss=0.05,
        eval_every=max(1, STEPS // EVALS),
        max_seconds=None,
        schedule={"name": "constant"},
        divergence_factor=1e4,
        deterministic=True,
        optimizer_impl="auto",
        stop_at_target=False,
        threads=None,
        name="bench",
        axes={"optimizer": optimizer, "lr": lr, "seed": seed},
    )


@pytest.fixture(scope="session")
def big_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bench") / "big"
    (root / "steps").mkdir(parents=True)
    (root / "evals").mkdir()
    rng = np.random.default_rng(0)
    step = np.arange(STEPS, dtype=np.int64)
    eval_step = np.linspace(0, STEPS, EVALS).astype(np.int64)
    rows = []
    for optimizer in OPTIMIZERS:
        for lr in LRS:
            for seed in range(SEEDS):
                spec = _spec(optimizer, lr, seed)
                rid = spec.run_id
                rate = lr * (1 + 0.1 * rng.standard_normal())
                loss = 10 * np.exp(-rate * step / 50) + 0.01
                pq.write_table(
                    pa.table(
                        {
                            "run_id": pa.array([rid] * STEPS, pa.string()),
                            "step": step,
                            "epoch": (step // 32).astype(np.int32),
                            "samples_seen": (step + 1) * 32,
                            "loss": loss.astype(np.float32),
                            "lr": np.full(STEPS, lr),
                            "time_s": step * 1e-4,
                        },
                        schema=STEP_SCHEMA,
                    ),
                    root / "steps" / f"{rid}.parquet",
                )
                eval_loss = 10 * np.exp(-rate * eval_step / 50) + 0.01
                pq.write_table(
                    pa.table(
                        {
                            "run_id": pa.array([rid] * EVALS, pa.string()),
                            "step": eval_step,
                            "epoch": eval_step / 32,
                            "samples_seen": eval_step * 32,
                            "time_s": eval_step * 1e-4,
                            "train_loss": eval_loss,
                            "train_accuracy": np.full(EVALS, np.nan),
                            "val_loss": np.full(EVALS, np.nan),
                            "val_accuracy": np.full(EVALS, np.nan),
                        },
                        schema=EVAL_SCHEMA,
                    ),
                    root / "evals" / f"{rid}.parquet",
                )
                hit = np.flatnonzero(eval_loss <= 0.05)
                diverged = lr >= 3.0 and seed % 2 == 0
                rows.append(
                    {
                        "run_id": rid,
                        "name": "bench",
                        "problem": "linear",
                        "optimizer": optimizer,
                        "optimizer_kwargs": "{}",
                        "lr": lr,
                        "batch_size": 32,
                        "device": "cpu",
                        "seed": seed,
                        "engine": "eager",
                        "status": "diverged" if diverged else "ok",
                        "message": "loss above 10000 x the first" if diverged else "",
                        "steps": STEPS,
                        "final_loss": float(loss[-1]),
                        "best_loss": float(loss.min()),
                        "steps_to_target": int(eval_step[hit[0]]) if len(hit) else None,
                        "samples_to_target": int(eval_step[hit[0]] * 32) if len(hit) else None,
                        "time_to_target_s": float(eval_step[hit[0]] * 1e-4) if len(hit) else None,
                        "steps_per_s": 1e4 * (1 + 0.05 * rng.standard_normal()),
                        "samples_per_s": 3.2e5,
                        "train_time_s": STEPS * 1e-4,
                        "target_loss": 0.05,
                        "config_id": spec.config_id,
                        "axes": json.dumps(spec.axes),
                        "spec": spec.to_json(),
                        "schema_version": SCHEMA_VERSION,
                    }
                )
    pq.write_table(pa.Table.from_pylist(rows, schema=RUN_SCHEMA), root / "runs.parquet")
    return root


def test_report_table(benchmark, big_results: Path) -> None:
    text = benchmark(report.render, big_results)
    assert "40 configuration(s)" in text


def test_report_json_best(benchmark, big_results: Path) -> None:
    text = benchmark(report.render, big_results, fmt="json", best=True)
    assert json.loads(text)["configurations"]


def test_report_target_loss(benchmark, big_results: Path) -> None:
    """--target-loss reads the evaluations (100 per run) and recomputes every run. The target
    is below every run's floor (0.01): a run that crosses it between two evaluations would be
    retrained for its exact step, a cost ``test_exact_target_cost.py`` measures."""
    text = benchmark(report.render, big_results, fmt="csv", target_loss=0.005)
    assert text.count("\n") == 41
