"""Grid file -> validated ``RunSpec``s.

``load_grid`` reads the TOML, checks every key (unknown keys are errors), expands ``[grid]`` as a
cartesian product, applies ``[[exclude]]`` then ``[[include]]`` with GitHub-Actions matrix
semantics, and resolves each combination into a frozen, picklable ``RunSpec``. Every error is a
``GridError`` naming the file and the dotted key.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import os
import re
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from sgdbench import SCHEMA_VERSION
from sgdbench.errors import GridError, KeyedError, did_you_mean
from sgdbench.problems.registry import FLOAT32_MAX, MAX_SEED

TOP_KEYS = ("name", "description", "problem", "train", "grid", "optimizers", "exclude", "include")
FIXED_AXES = ("optimizer", "lr", "batch_size", "device", "seed", "schedule")
ENGINES = ("eager", "stacked")
ENGINE_CHOICES = ("auto", *ENGINES)  # what load_grid accepts; "auto" resolves per run

# [train] keys: default and help (shown by the README and error messages).
TRAIN_KEYS: dict[str, tuple[Any, str]] = {
    "epochs": (None, "passes over the training data (exactly one of epochs / steps)"),
    "steps": (None, "number of optimizer steps (exactly one of epochs / steps)"),
    "shuffle": (True, "reshuffle every epoch (false: file order every epoch)"),
    "init": ("default", '"default" (seeded torch init), "zeros", or a flat list of numbers'),
    "target_loss": (None, "full-data training loss that counts as converged"),
    "eval_every": (None, "steps between full-data evaluations; 0: only at the end"),
    "max_seconds": (None, "training-clock budget per run, in seconds"),
    "schedule": ("constant", 'lr schedule: a name or {name = "step", step_size = .., gamma = ..}'),
    "divergence_factor": (1e4, "diverged when a loss exceeds this factor times the first loss"),
    "deterministic": (True, "torch.use_deterministic_algorithms on CUDA"),
    "optimizer_impl": ("auto", "auto | fused | foreach | forloop"),
    "stop_at_target": (False, "stop a run at the first evaluation at or below target_loss"),
    "threads": (1, "intra-op CPU threads per run; \"auto\": torch's choice (or the executor's)"),
    "early_stopping": (
        None,
        "{patience = N}: stop when validation loss has not improved for N evaluations",
    ),
    "engine": ("eager", "eager | stacked | auto; sgdbench run --engine overrides it"),
    "checkpoint_every": (0, "steps between checkpoints a killed run resumes from (0: none)"),
    "keep_checkpoints": (False, "keep the last checkpoint of a finished run"),
    "save_model": (False, "save the final model state to models/<run_id>.pt"),
}

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # used with fullmatch: no trailing newline
# Limits (README, "Grid file"). The name is a folder name (255 bytes on most file systems, and
# files inside it add their own names); runs and steps are counted before anything is allocated.
MAX_NAME_LENGTH = 100
MAX_RUNS = 100_000
MAX_STEPS = 100_000_000  # every step is a row of steps/ and a slot of the in-memory loss buffer
MAX_SECONDS = 10_000_000.0  # about 116 days
MAX_THREADS = 1024
MAX_DEPTH = 16  # nesting of tables and arrays: no valid grid needs more than 3
_DEVICE_RE = re.compile(r"^(cpu|auto|cuda(:\d+)?)$")


@dataclass(frozen=True)
class RunSpec:
    """A fully resolved run. ``run_id`` hashes every field except ``name``, ``axes`` and
    ``search_path`` (which say where the run came from, not what it computes)."""

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
    # Where the run came from and how it is kept, not what it computes: not part of run_id.
    checkpoint_every: int = field(default=0, compare=False)
    keep_checkpoints: bool = field(default=False, compare=False)
    save_model: bool = field(default=False, compare=False)
    name: str = field(default="", compare=False)
    axes: dict[str, Any] = field(default_factory=dict, compare=False)
    search_path: str | None = field(default=None, compare=False)
    checkpoint_dir: str | None = field(default=None, compare=False)  # set by the runner

    _NOT_HASHED = (
        "checkpoint_every",
        "keep_checkpoints",
        "save_model",
        "name",
        "axes",
        "search_path",
        "checkpoint_dir",
    )

    def identity(self) -> dict[str, Any]:
        """The fields that define what the run computes. A data file counts by its content,
        not its location: moving a project keeps its run ids, editing the data changes them."""
        d = asdict(self)
        for key in self._NOT_HASHED:
            d.pop(key)
        path = d["problem_kwargs"].get("path")
        if self.problem == "file" and isinstance(path, str):
            d["problem_kwargs"] = {**d["problem_kwargs"], "path": data_identity(path)}
        return d

    @property
    def run_id(self) -> str:
        return _digest({**self.identity(), "schema_version": SCHEMA_VERSION})

    @property
    def config_id(self) -> str:
        """Like ``run_id`` but without the seed: runs that differ only in seed share it."""
        d = self.identity()
        d.pop("seed")
        return _digest({**d, "schema_version": SCHEMA_VERSION})

    @property
    def group_id(self) -> str:
        """Runs with equal ``group_id`` can train together as one stacked model: they agree on
        everything except the learning rate, the seed and the elementwise optimizer
        hyperparameters (momentum, betas, eps, weight decay, ...; ``stacked_optim.ELEMENTWISE``).
        The optimizer's name (a preset is a label) is not part of it; its class and flags are."""
        from sgdbench import stacked_optim

        d = self.identity()
        for key in ("lr", "seed", "optimizer", "optimizer_kwargs"):
            d.pop(key)
        elementwise = stacked_optim.ELEMENTWISE.get(self.optimizer_class, {})
        d["optimizer_flags"] = stacked_optim.group_flags(
            self.optimizer_class, self.optimizer_kwargs
        )
        d["optimizer_other"] = {
            k: v
            for k, v in self.optimizer_kwargs.items()
            if k not in elementwise and k not in d["optimizer_flags"]
        }
        return _digest({**d, "schema_version": SCHEMA_VERSION})

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunSpec:
        d = json.loads(text)
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


def data_identity(path: str) -> str:
    """``sha256:<hex>`` of a data file's bytes (cached while its size and mtime stay put)."""
    try:
        st = os.stat(path)
    except OSError:
        return path  # not here (a remote worker without the file): its name is all we know
    return _file_sha256(path, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=64)
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def _digest(d: dict[str, Any]) -> str:
    canonical = json.dumps(d, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class _ProblemFacts:
    kwargs: dict[str, Any]
    n_samples: int
    function: bool
    n_params: int
    drop_last: bool


@dataclass(frozen=True)
class Grid:
    """A loaded grid: its name, source text and expanded runs."""

    name: str
    path: Path
    text: str
    runs: list[RunSpec]
    axes: list[str]  # keys that vary across runs, in grid order
    notes: list[str] = field(default_factory=list)  # e.g. why runs fall back to eager


# ---------------------------------------------------------------------------------------------
# small checkers; each raises ValueError(message) and the caller adds the location


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _int(v: Any, minimum: int, maximum: int = MAX_STEPS) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"must be an integer, got {v!r}")
    if v < minimum:
        raise ValueError(f"must be >= {minimum}, got {v}")
    if v > maximum:
        raise ValueError(f"must be <= {maximum:_}, got {v:_}")
    return v


def _float32(v: Any) -> float:
    """A finite number that fits a float32 (lr, losses and hyperparameters become float32)."""
    if not _is_number(v):
        raise ValueError(f"must be a number, got {v!r}")
    if not math.isfinite(v) or abs(v) > FLOAT32_MAX:
        raise ValueError(f"must be a finite number within float32 range (3.4e38), got {v}")
    return float(v)


def _positive(v: Any, maximum: float = FLOAT32_MAX) -> float:
    """A number in (0, maximum]; the default maximum is the largest float32."""
    if not _is_number(v):
        raise ValueError(f"must be a number, got {v!r}")
    if math.isnan(v) or v <= 0:
        raise ValueError(f"must be > 0, got {v}")
    if v > maximum:
        what = " (the float32 range)" if maximum == FLOAT32_MAX else ""
        raise ValueError(f"must be <= {maximum:.3g}{what}, got {v:g}")
    return float(v)


def _unknown_key(key: str, allowed: Any) -> str:
    """The message for a key that is not one of ``allowed``, with the closest as a hint."""
    name = key.rpartition(".")[2]
    return f"unknown key{did_you_mean(name, allowed)} (allowed: {', '.join(allowed)})"


def _too_deep(value: Any, key: str, depth: int = 0) -> str | None:
    """The key under which ``value`` nests tables or arrays more than ``MAX_DEPTH`` deep."""
    if depth > MAX_DEPTH:
        return key
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = ((f"[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for k, v in items:
        sub = key  # name only the outer two levels: a deep value's path is hundreds of keys long
        if depth < 2:
            sub = f"{key}{k}" if k.startswith("[") else (f"{key}.{k}" if key else k)
        found = _too_deep(v, sub, depth + 1)
        if found is not None:
            return found
    return None


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"must be true or false, got {v!r}")
    return v


class _Ctx:
    """Turns a ValueError/KeyedError into a GridError at a location in one file."""

    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, key: str | None, message: str) -> GridError:
        return GridError(self.file, key, message)

    def check(self, key: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except KeyedError as e:
            raise self.fail(f"{key}.{e.key}", e.message) from None
        except ValueError as e:
            raise self.fail(key, str(e)) from None

    def table(self, data: dict[str, Any], key: str) -> dict[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a table ([{key}]), got {type(value).__name__}")
        return value


# ---------------------------------------------------------------------------------------------
# sections


def _check_train(ctx: _Ctx, train: dict[str, Any]) -> dict[str, Any]:
    for key in train:
        if key not in TRAIN_KEYS:
            raise ctx.fail(f"train.{key}", _unknown_key(key, TRAIN_KEYS))
    out = {key: train.get(key, default) for key, (default, _) in TRAIN_KEYS.items()}
    if (out["epochs"] is None) == (out["steps"] is None):
        which = "both" if out["epochs"] is not None else "neither"
        raise ctx.fail("train", f"give exactly one of epochs or steps, got {which}")
    for key in ("epochs", "steps"):
        if out[key] is not None:
            out[key] = ctx.check(f"train.{key}", _int, out[key], 1)
    for key in ("shuffle", "deterministic", "stop_at_target", "keep_checkpoints", "save_model"):
        out[key] = ctx.check(f"train.{key}", _bool, out[key])
    init = out["init"]
    if isinstance(init, list):
        if not init or not all(_is_number(v) and abs(v) <= FLOAT32_MAX for v in init):
            raise ctx.fail(
                "train.init", f"must be a non-empty list of finite numbers, got {init!r}"
            )
        out["init"] = [float(v) for v in init]
    elif init not in ("default", "zeros"):
        raise ctx.fail(
            "train.init", f'must be "default", "zeros" or a list of numbers, got {init!r}'
        )
    if out["target_loss"] is not None:
        out["target_loss"] = ctx.check("train.target_loss", _float32, out["target_loss"])
    if out["eval_every"] is not None:
        out["eval_every"] = ctx.check("train.eval_every", _int, out["eval_every"], 0)
    if out["max_seconds"] is not None:
        out["max_seconds"] = ctx.check(
            "train.max_seconds", _positive, out["max_seconds"], MAX_SECONDS
        )
    factor = out["divergence_factor"]
    if not _is_number(factor) or not 1 < factor <= FLOAT32_MAX:
        raise ctx.fail(
            "train.divergence_factor", f"must be a number > 1 within float32 range, got {factor!r}"
        )
    out["divergence_factor"] = float(factor)
    from sgdbench.optimizers import IMPLS

    if out["optimizer_impl"] not in IMPLS:
        raise ctx.fail(
            "train.optimizer_impl",
            f"must be one of {', '.join(IMPLS)}, got {out['optimizer_impl']!r}",
        )
    stopping = out.pop("early_stopping")
    out["early_stopping_patience"] = 0
    if stopping is not None:
        if not isinstance(stopping, dict) or set(stopping) != {"patience"}:
            raise ctx.fail("train.early_stopping", f"must be {{patience = N}}, got {stopping!r}")
        out["early_stopping_patience"] = ctx.check(
            "train.early_stopping.patience", _int, stopping["patience"], 1
        )
    if out["engine"] not in ENGINE_CHOICES:
        raise ctx.fail(
            "train.engine", f"must be one of {', '.join(ENGINE_CHOICES)}, got {out['engine']!r}"
        )
    out["checkpoint_every"] = ctx.check("train.checkpoint_every", _int, out["checkpoint_every"], 0)
    if out["threads"] != "auto":
        # One thread by default: small models are fastest on one, OpenMP threads spinning against
        # a busy machine made steps 10-30x slower, and the thread count can change reductions.
        out["threads"] = ctx.check("train.threads", _int, out["threads"], 1, MAX_THREADS)
    if out["stop_at_target"] and out["target_loss"] is None:
        raise ctx.fail("train.stop_at_target", "needs train.target_loss")
    return out


def _check_schedule(value: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(value, str):
        return value, {}
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        params = dict(value)
        return params.pop("name"), params
    raise ValueError(f"must be a schedule name or a table with a name, got {value!r}")


def _check_presets(ctx: _Ctx, table: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    from sgdbench import optimizers as opt

    presets = {
        name: (p["type"], {k: v for k, v in p.items() if k != "type"})
        for name, p in opt.BUILTIN_PRESETS.items()
    }
    for name, body in table.items():
        key = f"optimizers.{name}"
        if not isinstance(body, dict):
            raise ctx.fail(key, f"must be a table ([{key}])")
        cls = body.get("type")
        if not isinstance(cls, str):
            raise ctx.fail(f"{key}.type", 'required: a torch.optim class name such as "SGD"')
        if cls.lower() not in opt.optimizer_classes():
            raise ctx.fail(f"{key}.type", f"unknown torch.optim class {cls!r}")
        cls = opt.optimizer_class(cls).__name__
        kwargs = {}
        accepted = opt.keyword_defaults(cls)
        for k, v in body.items():
            if k == "type":
                continue
            if k == "lr":
                raise ctx.fail(f"{key}.lr", "set learning rates in [grid] (lr = [...])")
            if k not in accepted:
                raise ctx.fail(
                    f"{key}.{k}",
                    f"not a keyword of torch.optim.{cls}{did_you_mean(k, accepted)} "
                    f"(accepted: {', '.join(accepted)})",
                )
            kwargs[k] = ctx.check(f"{key}.{k}", _optimizer_value, cls, k, v)
        presets[name] = (cls, kwargs)
    return presets


def _resolve_optimizer(
    name: str, presets: dict[str, tuple[str, dict[str, Any]]]
) -> tuple[str, dict[str, Any]]:
    from sgdbench import optimizers as opt

    if name in presets:
        return presets[name]
    if name.lower() in opt.optimizer_classes():
        return opt.optimizer_class(name).__name__, {}
    known = sorted(set(presets) | {c.__name__ for c in opt.optimizer_classes().values()})
    hint = did_you_mean(name, [*presets, *opt.optimizer_classes()])
    raise ValueError(
        f"unknown optimizer {name!r}{hint} (torch.optim classes or presets: {', '.join(known)})"
    )


def _optimizer_value(cls: str, key: str, value: Any) -> Any:
    """``normalize_kwarg``, and numbers (alone or in a tuple such as betas) must fit float32."""
    from sgdbench import optimizers as opt

    value = opt.normalize_kwarg(cls, key, value)
    for v in value if isinstance(value, tuple) else (value,):
        if _is_number(v):
            _float32(v)
    return value


def _blame_optimizer_value(cls: str, lr: float, kwargs: dict[str, Any]) -> str | None:
    """The keyword whose value alone makes torch refuse to build ``cls``, so the error names
    it (``grid.momentum``) rather than the optimizer; None when only a combination fails."""
    from sgdbench import optimizers as opt

    if opt.optimizer_class(cls).__name__ in opt.UNSUPPORTED:
        return None  # the class itself is refused, whatever its keywords
    for key, value in kwargs.items():
        try:
            opt.check_constructible(cls, lr, {key: value})
        except ValueError:
            return key
    return None


def _out_of_memory(e: BaseException) -> bool:
    """An allocation failure: MemoryError, or torch's RuntimeError from its allocator."""
    text = str(e).lower()
    return isinstance(e, MemoryError) or (
        isinstance(e, RuntimeError) and ("alloc" in text or "out of memory" in text)
    )


def _grid_keys() -> list[str]:
    """Every key [grid] accepts: the fixed axes and any keyword of a torch.optim class."""
    from sgdbench import optimizers as opt

    keywords = {k for name in opt.optimizer_classes() for k in opt.keyword_defaults(name)}
    return [*FIXED_AXES, *sorted(keywords)]


def _check_grid_key(key: str, known: list[str]) -> None:
    """A [grid] key that no optimizer accepts is a misspelling, not an optimizer mismatch."""
    if key.startswith("problem.") or key in known:
        return
    raise ValueError(
        f"unknown key{did_you_mean(key, known)} (the axes {', '.join(FIXED_AXES)}, "
        "problem.KEY, or a keyword of a torch.optim class)"
    )


def _flatten_problem_keys(table: dict[str, Any]) -> dict[str, Any]:
    """``problem.model = [...]`` in [grid] parses as a nested table: make it a "problem.model"
    axis (problem parameters are validated per combination)."""
    out = {}
    for key, value in table.items():
        if key == "problem" and isinstance(value, dict):
            out.update({f"problem.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def _check_axis_value(key: str, value: Any, presets: dict[str, Any]) -> Any:
    """Normalize one value of a grid axis; optimizer keywords and problem parameters are
    checked per combination later."""
    if key.startswith("problem."):
        if key == "problem.name":
            raise ValueError("the problem itself is not an axis: one grid, one problem")
        return value
    if key == "optimizer":
        if not isinstance(value, str):
            raise ValueError(f"must be an optimizer name, got {value!r}")
        _resolve_optimizer(value, presets)
        return value
    if key == "lr":
        return _positive(value)
    if _is_number(value):
        _float32(value)
    if key == "batch_size":
        if value == "full":
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f'must be an integer >= 1 or "full", got {value!r}')
        if value < 1:
            raise ValueError(f"must be >= 1, got {value}")
        return value
    if key == "device":
        if not isinstance(value, str) or not _DEVICE_RE.match(value):
            raise ValueError(f'must be "cpu", "cuda", "cuda:N" or "auto", got {value!r}')
        return value
    if key == "seed":
        return _int(value, 0, MAX_SEED)
    if key == "schedule":
        _check_schedule(value)
        return value
    if isinstance(value, dict):
        raise ValueError(f"must be a number, string, boolean or list, got a table {value!r}")
    return value


# ---------------------------------------------------------------------------------------------
# expansion

Combo = dict[str, tuple[Any, str]]  # key -> (value, location of that value in the file)


def _axes(
    ctx: _Ctx, grid: dict[str, Any], presets: dict[str, Any]
) -> dict[str, list[tuple[Any, str]]]:
    from sgdbench.optimizers import tuple_keywords

    tuple_keys = tuple_keywords()
    known = _grid_keys()
    axes: dict[str, list[tuple[Any, str]]] = {}
    for key, raw in grid.items():
        ctx.check(f"grid.{key}", _check_grid_key, key, known)
        # A tuple keyword (betas): a flat list is one value, a list of lists is an axis.
        one_tuple = (
            key in tuple_keys
            and isinstance(raw, list)
            and not any(isinstance(v, list) for v in raw)
        )
        if isinstance(raw, list) and not one_tuple:
            if not raw:
                raise ctx.fail(f"grid.{key}", "empty axis: give at least one value")
            values = [
                (
                    ctx.check(f"grid.{key}[{i}]", _check_axis_value, key, v, presets),
                    f"grid.{key}[{i}]",
                )
                for i, v in enumerate(raw)
            ]
        else:
            values = [
                (ctx.check(f"grid.{key}", _check_axis_value, key, raw, presets), f"grid.{key}")
            ]
        axes[key] = values
    if "lr" not in axes:
        raise ctx.fail("grid.lr", "required: the learning rate(s), e.g. lr = [0.01, 0.1]")
    axes.setdefault("optimizer", [("sgd", "grid.optimizer")])
    axes.setdefault("seed", [(0, "grid.seed")])
    axes.setdefault("device", [("cpu", "grid.device")])
    return axes


def _entries(
    ctx: _Ctx, data: dict[str, Any], section: str, axes: dict[str, Any], presets: dict[str, Any]
) -> list[dict[str, tuple[Any, str]]]:
    raw = data.get(section, [])
    known = _grid_keys()
    if not isinstance(raw, list) or not all(isinstance(e, dict) for e in raw):
        raise ctx.fail(section, f"must be an array of tables ([[{section}]])")
    out = []
    for i, entry in enumerate(raw):
        if not entry:
            raise ctx.fail(f"{section}[{i}]", "is empty")
        checked = {}
        for key, value in _flatten_problem_keys(entry).items():
            loc = f"{section}[{i}].{key}"
            ctx.check(loc, _check_grid_key, key, known)
            if section == "exclude" and key not in axes:
                raise ctx.fail(
                    loc, f"not a [grid] key{did_you_mean(key, axes)} (grid keys: {', '.join(axes)})"
                )
            checked[key] = (ctx.check(loc, _check_axis_value, key, value, presets), loc)
        out.append(checked)
    return out


def _expand(
    axes: dict[str, list[tuple[Any, str]]], excludes: list[Combo], includes: list[Combo]
) -> list[Combo]:
    keys = list(axes)
    _check_run_count(math.prod(len(v) for v in axes.values()))
    combos: list[Combo] = [
        dict(zip(keys, vals, strict=True)) for vals in itertools.product(*axes.values())
    ]
    combos = [
        c
        for c in combos
        if not any(all(c[k][0] == v for k, (v, _) in ex.items()) for ex in excludes)
    ]
    original = set(keys)
    for inc in includes:
        matched = False
        for c in combos:
            if all(c[k][0] == v for k, (v, _) in inc.items() if k in original and k in c):
                c.update({k: v for k, v in inc.items() if k not in original})
                matched = True
        if not matched:
            # A new combination: it runs for every value of the axes it does not name
            # (so an included configuration gets every seed and device of the grid).
            free = [k for k in keys if k not in inc]
            _check_run_count(len(combos) + math.prod(len(axes[k]) for k in free))
            for vals in itertools.product(*(axes[k] for k in free)):
                combos.append({**dict(zip(free, vals, strict=True)), **inc})
    return combos


def _check_run_count(count: int) -> None:
    """Refuse a grid of more than ``MAX_RUNS`` combinations before expanding it (a product of
    10^8 once took 108 s to fail with MemoryError)."""
    if count > MAX_RUNS:
        raise ValueError(
            f"{count:_} combinations, more than the limit of {MAX_RUNS:_}; split the grid into "
            "several files"
        )


def _default_eval_every(steps: int, epochs: int | None, steps_per_epoch: int) -> int:
    """Every epoch when the budget is in epochs, thinned to at most ~100 evaluations."""
    if epochs is not None:
        return steps_per_epoch * max(1, math.ceil(epochs / 100))
    return max(1, math.ceil(steps / 100))


def load_grid(path: str | Path, *, engine: str | None = None) -> Grid:
    """Read, validate and expand a grid file. Raises ``GridError`` (exit code 2) on bad input.

    ``engine``: "eager", "stacked" (every run that can be stacked; the others run eager, with a
    note saying why) or "auto" (stacked where a run can be stacked and shares its group with at
    least one other run, else eager); None takes the grid's ``[train] engine`` (default eager).
    The choice is made here, per run, and is part of run_id.
    """
    if engine is not None and engine not in ENGINE_CHOICES:
        raise ValueError(f"engine must be one of {', '.join(ENGINE_CHOICES)}, got {engine!r}")
    import torch

    from sgdbench import optimizers as opt
    from sgdbench import schedules
    from sgdbench.problems.factory import build_problem, parameter_count
    from sgdbench.problems.registry import (
        is_function_problem,
        is_plugin,
        resolve_params,
        size_param,
    )

    file = str(path)
    ctx = _Ctx(file)
    path = Path(path)
    try:
        # utf-8-sig: Windows editors start files with a byte-order mark, which TOML rejects.
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ctx.fail(None, "no such file") from None
    except IsADirectoryError:
        raise ctx.fail(None, "is a folder, not a grid file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ctx.fail(None, f"cannot read: {e}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ctx.fail(None, f"TOML syntax error: {e}") from None
    except RecursionError:
        raise ctx.fail(
            None, f"nested too deeply to parse (the limit is {MAX_DEPTH} levels)"
        ) from None
    deep = _too_deep(data, "")
    if deep is not None:
        raise ctx.fail(deep, f"nested more than {MAX_DEPTH} levels deep")
    for key in data:
        if key not in TOP_KEYS:
            raise ctx.fail(key, _unknown_key(key, TOP_KEYS))

    name = data.get("name", path.stem)
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ctx.fail("name", f"must be letters, digits, '_', '-' or '.', got {name!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise ctx.fail("name", f"must be at most {MAX_NAME_LENGTH} characters, got {len(name)}")
    if "description" in data and not isinstance(data["description"], str):
        raise ctx.fail("description", "must be a string")

    problem_table = ctx.table(data, "problem")
    problem_name = problem_table.get("name")
    if not isinstance(problem_name, str) or not problem_name:
        raise ctx.fail(
            "problem.name", 'required: a built-in problem, "file", or "pkg.module:function"'
        )
    raw_kwargs = {k: v for k, v in problem_table.items() if k != "name"}
    base_dir = path.resolve().parent
    train = _check_train(ctx, ctx.table(data, "train"))
    if engine is None:
        engine = train["engine"]
    user_presets = set(ctx.table(data, "optimizers"))
    presets = _check_presets(ctx, ctx.table(data, "optimizers"))
    grid_table = _flatten_problem_keys(ctx.table(data, "grid"))
    axes = _axes(ctx, grid_table, presets)
    excludes = _entries(ctx, data, "exclude", axes, presets)
    includes = _entries(ctx, data, "include", axes, presets)
    combos = ctx.check("grid", _expand, axes, excludes, includes)
    if not combos:
        raise ctx.fail("exclude", "excludes every run: nothing left to run")
    facts_cache: dict[str, _ProblemFacts] = {}

    def problem_facts(combo: Combo) -> _ProblemFacts:
        """Resolve and build the combination's problem once per distinct configuration (seed
        0) to learn its size: batch sizes and init are checked now, not an hour into the grid."""
        overrides = {k[len("problem.") :]: v for k, v in combo.items() if k.startswith("problem.")}
        merged = {**raw_kwargs, **{k: value for k, (value, _) in overrides.items()}}
        cache_key = json.dumps(merged, sort_keys=True, default=str)
        if cache_key in facts_cache:
            return facts_cache[cache_key]

        def where(key: str) -> str:
            return overrides[key][1] if key in overrides else f"problem.{key}"

        try:
            kwargs = resolve_params(problem_name, merged, base_dir)
            problem = build_problem(problem_name, kwargs, 0, str(base_dir))
        except KeyedError as e:
            raise ctx.fail(where(e.key), e.message) from None
        except Exception as e:
            size = size_param(problem_name, merged) if _out_of_memory(e) else None
            if size is not None:
                value = merged.get(size, "its default")
                raise ctx.fail(
                    where(size), f"out of memory building the problem ({size} = {value})"
                ) from None
            what = "cannot import plug-in" if is_plugin(problem_name) else "cannot build problem"
            detail = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ctx.fail("problem.name", f"{what} {problem_name!r}: {detail}") from None
        facts = _ProblemFacts(
            kwargs=kwargs,
            n_samples=problem.n_samples,
            function=problem.task == "function" or is_function_problem(problem_name),
            n_params=parameter_count(problem),
            drop_last=problem.drop_last,
        )
        if train["early_stopping_patience"] and problem.X_val is None:
            raise ctx.fail(
                "train.early_stopping",
                f"{problem_name!r} has no validation data (set problem.val_fraction)",
            )
        if isinstance(train["init"], list) and len(train["init"]) != facts.n_params:
            raise ctx.fail(
                "train.init",
                f"has {len(train['init'])} values, the model has {facts.n_params} parameters",
            )
        facts_cache[cache_key] = facts
        return facts

    cuda = torch.cuda.is_available()
    keys = list(dict.fromkeys(k for c in combos for k in c))
    varying = [k for k in keys if len({repr(c[k][0]) if k in c else None for c in combos}) > 1]

    runs: dict[str, RunSpec] = {}
    for combo in combos:
        opt_name, opt_loc = combo["optimizer"]
        cls, preset_kwargs = ctx.check(opt_loc, _resolve_optimizer, opt_name, presets)
        kwargs = dict(preset_kwargs)
        where_kwarg = {
            k: f"optimizers.{opt_name}.{k}" if opt_name in user_presets else opt_loc for k in kwargs
        }
        facts = problem_facts(combo)
        n_samples, function_problem = facts.n_samples, facts.function
        for key, (value, loc) in combo.items():
            if key in FIXED_AXES or key.startswith("problem."):
                continue
            where_kwarg[key] = loc
            try:
                kwargs[key] = _optimizer_value(cls, key, value)
            except ValueError as e:
                hint = (
                    "; use [[exclude]] to skip these combinations"
                    if "not a keyword" in str(e)
                    else ""
                )
                raise ctx.fail(loc, f"{e}{hint}") from None
        lr, _lr_loc = combo["lr"]
        try:
            opt.check_constructible(cls, lr, kwargs)
        except ValueError as e:
            culprit = _blame_optimizer_value(cls, lr, kwargs)
            raise ctx.fail(where_kwarg.get(culprit, opt_loc), str(e)) from None

        bs, bs_loc = combo.get(
            "batch_size", ("full" if function_problem else None, "grid.batch_size")
        )
        if bs is None:
            raise ctx.fail("grid.batch_size", 'required for data problems: an integer or "full"')
        if function_problem and bs != "full":
            raise ctx.fail(bs_loc, f'function problems take only batch_size = "full", got {bs}')
        if bs != "full" and bs > n_samples:
            raise ctx.fail(bs_loc, f"{bs} is larger than the {n_samples} training samples")
        full = bs == "full" or bs == n_samples
        batch_size = n_samples if bs == "full" else bs
        steps_per_epoch = 1 if function_problem else math.ceil(n_samples / batch_size)
        if facts.drop_last and not function_problem:
            steps_per_epoch = n_samples // batch_size  # the batchers never reach the short batch
        steps = train["steps"] if train["steps"] is not None else train["epochs"] * steps_per_epoch
        if steps > MAX_STEPS:
            raise ctx.fail(
                "train.epochs",
                f"{train['epochs']:_} epochs of {steps_per_epoch:_} steps are {steps:_} steps, "
                f"more than the limit of {MAX_STEPS:_}",
            )

        sched_value, sched_loc = combo.get("schedule", (train["schedule"], "train.schedule"))
        sched_name, sched_params = ctx.check(sched_loc, _check_schedule, sched_value)
        schedule = ctx.check(sched_loc, schedules.resolve, sched_name, sched_params, steps)

        device, _ = combo["device"]
        if device == "auto":
            device = "cuda" if cuda else "cpu"
        eval_every = train["eval_every"]
        if eval_every is None:
            eval_every = _default_eval_every(steps, train["epochs"], steps_per_epoch)

        spec = RunSpec(
            problem=problem_name,
            problem_kwargs=facts.kwargs,
            optimizer=opt_name,
            optimizer_class=cls,
            optimizer_kwargs=opt.json_safe(kwargs),
            lr=lr,
            batch_size=batch_size,
            full_batch=full,
            device=device,
            seed=combo["seed"][0],
            steps=steps,
            epochs=train["epochs"],
            steps_per_epoch=steps_per_epoch,
            n_samples=n_samples,
            shuffle=train["shuffle"],
            init=train["init"],
            target_loss=train["target_loss"],
            eval_every=eval_every,
            max_seconds=train["max_seconds"],
            schedule=schedule,
            divergence_factor=train["divergence_factor"],
            deterministic=train["deterministic"],
            optimizer_impl=train["optimizer_impl"],
            stop_at_target=train["stop_at_target"],
            threads=train["threads"],
            engine="eager" if engine == "eager" else "stacked",
            early_stopping_patience=train["early_stopping_patience"],
            checkpoint_every=train["checkpoint_every"],
            keep_checkpoints=train["keep_checkpoints"],
            save_model=train["save_model"],
            name=name,
            axes={k: combo[k][0] for k in varying if k in combo},
            search_path=str(base_dir),
        )
        runs.setdefault(spec.run_id, spec)  # an include may repeat a combination: run it once
    specs, notes = list(runs.values()), []
    if engine != "eager":
        specs, notes = _choose_engines(specs, engine, file)
    return Grid(name=name, path=path, text=text, runs=specs, axes=varying, notes=notes)


def _choose_engines(
    specs: list[RunSpec], engine: str, file: str
) -> tuple[list[RunSpec], list[str]]:
    """Specs marked ``engine="stacked"`` become eager where they cannot be stacked (and, for
    ``auto``, where their group would have one member); notes say why, once per reason."""
    from dataclasses import replace

    from sgdbench import stacked_optim
    from sgdbench.engine.stacking import problem_reason
    from sgdbench.problems.factory import build_problem
    from sgdbench.problems.registry import is_plugin

    problem_reasons: dict[str, str | None] = {}  # per problem configuration (problem axes)

    def why_problem(spec: RunSpec) -> str | None:
        key = json.dumps(spec.problem_kwargs, sort_keys=True, default=str)
        if key not in problem_reasons:
            rebuild = None
            if is_plugin(spec.problem):

                def rebuild(seed: int) -> Any:
                    return build_problem(spec.problem, spec.problem_kwargs, seed, spec.search_path)

            problem = build_problem(spec.problem, spec.problem_kwargs, 0, spec.search_path)
            problem_reasons[key] = problem_reason(problem, rebuild)
        return problem_reasons[key]

    def why_training(spec: RunSpec) -> str | None:
        if spec.checkpoint_every:
            return "checkpoint_every: the stacked engine does not checkpoint"
        if spec.early_stopping_patience:
            return "early_stopping: the stacked engine does not stop members early"
        return None

    reasons: dict[str, str | None] = {}
    for spec in specs:
        reasons[spec.run_id] = (
            why_training(spec)
            or why_problem(spec)
            or stacked_optim.unsupported_reason(spec.optimizer_class, spec.optimizer_kwargs)
        )
    if engine == "auto":
        sizes: dict[str, int] = {}
        for spec in specs:
            if reasons[spec.run_id] is None:
                sizes[spec.group_id] = sizes.get(spec.group_id, 0) + 1
    out, counts = [], {}
    for spec in specs:
        why = reasons[spec.run_id]
        if why is None and engine == "auto" and sizes[spec.group_id] < 2:
            why = "its group has a single run (nothing to stack it with)"
        if why is not None:
            spec = replace(spec, engine="eager")
            counts[why] = counts.get(why, 0) + 1
        out.append(spec)
    notes = [f"{file}: {n} run(s) on the eager engine: {why}" for why, n in counts.items()]
    return out, notes
