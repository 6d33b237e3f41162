"""What one run is: the frozen ``RunSpec``, its identity and run id, and a loaded ``Grid``.

A leaf of the package (it imports only ``sgdbench`` itself and ``limits``): every other module may
use it. Reading and validating grid files is ``gridfile`` and ``schema``; expanding them
``expand``; turning them into runs (problems built, engines and stacked groups chosen) ``plan``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sgdbench import SCHEMA_VERSION
from sgdbench.limits import (  # re-exported: the limits of a spec
    MAX_DEPTH,
    MAX_NAME_LENGTH,
    MAX_REPEAT,
    MAX_RUNS,
    MAX_SECONDS,
    MAX_STEPS,
    MAX_THREADS,
)

if TYPE_CHECKING:
    from sgdbench.search import SearchPlan

__all__ = [
    "ENGINES",
    "ENGINE_CHOICES",
    "MAX_DEPTH",
    "MAX_NAME_LENGTH",
    "MAX_REPEAT",
    "MAX_RUNS",
    "MAX_SECONDS",
    "MAX_STEPS",
    "MAX_THREADS",
    "Grid",
    "RunSpec",
    "data_identity",
    "digest",
]

ENGINES = ("eager", "stacked")
ENGINE_CHOICES = ("auto", *ENGINES)  # what a grid and --engine accept; "auto" resolves per run


@dataclass(frozen=True)
class RunSpec:
    """A fully resolved run. ``run_id`` hashes every field except ``name``, ``axes``,
    ``search_path``, ``search`` and ``trial`` (which say where the run came from, not what it
    computes) and how it is kept (checkpoints, saved model)."""

    problem: str
    problem_kwargs: dict[str, Any]
    optimizer: str
    optimizer_class: str
    optimizer_kwargs: dict[str, Any]
    lr: float
    batch_size: int
    full_batch: bool
    device: str
    seed: int
    steps: int
    epochs: int | None
    steps_per_epoch: int
    n_samples: int
    shuffle: bool
    init: str | list[float]
    target_loss: float | None
    eval_every: int
    max_seconds: float | None
    schedule: dict[str, Any]
    divergence_factor: float
    deterministic: bool
    optimizer_impl: str
    stop_at_target: bool
    threads: int | str  # a count, or "auto"
    early_stopping_patience: int = 0
    engine: str = "eager"
    # Successive halving ({"eta": .., "rungs": [..]}): a run may stop at a rung as "pruned".
    halving: dict[str, Any] | None = None
    # Where the run came from and how it is kept, not what it computes: not part of run_id.
    checkpoint_every: int = field(default=0, compare=False)
    keep_checkpoints: bool = field(default=False, compare=False)
    save_model: bool = field(default=False, compare=False)
    repeat: int = field(default=1, compare=False)  # a timing choice: the losses are the same
    name: str = field(default="", compare=False)
    axes: dict[str, Any] = field(default_factory=dict, compare=False)
    search_path: str | None = field(default=None, compare=False)
    search: str = field(default="grid", compare=False)  # how it was chosen: grid | random | ...
    trial: int | None = field(default=None, compare=False)  # which sampled trial, if any
    checkpoint_dir: str | None = field(default=None, compare=False)  # set by the runner
    # Runs with equal group_id can train together as one stacked model; the plan sets it
    # (``plan.group_id``), as it is a fact about the stacked engine, not about the run.
    group_id: str = field(default="", compare=False)

    _NOT_HASHED = (
        "checkpoint_every",
        "keep_checkpoints",
        "save_model",
        "repeat",
        "name",
        "axes",
        "search_path",
        "search",
        "trial",
        "checkpoint_dir",
        "group_id",
    )

    def identity(self) -> dict[str, Any]:
        """The fields that define what the run computes. A data file counts by its content,
        not its location: moving a project keeps its run ids, editing the data changes them."""
        # asdict's deep copy, for the JSON values a spec holds, at a tenth of its cost.
        d = {name: _copy(getattr(self, name)) for name in _hashed_fields()}
        if d["halving"] is None:
            del d["halving"]  # plain runs keep the ids they had before halving existed
        path = d["problem_kwargs"].get("path")
        if self.problem == "file" and isinstance(path, str):
            d["problem_kwargs"] = {**d["problem_kwargs"], "path": data_identity(path)}
        return d

    @functools.cached_property
    def run_id(self) -> str:
        """The digest of ``identity`` (cached: a spec is frozen)."""
        return digest({**self.identity(), "schema_version": SCHEMA_VERSION})

    @property
    def config_id(self) -> str:
        """Like ``run_id`` but without the seed: runs that differ only in seed share it."""
        d = self.identity()
        d.pop("seed")
        return digest({**d, "schema_version": SCHEMA_VERSION})

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunSpec:
        d = json.loads(text)
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


@functools.cache
def _hashed_fields() -> tuple[str, ...]:
    return tuple(f.name for f in fields(RunSpec) if f.name not in RunSpec._NOT_HASHED)


def _copy(value: Any) -> Any:
    """A copy of a JSON-like value (dicts, lists, tuples of plain values), as ``asdict``."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_copy(v) for v in value)
    return value


def data_identity(path: str) -> str:
    """``sha256:<hex>`` of a data file's bytes (cached while its size and mtime stay put)."""
    try:
        st = os.stat(path)
    except OSError:
        return path  # not here (a remote worker without the file): its name is all we know
    return _file_sha256(path, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=64)
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            hasher.update(block)
    return f"sha256:{hasher.hexdigest()}"


def digest(d: dict[str, Any]) -> str:
    """First 12 hex characters of the sha256 of canonical JSON: run, config and group ids."""
    canonical = json.dumps(d, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Grid:
    """A loaded grid: its name, source text and expanded runs."""

    name: str
    path: Path
    text: str
    runs: list[RunSpec]
    axes: list[str]  # keys that vary across runs, in grid order
    notes: list[str] = field(default_factory=list)  # e.g. why runs fall back to eager
    # How the configurations were chosen ([search]); the plan always sets it.
    search: SearchPlan = field(kw_only=True)
