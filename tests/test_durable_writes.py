"""Run files written without fsync are made durable before the row that refers to them."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from sgdbench import atomic


def test_make_durable_fsyncs_each_file_then_folder_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(
        os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd))
    )
    paths = [tmp_path / f"f{i}.parquet" for i in range(3)]
    for p in paths:
        atomic.atomic_write(p, lambda tmp: tmp.write_bytes(b"x"), durable=False)
    assert synced == []  # nothing synced at write time
    atomic.make_durable(paths)
    assert synced == [*map(str, paths), str(tmp_path)]


def test_make_durable_syncs_once_for_a_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"sync": 0, "fsync": 0}
    monkeypatch.setattr(os, "sync", lambda: calls.__setitem__("sync", calls["sync"] + 1))
    monkeypatch.setattr(os, "fsync", lambda fd: calls.__setitem__("fsync", calls["fsync"] + 1))
    paths = [tmp_path / f"f{i}" for i in range(atomic.SYNC_ALL_FROM)]
    for p in paths:
        atomic.atomic_write(p, lambda tmp: tmp.write_bytes(b"x"), durable=False)
    atomic.make_durable(paths)
    assert calls == {"sync": 1, "fsync": 0}


def test_commit_rows_makes_run_files_durable_before_runs_parquet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sgdbench import store as store_mod

    order: list[str] = []
    monkeypatch.setattr(
        store_mod, "make_durable", lambda paths: order.append(f"durable {len(paths)}")
    )
    real_write = store_mod._write_table

    def write(path: Path, table, *, durable: bool = True) -> None:
        order.append(f"write {path.name} durable={durable}")
        real_write(path, table, durable=durable)

    monkeypatch.setattr(store_mod, "_write_table", write)
    store = store_mod.ResultsStore(tmp_path)
    store._not_durable = [tmp_path / "steps" / "a.parquet", tmp_path / "evals" / "a.parquet"]
    row = {c: None for c in store_mod.RUN_SCHEMA.names}
    row["run_id"] = "a"
    # A row of Nones may not satisfy every column; the order of the calls is what counts.
    with contextlib.suppress(Exception):
        store.commit_rows([row])
    assert order[0] == "durable 2"
    assert store._not_durable == []
