"""How long ``sgdbench plot --kind curves`` takes on a run of a million steps (goal: under 3 s;
53 s before the per-column quantiles were vectorized).

The folder is synthetic with the real layout: ``SEEDS`` runs of one configuration, ``STEPS``
steps each, 100 evaluations per run. The baseline is reading the same step files with
``pandas.read_parquet`` in the same session: the plot's cost is reported as a multiple of it
(``benchmark.extra_info["times_read"]``), which a loaded machine slows alike.

    pytest benchmarks/test_plot_speed.py --benchmark-only
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sgdbench import SCHEMA_VERSION, plot
from sgdbench.spec import RunSpec
from sgdbench.store import EVAL_SCHEMA, RUN_SCHEMA, STEP_SCHEMA

STEPS = int(os.environ.get("SGDBENCH_BENCH_PLOT_STEPS", 1_000_000))
SEEDS = 3
EVALS = 100
TIMES: dict[str, float] = {}


def _spec(seed: int) -> RunSpec:
    return RunSpec(
        problem="linear",
        problem_kwargs={"n_samples": 1000, "n_features": 10},
        optimizer="sgd",
        optimizer_class="SGD",
        optimizer_kwargs={},
        lr=0.01,
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
        name="long",
        axes={"seed": seed},
    )


@pytest.fixture(scope="module")
def long_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bench") / "long"
    (root / "steps").mkdir(parents=True)
    (root / "evals").mkdir()
    rng = np.random.default_rng(0)
    step = np.arange(STEPS, dtype=np.int64)
    eval_step = np.linspace(0, STEPS, EVALS).astype(np.int64)
    rows = []
    for seed in range(SEEDS):
        spec = _spec(seed)
        rid = spec.run_id
        noise = np.exp(0.3 * rng.standard_normal(STEPS))
        loss = (10 * np.exp(-step / 2e5) + 0.01) * noise
        steps = {
            "run_id": pa.array([rid] * STEPS, pa.string()),
            "step": step,
            "epoch": (step // 32).astype(np.int32),
            "samples_seen": (step + 1) * 32,
            "loss": loss.astype(np.float32),
            "lr": np.full(STEPS, 0.01),
            "time_s": step * 1e-4,
        }
        pq.write_table(pa.table(steps, schema=STEP_SCHEMA), root / "steps" / f"{rid}.parquet")
        evals = {
            "run_id": pa.array([rid] * EVALS, pa.string()),
            "step": eval_step,
            "epoch": eval_step / 32,
            "samples_seen": eval_step * 32,
            "time_s": eval_step * 1e-4,
            "train_loss": 10 * np.exp(-eval_step / 2e5) + 0.01,
            "train_accuracy": np.full(EVALS, np.nan),
            "val_loss": np.full(EVALS, np.nan),
            "val_accuracy": np.full(EVALS, np.nan),
        }
        pq.write_table(pa.table(evals, schema=EVAL_SCHEMA), root / "evals" / f"{rid}.parquet")
        rows.append(
            {
                "run_id": rid,
                "name": "long",
                "problem": "linear",
                "optimizer": "sgd",
                "optimizer_kwargs": "{}",
                "lr": 0.01,
                "batch_size": 32,
                "device": "cpu",
                "seed": seed,
                "engine": "eager",
                "status": "ok",
                "message": "",
                "steps": STEPS,
                "final_loss": float(loss[-1]),
                "best_loss": float(loss.min()),
                "steps_per_s": 1e4,
                "samples_per_s": 3.2e5,
                "train_time_s": STEPS * 1e-4,
                "target_loss": 0.05,
                "full_batch": False,
                "config_id": spec.config_id,
                "axes": json.dumps(spec.axes),
                "spec": spec.to_json(),
                "schema_version": SCHEMA_VERSION,
            }
        )
    pq.write_table(pa.Table.from_pylist(rows, schema=RUN_SCHEMA), root / "runs.parquet")
    return root


def test_read_steps_baseline(benchmark, long_run: Path) -> None:
    """The floor: reading every step of the folder into pandas."""
    frame = benchmark.pedantic(
        pd.read_parquet, args=(long_run / "steps",), rounds=3, iterations=1, warmup_rounds=1
    )
    assert len(frame) == SEEDS * STEPS
    TIMES["read"] = benchmark.stats.stats.mean


@pytest.mark.parametrize("x", ["step", "time"])
def test_plot_curves(benchmark, long_run: Path, tmp_path: Path, x: str) -> None:
    out = tmp_path / "curves.png"
    path = benchmark.pedantic(
        plot.plot, args=(long_run,), kwargs={"kind": "curves", "out": out, "x": x}, rounds=3
    )
    assert path.stat().st_size > 10_000
    if "read" in TIMES:
        benchmark.extra_info["times_read"] = benchmark.stats.stats.mean / TIMES["read"]
        print(f"\nplot --kind curves --x {x}: {benchmark.extra_info['times_read']:.1f}x reading")
