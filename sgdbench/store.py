"""Results on disk (DESIGN §4): runs.parquet, steps/ and evals/ Parquet datasets, logs.

Every file appears atomically: written under a temporary dot-name in the same folder, fsynced,
then renamed. A run is committed when its row lands in runs.parquet, which is written after its
steps and evals files. Only the driver process writes here.

A results folder is marked by ``.sgdbench`` (see ``manifest``): the folder's problem, its current
grid version and every run id it issued. The tool deletes only what it can prove it wrote: files
named after an issued run id that never committed, and temporaries of its own files. A run that
replaces a committed row (``--force``, a retried failure) writes its files under staged names;
they take the old files' place only once its row is committed (through a small journal, so that a
kill at any point leaves either the old run or the new one).
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from sgdbench import SCHEMA_VERSION
from sgdbench.atomic import atomic_write, atomic_write_text, make_durable, temporary_target
from sgdbench.engine.trajectory import FINAL_STATUSES, Trajectory
from sgdbench.errors import UsageError
from sgdbench.spec import RunSpec
from sgdbench.store_tables import (
    CHECKPOINTS_DIR,
    EVAL_SCHEMA,
    EVALS_DIR,
    GRIDS_DIR,
    JOURNAL,
    LOGS_DIR,
    MARKER,
    MODELS_DIR,
    ROOT_FILES,
    RUN_SCHEMA,
    RUNS_FILE,
    STAGED,
    STEP_SCHEMA,
    STEPS_DIR,
    evals_table,
    read_files,
    read_schema_names,
    read_table,
    rows_to_table,
    run_row,
    steps_table,
)

# The layout, schemas and tables are re-exported: callers import them from here.
__all__ = [
    "CHECKPOINTS_DIR",
    "EVALS_DIR",
    "EVAL_SCHEMA",
    "GRIDS_DIR",
    "JOURNAL",
    "LOGS_DIR",
    "MARKER",
    "MODELS_DIR",
    "ROOT_FILES",
    "RUNS_FILE",
    "RUN_SCHEMA",
    "STAGED",
    "STEPS_DIR",
    "STEP_SCHEMA",
    "ResultsStore",
    "describe_problems",
    "evals_table",
    "grid_id",
    "grid_versions",
    "problem_identity",
    "read_files",
    "read_manifest",
    "read_schema_names",
    "read_table",
    "rows_to_table",
    "run_row",
    "steps_table",
]


def grid_id(grid_text: str) -> str:
    """A grid version: the first 12 hex characters of the sha256 of the grid file's text."""
    return hashlib.sha256(grid_text.encode()).hexdigest()[:12]


def problem_identity(spec: RunSpec) -> dict[str, Any]:
    """What makes two grids' problems the same problem (a data file counts by content)."""
    return {"name": spec.problem, "kwargs": spec.identity()["problem_kwargs"]}


def describe_problems(have: dict[str, Any], want: dict[str, Any]) -> tuple[str, str]:
    """Two problems, each as its name and the parameters where they differ."""
    keys = sorted(set(have["kwargs"]) | set(want["kwargs"]))
    differ = [k for k in keys if have["kwargs"].get(k) != want["kwargs"].get(k)]

    def one(p: dict[str, Any]) -> str:
        shown = ", ".join(f"{k}={p['kwargs'].get(k)!r}" for k in differ)
        return f"{p['name']}({shown})" if shown else p["name"]

    return one(have), one(want)


def read_manifest(root: Path) -> dict[str, Any] | None:
    """The folder's ``.sgdbench`` marker, or None when there is none."""
    path = Path(root) / MARKER
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("issued", []), list):
            raise ValueError("not an sgdbench marker")
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: unreadable results marker ({e})") from None
    return data


def grid_versions(root: Path) -> dict[str, dict[str, Any]]:
    """Every grid version that ran into the folder: grid id -> the parsed grid file."""
    folder = Path(root) / GRIDS_DIR
    out: dict[str, dict[str, Any]] = {}
    if folder.is_dir():
        for f in sorted(folder.glob("*.toml")):
            try:
                out[f.stem] = tomllib.loads(f.read_text(encoding="utf-8-sig"))
            except (OSError, ValueError) as e:
                raise UsageError(f"{f}: unreadable grid version ({e})") from None
    return out


def _write_table(path: Path, table: pa.Table, *, durable: bool = True) -> None:
    atomic_write(path, lambda tmp: pq.write_table(table, tmp), durable=durable)


def _staged(path: Path) -> Path:
    """Where a replacing run writes ``path`` until its row is committed (a dot-name, which
    Parquet dataset readers skip)."""
    return path.with_name(f".{path.name}{STAGED}")


def _run_id_of(name: str) -> str:
    """The run id a per-run file name follows from (``<run_id>.<ext>``)."""
    return name.split(".", 1)[0]


class ResultsStore:
    """A results folder. Open it once per command; it keeps runs.parquet in memory and rewrites
    it atomically after each committed run."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._rows: dict[str, dict[str, Any]] | None = None
        self._manifest: dict[str, Any] | None = None
        self._replacing: set[str] = set()  # run ids whose files are staged until commit
        self._not_durable: list[Path] = []  # run files written without fsync, synced at commit

    @property
    def runs_path(self) -> Path:
        return self.root / RUNS_FILE

    # -- what the folder is ------------------------------------------------------------------

    def check_writable(self) -> None:
        """Refuse (``UsageError``, exit 2, nothing touched) a folder that sgdbench may not write:
        a file, or a non-empty folder that is neither marked nor an older sgdbench folder."""
        if self.root.exists() and not self.root.is_dir():
            raise UsageError(f"{self.root}: results folder is a file, not a folder")
        if not self.root.is_dir() or self.manifest() is not None or self.runs_path.exists():
            return
        # A run killed before its marker was written leaves only the lock and temporaries.
        foreign = sorted(
            p.name
            for p in self.root.iterdir()
            if p.name != ".lock" and temporary_target(p) not in ROOT_FILES
        )
        if foreign:
            raise UsageError(
                f"{self.root}: not an sgdbench results folder (it holds {foreign[0]!r} and no "
                f"{MARKER}); choose an empty or new folder with --out"
            )

    def manifest(self) -> dict[str, Any] | None:
        if self._manifest is None:
            self._manifest = read_manifest(self.root)
        return self._manifest

    def issued(self) -> set[str]:
        """Run ids this folder issued: files named after them are sgdbench's. An older folder
        without a marker issued the runs it holds."""
        manifest = self.manifest()
        if manifest is None:
            return set(self.rows())
        return set(manifest.get("issued", [])) | set(self.rows())

    def folder_problem(self) -> dict[str, Any] | None:
        """The problem this folder's runs solve (from the marker, else from an older folder's
        rows); None when unknown."""
        manifest = self.manifest()
        if manifest is not None:
            return manifest.get("problem")
        problems = []
        for row in self.rows().values():
            try:
                problems.append(problem_identity(RunSpec.from_json(row["spec"])))
            except Exception:  # an older row this version cannot read: no check
                return None
        unique = {json.dumps(p, sort_keys=True, default=str) for p in problems}
        return problems[0] if len(unique) == 1 else None

    def check_problem(self, specs: list[RunSpec], allow_new_problem: bool) -> None:
        """Refuse a grid whose problem is not the folder's (exit 2) unless allowed."""
        if not specs or allow_new_problem:
            return
        have = self.folder_problem()
        want = problem_identity(specs[0])
        same = json.dumps(have, sort_keys=True, default=str) == json.dumps(
            want, sort_keys=True, default=str
        )
        if have is not None and not same:
            theirs, ours = describe_problems(have, want)
            raise UsageError(
                f"{self.root}: holds runs of problem {theirs}, this grid runs {ours}; use "
                "another --out, or --allow-new-problem to keep both here (reports show the "
                "newest grid's runs)"
            )

    def adopt(self, grid_text: str, specs: list[RunSpec]) -> str:
        """Mark the folder as this grid's (recording its version and the run ids it issues) and
        tag the rows of runs in this grid with its version. Returns the grid id."""
        gid = grid_id(grid_text)
        manifest = self.manifest() or {}
        issued = self.issued() | {s.run_id for s in specs}
        problem = problem_identity(specs[0]) if specs else manifest.get("problem")
        self._manifest = {
            "sgdbench_results": 1,
            "schema_version": SCHEMA_VERSION,
            "problem": problem,
            "current_grid": gid,
            "issued": sorted(issued),
        }
        # The marker first: from then on the folder is recognisably sgdbench's.
        atomic_write_text(
            self.root / MARKER, json.dumps(self._manifest, indent=1, default=str) + "\n"
        )
        (self.root / GRIDS_DIR).mkdir(exist_ok=True)
        version = self.root / GRIDS_DIR / f"{gid}.toml"
        if not version.exists():
            atomic_write_text(version, grid_text)
        rows = self.rows()
        retag = [rid for rid in (s.run_id for s in specs) if rid in rows]
        if any(rows[rid].get("grid_id") != gid for rid in retag):
            for rid in retag:
                rows[rid]["grid_id"] = gid
            _write_table(self.runs_path, rows_to_table(list(rows.values())))
        return gid

    # -- reading and writing runs ------------------------------------------------------------

    def create(self) -> None:
        for sub in (STEPS_DIR, EVALS_DIR):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def rows(self) -> dict[str, dict[str, Any]]:
        if self._rows is None:
            self._rows = {}
            if self.runs_path.exists():
                table = read_table(self.runs_path)
                self._rows = {r["run_id"]: r for r in table.to_pylist()}
        return self._rows

    def completed_ids(self) -> set[str]:
        """Runs a rerun skips: finished with a final status (failed and skipped are retried)."""
        return {rid for rid, r in self.rows().items() if r["status"] in FINAL_STATUSES}

    def write_meta(self, grid_text: str, env: dict[str, Any]) -> None:
        atomic_write_text(self.root / "grid.toml", grid_text)
        atomic_write_text(self.root / "env.json", json.dumps(env, indent=2, sort_keys=True) + "\n")

    def _run_paths(self, run_id: str) -> list[Path]:
        return [
            self.root / STEPS_DIR / f"{run_id}.parquet",
            self.root / EVALS_DIR / f"{run_id}.parquet",
            self.root / LOGS_DIR / f"{run_id}.log",
            self.root / MODELS_DIR / f"{run_id}.pt",
        ]

    def write_run_files(
        self, spec: RunSpec, traj: Trajectory, git_sha: str | None, grid: str | None = None
    ) -> dict[str, Any]:
        """Write a run's steps, evals, log and model; return its runs.parquet row (not yet
        committed). A run that replaces a committed row writes staged files, which replace the
        old ones when ``commit_rows`` commits the new row."""
        replacing = traj.run_id in self.rows()
        if replacing:
            self._replacing.add(traj.run_id)

        def where(path: Path) -> Path:
            return _staged(path) if replacing else path

        steps, evals, log, model = self._run_paths(traj.run_id)
        # Made durable in one go by commit_rows, before the row that refers to them.
        for path, table in (
            (where(steps), steps_table(spec, traj)),
            (where(evals), evals_table(spec, traj)),
        ):
            _write_table(path, table, durable=False)
            self._not_durable.append(path)
        if traj.traceback:
            log.parent.mkdir(exist_ok=True)
            atomic_write_text(where(log), traj.traceback)
        if traj.model_state is not None:
            import torch

            model.parent.mkdir(exist_ok=True)
            state = traj.model_state
            atomic_write(where(model), lambda tmp: torch.save(state, tmp))
        row = run_row(spec, traj, git_sha)
        row["grid_id"] = grid
        return row

    def commit_rows(self, new_rows: list[dict[str, Any]]) -> None:
        """Rewrite runs.parquet with ``new_rows`` added: the commit point of those runs.

        Rows that replace committed ones go through the journal first: once it is written the
        replacement is decided, and ``clean_orphans`` finishes it after a kill."""
        if not new_rows:
            return
        # Swap first: a run finishing meanwhile appends to the new list, and its row comes later.
        pending, self._not_durable = self._not_durable, []
        make_durable(pending)
        replacing = [row for row in new_rows if row["run_id"] in self._replacing]
        if replacing:
            _write_table(self.root / JOURNAL, rows_to_table(replacing))
        rows = self.rows()
        rows.update((row["run_id"], row) for row in new_rows)
        _write_table(self.runs_path, rows_to_table(list(rows.values())))
        if replacing:
            self._finish_replacing([row["run_id"] for row in replacing], drop_stale=True)
            (self.root / JOURNAL).unlink()
            self._replacing -= {row["run_id"] for row in replacing}

    def _finish_replacing(self, run_ids: list[str], drop_stale: bool = False) -> None:
        """Move the staged files of committed replacements over the old ones. With
        ``drop_stale``, an old log or model the new run did not write goes (it described the old
        run); recovery after a kill cannot tell that from a file already moved, and keeps it."""
        for rid in run_ids:
            for path in self._run_paths(rid):
                staged = _staged(path)
                if staged.exists():
                    os.replace(staged, path)
                elif drop_stale:
                    path.unlink(missing_ok=True)

    def recover(self) -> None:
        """Finish a replacement whose journal was written before a kill (its rows may not yet
        be in runs.parquet)."""
        journal = self.root / JOURNAL
        if not journal.exists():
            return
        new_rows = read_table(journal).to_pylist()
        rows = self.rows()
        rows.update((row["run_id"], row) for row in new_rows)
        _write_table(self.runs_path, rows_to_table(list(rows.values())))
        self._finish_replacing([row["run_id"] for row in new_rows])
        journal.unlink()

    def clean_orphans(self) -> list[Path]:
        """Remove what sgdbench wrote and never committed: files named after a run id this folder
        issued but without a row, staged files, and temporaries of its own files. Anything else
        (a user's file) stays."""
        self.recover()
        known = set(self.rows())
        issued = self.issued()
        removed = []
        per_run = {STEPS_DIR: ".parquet", EVALS_DIR: ".parquet", LOGS_DIR: ".log"}
        per_run |= {MODELS_DIR: ".pt", CHECKPOINTS_DIR: ".pt"}
        for sub in ("", GRIDS_DIR, *per_run):
            folder = self.root / sub
            if not folder.is_dir():
                continue
            for f in folder.iterdir():
                name = temporary_target(f) or f.name
                temporary = name != f.name
                staged = name.startswith(".") and name.endswith(STAGED)
                if staged:
                    name = name[1 : -len(STAGED)]
                if sub == "":
                    ours = temporary and name in ROOT_FILES
                elif sub == GRIDS_DIR:
                    ours = temporary and name.endswith(".toml")
                else:
                    ours = name.endswith(per_run[sub]) and _run_id_of(name) in issued
                    # a committed run's own file is not an orphan (its checkpoint neither:
                    # --keep-checkpoints keeps them)
                    ours = ours and (temporary or staged or _run_id_of(name) not in known)
                    ours = ours and (temporary or staged or sub in (STEPS_DIR, EVALS_DIR))
                if ours:
                    f.unlink(missing_ok=True)
                    removed.append(f)
        return removed
