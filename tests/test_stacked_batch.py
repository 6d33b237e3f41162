"""Writing a stacked group's results cheaply: tables built without ``pa.array`` (which imports
pandas, 0.8 s of CPU), the same bytes as ``pa.table`` / ``Table.from_pylist`` would give; the
throughput bootstrap computed once for members that share their timings."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sgdbench import timing
from sgdbench.engine import plan
from sgdbench.plan import load_grid
from sgdbench.runner import PendingRows
from sgdbench.spec import RunSpec
from sgdbench.store_tables import (
    EVAL_SCHEMA,
    RUN_SCHEMA,
    STEP_SCHEMA,
    read_table,
    rows_to_table,
)
from tests.helpers import cli, imported_modules

GRID = """
name = "batch"
[problem]
name = "digits"
model = "mlp"
hidden = [8]
[train]
steps = 30
eval_every = 10
[grid]
lr = [0.01, 0.1, 1e6]
seed = [0, 1]
batch_size = [16]
"""


def _same(a: pa.Table, b: pa.Table) -> None:
    """Equal schemas and values (NaN equal to NaN, -0.0 apart from 0.0)."""
    assert a.schema.equals(b.schema)
    assert repr(a.to_pylist()) == repr(b.to_pylist())


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same grid on each engine (one lr diverges: NaN and infinite values in its rows)."""
    root = tmp_path_factory.mktemp("batch")
    grid = root / "grid.toml"
    grid.write_text(GRID)
    out = {}
    for engine in ("eager", "stacked"):
        out[engine] = root / engine
        result = cli("run", grid, "--engine", engine, "--out", out[engine], "--quiet")
        assert result.exit_code == 0, result
    return out


@pytest.mark.parametrize("engine", ["eager", "stacked"])
def test_tables_match_pyarrow_from_python(results: dict[str, Path], engine: str) -> None:
    folder = results[engine]
    rows = read_table(folder / "runs.parquet").to_pylist()
    assert {r["status"] for r in rows} >= {"ok", "diverged"}
    _same(rows_to_table(rows), pa.Table.from_pylist(rows, schema=RUN_SCHEMA))
    for sub, schema in (("steps", STEP_SCHEMA), ("evals", EVAL_SCHEMA)):
        for row in rows:
            written = pq.read_table(folder / sub / f"{row['run_id']}.parquet")
            rebuilt = pa.table(written.to_pydict(), schema=schema)
            _same(written, rebuilt)
            if sub == "steps":
                assert written.num_rows == row["steps"] > 0


def test_rows_to_table_keeps_every_value_exactly() -> None:
    """Floats round-trip bit for bit (NaN, infinities, subnormals, 17 digits), ints past 2**53,
    numpy scalars, text with quotes and newlines, nulls and missing keys."""
    row = {c: None for c in RUN_SCHEMA.names}
    row |= {
        "run_id": "r1",
        "message": 'line "one"\nline two \u00e9 \u2028',
        "lr": 0.1 + 0.2,
        "final_loss": float("nan"),
        "best_loss": float("-inf"),
        "steps_per_s": float("inf"),
        "time_to_target_s": 5e-324,
        "train_time_s": np.float64(1 / 3),
        "steps": np.int64(2**62 + 1),
        "seed": 7,
        "full_batch": np.bool_(True),
        "window_s": np.array([1.5, math.nan]),
        "window_steps": [2**60, 3],
        "extra_key_not_in_schema": "dropped",
    }
    other = {"run_id": "r2", "status": "ok", "epochs": 3}  # the rest missing: null
    table = rows_to_table([row, other])
    expected = {k: v for k, v in row.items() if k in RUN_SCHEMA.names}
    expected = json.loads(json.dumps(expected, default=lambda v: v.tolist()))
    _same(table, pa.Table.from_pylist([expected, other], schema=RUN_SCHEMA))
    assert table.column("steps")[0].as_py() == 2**62 + 1
    assert table.column("time_to_target_s")[0].as_py() == 5e-324
    assert table.column("lr")[0].as_py() == 0.1 + 0.2
    assert table.column("epochs")[1].as_py() == 3.0
    assert rows_to_table([]).schema.equals(RUN_SCHEMA)
    with pytest.raises(TypeError, match="cannot store"):
        rows_to_table([{"run_id": "r3", "message": object()}])


@pytest.mark.slow  # a fresh interpreter that imports torch and trains
def test_run_does_not_import_pandas(tmp_path: Path) -> None:
    """A stacked sweep (training, writing 6 runs, the closing summary) never imports pandas."""
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID)
    args = ["run", grid, "--engine", "stacked", "--out", tmp_path / "r"]
    code, modules = imported_modules(tmp_path, *args)
    assert code == 0
    assert "pandas" not in modules


def test_rate_cache_gives_each_timing_its_own_rate() -> None:
    """Cached rates are the computed ones, and distinct timings never share a cache entry."""
    timing._RATES.clear()
    rng = np.random.default_rng(0)
    cases = []
    for n in (50, 50, 70):
        seconds = rng.uniform(0.01, 0.02, n)
        cases.append([timing.Windows.of(np.full(n, 10.0), seconds)])
    cases.append([timing.Windows.of(np.full(50, 11.0), cases[0][0].seconds)])  # other work
    cases.append(cases[0] + cases[1])  # two units: another bootstrap
    rates = [timing.rate(units) for units in cases]
    assert len(timing._RATES) == len(cases)
    assert len(set(rates)) == len(cases)
    for units, r in zip(cases, rates, strict=True):
        assert timing.rate(units) == r == timing._rate(units)
    assert len(timing._RATES) == len(cases)


def test_stacked_members_share_one_bootstrap(results: dict[str, Path]) -> None:
    """Members alive for the whole run share the group's windows: one interval for all."""
    rows = read_table(results["stacked"] / "runs.parquet").to_pylist()
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) >= 2
    assert len({(tuple(r["window_s"]), r["steps_per_s_lo"], r["steps_per_s_hi"]) for r in ok}) == 1


def test_digits_read_without_sklearn_as_load_digits_reads_them() -> None:
    """The digits problem reads sklearn's bundled file itself (no sklearn or pandas import):
    the same float64 features and int labels as ``load_digits``, bit for bit."""
    from sklearn.datasets import load_digits

    from sgdbench.problems.builtin import _digits_arrays

    features, target = _digits_arrays()
    bunch = load_digits()
    assert features.dtype == bunch.data.dtype and target.dtype == bunch.target.dtype
    assert features.tobytes() == bunch.data.tobytes()
    assert target.tobytes() == bunch.target.tobytes()


class _CountingStore:
    """What PendingRows calls on a store: records each commit's run ids."""

    def __init__(self) -> None:
        self.commits: list[list[str]] = []

    def commit_rows(self, rows: list[dict[str, str]]) -> None:
        if rows:
            self.commits.append([r["run_id"] for r in rows])


def _units(tmp_path: Path, engine: str) -> list[list[RunSpec]]:
    grid = tmp_path / f"{engine}.toml"
    grid.write_text(GRID)
    return plan(load_grid(grid, engine=engine).runs)


def test_a_stacked_groups_rows_are_committed_in_one_batch(tmp_path: Path) -> None:
    """However many rows arrive before the timer or ``max_rows`` would commit, a stacked group's
    rows go into runs.parquet in one commit; eager runs commit as before."""
    (group,) = _units(tmp_path, "stacked")
    eager_units = _units(tmp_path, "eager")
    assert len(group) == 6 and len(eager_units) == 6
    store = _CountingStore()
    pending = PendingRows(store, every_s=3600, max_rows=2, units=[group, *eager_units])
    for spec in group[:-1]:  # past max_rows, but the group is not complete: nothing yet
        pending.add(spec, {"run_id": spec.run_id})
    assert store.commits == []
    pending.add(group[-1], {"run_id": group[-1].run_id})
    assert store.commits == [[s.run_id for s in group]]
    for (spec,) in eager_units[:2]:  # eager runs: max_rows as usual
        pending.add(spec, {"run_id": spec.run_id})
    assert store.commits[-1] == [eager_units[0][0].run_id, eager_units[1][0].run_id]


def test_close_commits_a_stacked_groups_finished_members(tmp_path: Path) -> None:
    """At the end or on interrupt, what a stacked group wrote is committed (its members are
    independent runs), unlike a halving unit's part."""
    (group,) = _units(tmp_path, "stacked")
    store = _CountingStore()
    pending = PendingRows(store, every_s=3600, max_rows=256, units=[group])
    for spec in group[:3]:
        pending.add(spec, {"run_id": spec.run_id})
    pending.flush()
    assert store.commits == []
    pending.close()
    assert store.commits == [[s.run_id for s in group[:3]]]
    pending.close()
    assert len(store.commits) == 1
