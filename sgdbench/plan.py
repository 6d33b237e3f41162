"""Grid file -> the runs to do: the one place that learns problems' sizes at load time (a
built-in problem describes itself, ``problems.facts``; a ``file`` problem or a plug-in is built),
resolves optimizers against torch.optim, picks each run's engine and forms stacked groups. For
built-in problems on the eager engine it imports no torch.

``load_grid`` reads and validates the file (``gridfile``, ``schema``), expands it (``expand``)
and resolves each combination into a frozen, picklable ``RunSpec``. Every error is a
``GridError`` naming the file and the dotted key.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sgdbench import SCHEMA_VERSION, gridfile, schedules, stacked_catalog
from sgdbench import expand as ex
from sgdbench import optimizers as opt
from sgdbench import presets as pre
from sgdbench import search as search_mod
from sgdbench.errors import GridError, KeyedError
from sgdbench.grid_values import ScheduleTable
from sgdbench.limits import MAX_STEPS
from sgdbench.problems.facts import Facts, describe
from sgdbench.problems.registry import is_function_problem, is_plugin, resolve_params, size_param
from sgdbench.schema import GridAxes, SchemaError, Train, validate
from sgdbench.spec import ENGINE_CHOICES, Grid, RunSpec, digest

__all__ = ["Grid", "group_id", "load_grid"]

STACKED_EVALUATIONS = 10  # default evaluations of a stacked run (eager: ~100)


@dataclass(frozen=True)
class _ProblemFacts:
    kwargs: dict[str, Any]
    n_samples: int
    function: bool
    n_params: int
    drop_last: bool


def group_id(spec: RunSpec) -> str:
    """Runs with equal ``group_id`` can train together as one stacked model: they agree on
    everything except the learning rate, the seed and the elementwise optimizer
    hyperparameters (momentum, betas, eps, weight decay, ...; ``stacked_optim.ELEMENTWISE``).
    The optimizer's name (a preset is a label) is not part of it; its class and flags are."""
    d = spec.identity()
    for key in ("lr", "seed", "optimizer", "optimizer_kwargs"):
        d.pop(key)
    elementwise = stacked_catalog.tables()[0].get(spec.optimizer_class, {})
    d["optimizer_flags"] = stacked_catalog.group_flags(spec.optimizer_class, spec.optimizer_kwargs)
    d["optimizer_other"] = {
        k: v
        for k, v in spec.optimizer_kwargs.items()
        if k not in elementwise and k not in d["optimizer_flags"]
    }
    return digest({**d, "schema_version": SCHEMA_VERSION})


def load_grid(path: str | Path, *, engine: str | None = None, text: str | None = None) -> Grid:
    """Read, validate and expand a grid file. Raises ``GridError`` (exit code 2) on bad input.

    ``engine``: "eager", "stacked" (every run that can be stacked; the others run eager, with a
    note saying why) or "auto" (stacked where a run can be stacked and shares its group with at
    least one other run, else eager); None takes the grid's ``[train] engine`` (default eager).
    The choice is made here, per run, and is part of run_id.
    ``text``: the grid's TOML when it is not read from ``path`` (a suite member, see
    ``sgdbench.suite``); ``path`` still names it in errors and anchors relative paths.
    """
    if engine is not None and engine not in ENGINE_CHOICES:
        raise ValueError(f"engine must be one of {', '.join(ENGINE_CHOICES)}, got {engine!r}")
    file, path = str(path), Path(path)
    text, data, model = gridfile.load(path, text)
    try:
        name = model.name or path.stem
        planner = _Planner(file, path.resolve().parent, model.problem, model.train)
        presets = pre.check_presets(model.optimizers)
        known, tuple_keys = pre.grid_keys(), opt.tuple_keywords()
        order = list(ex.flatten_problem_keys(data["grid"]))
        search = _check(
            "", search_mod.plan, data.get("search"), ex.flatten_problem_keys(data["grid"])
        )
        axes = ex.axes(_sampled(data, model.grid, search), order, known, tuple_keys)
        excludes = ex.entries("exclude", model.exclude, axes, known)
        includes = ex.entries("include", model.include, axes, known)
        for value, loc in [*axes["optimizer"], *_optimizers(excludes + includes)]:
            _check(loc, pre.resolve_optimizer, value, presets)
        # The run-count limit counts trials: the plain grid is checked as it expands, and again
        # once crossed with the trials, before those runs are built.
        combos = search.expand(
            axes,
            lambda plain: ex.expand(plain, excludes, includes),
            _trial_count,
        )
        if not combos:
            raise SchemaError("exclude", "excludes every run: nothing left to run")
        varying = ex.varying(combos)
        runs: dict[str, RunSpec] = {}
        for combo in combos:
            spec = planner.spec(combo, presets, name, varying, engine or model.train.engine)
            spec = replace(
                spec,
                search=search.method,
                trial=search.trial_of(combo),
                halving=search.halving_for(spec.steps, spec.steps_per_epoch),
            )
            runs.setdefault(spec.run_id, spec)  # an include may repeat a combination: run it once
    except SchemaError as e:
        raise GridError(file, e.key, e.message) from None
    specs, notes = list(runs.values()), list[str]()
    if (engine or model.train.engine) != "eager":
        specs, notes = _choose_engines(specs, engine or model.train.engine, file)
    if search.method == "halving" and any(s.early_stopping_patience for s in specs):
        raise GridError(
            file,
            "train.early_stopping",
            "successive halving ranks runs at its rungs and stops them there; early_stopping "
            "would stop them on its own: use one of the two",
        )
    if model.train.eval_every is None:  # the grid's own eval_every always wins
        specs = [_sweep_eval_every(s) for s in specs]
    specs = [replace(s, group_id=group_id(s)) for s in specs]
    return Grid(
        name=name, path=path, text=text, runs=specs, axes=varying, notes=notes, search=search
    )


def _trial_count(count: int) -> None:
    try:
        ex.check_run_count(count)
    except SchemaError as e:
        raise SchemaError("search.trials", e.message) from None


def _sampled(data: dict[str, Any], grid: GridAxes, search: search_mod.SearchPlan) -> GridAxes:
    """``[grid]`` with each distribution replaced by its drawn values (one per trial), checked
    like any list of values (an error names ``grid.lr[3]``, the value of trial 3)."""
    if not search.distributions:
        return grid
    raw = dict(data["grid"])
    for key, values in search.sampled_axes().items():
        if key.startswith("problem."):
            raw["problem"] = {**raw.get("problem", {}), key[len("problem.") :]: values}
        else:
            raw[key] = values
    return validate({**data, "grid": raw}).grid


def _optimizers(entries: list[ex.Combo]) -> list[tuple[Any, str]]:
    return [entry["optimizer"] for entry in entries if "optimizer" in entry]


def _check(loc: str, fn: Any, *args: Any) -> Any:
    """``fn(*args)``, its ValueError (or KeyedError, one key deeper) located at ``loc``
    (``loc`` empty: the KeyedError's key is the full location)."""
    try:
        return fn(*args)
    except KeyedError as e:
        raise SchemaError(f"{loc}.{e.key}" if loc else e.key, e.message) from None
    except ValueError as e:
        raise SchemaError(loc, str(e)) from None


class _Planner:
    """Turns combinations into ``RunSpec``s; learns each problem configuration's size once
    (described, or built with seed 0), so batch sizes and init are checked now, not an hour into
    the grid."""

    def __init__(self, file: str, base_dir: Path, problem: Any, train: Train) -> None:
        self.file, self.base_dir, self.train = file, base_dir, train
        self.problem_name: str = problem.name
        self.raw_kwargs = dict(problem.model_extra or {})
        self.facts: dict[str, _ProblemFacts] = {}

    def problem_facts(self, combo: ex.Combo) -> _ProblemFacts:
        overrides = {k[len("problem.") :]: v for k, v in combo.items() if k.startswith("problem.")}
        merged = {**self.raw_kwargs, **{k: value for k, (value, _) in overrides.items()}}
        cache_key = json.dumps(merged, sort_keys=True, default=str)
        if cache_key not in self.facts:
            self.facts[cache_key] = self._build(merged, overrides)
        return self.facts[cache_key]

    def _build(self, merged: dict[str, Any], overrides: ex.Combo) -> _ProblemFacts:
        name, train = self.problem_name, self.train

        def where(key: str) -> str:
            return overrides[key][1] if key in overrides else f"problem.{key}"

        try:
            kwargs = resolve_params(name, merged, self.base_dir)
            found = describe(name, kwargs) or _built_facts(name, kwargs, str(self.base_dir))
            if found.nbytes > _memory_bytes():  # would fail to allocate: as building did
                raise MemoryError(f"{found.nbytes:_} bytes")
        except KeyedError as e:
            raise SchemaError(where(e.key), e.message) from None
        except Exception as e:
            size = size_param(name, merged) if _out_of_memory(e) else None
            if size is not None:
                value = merged.get(size, "its default")
                raise SchemaError(
                    where(size), f"out of memory building the problem ({size} = {value})"
                ) from None
            what = "cannot import plug-in" if is_plugin(name) else "cannot build problem"
            detail = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise SchemaError("problem.name", f"{what} {name!r}: {detail}") from None
        facts = _ProblemFacts(
            kwargs=kwargs,
            n_samples=found.n_samples,
            function=found.function or is_function_problem(name),
            n_params=found.n_params,
            drop_last=found.drop_last,
        )
        if train.early_stopping is not None and not found.has_val:
            raise SchemaError(
                "train.early_stopping",
                f"{name!r} has no validation data (set problem.val_fraction)",
            )
        if isinstance(train.init, list) and len(train.init) != facts.n_params:
            raise SchemaError(
                "train.init",
                f"has {len(train.init)} values, the model has {facts.n_params} parameters",
            )
        return facts

    def optimizer(
        self, combo: ex.Combo, presets: pre.Presets, lr: float
    ) -> tuple[str, dict[str, Any]]:
        """The optimizer class and keywords of ``combo``, checked by building it."""
        opt_name, opt_loc = combo["optimizer"]
        cls, preset_kwargs = _check(opt_loc, pre.resolve_optimizer, opt_name, presets)
        kwargs = dict(preset_kwargs)
        user = opt_name in presets and opt_name not in opt.BUILTIN_PRESETS
        where = {k: f"optimizers.{opt_name}.{k}" if user else opt_loc for k in kwargs}
        for key, (value, loc) in combo.items():
            if key in ex.FIXED_AXES or key.startswith("problem."):
                continue
            where[key] = loc
            try:
                kwargs[key] = pre.optimizer_value(cls, key, value)
            except ValueError as e:
                hint = (
                    "; use [[exclude]] to skip these combinations"
                    if "not a keyword" in str(e)
                    else ""
                )
                raise SchemaError(loc, f"{e}{hint}") from None
        try:
            opt.check_constructible(cls, lr, kwargs)
        except ValueError as e:
            culprit = pre.blame_optimizer_value(cls, lr, kwargs)
            raise SchemaError(where.get(culprit or "", opt_loc), str(e)) from None
        return cls, kwargs

    def budget(self, combo: ex.Combo, facts: _ProblemFacts) -> tuple[int, bool, int, int]:
        """Batch size, full batch, steps per epoch and steps of ``combo``."""
        train = self.train
        bs, bs_loc = combo.get(
            "batch_size", ("full" if facts.function else None, "grid.batch_size")
        )
        if bs is None:
            raise SchemaError("grid.batch_size", 'required for data problems: an integer or "full"')
        if facts.function and bs != "full":
            raise SchemaError(bs_loc, f'function problems take only batch_size = "full", got {bs}')
        if bs != "full" and bs > facts.n_samples:
            raise SchemaError(bs_loc, f"{bs} is larger than the {facts.n_samples} training samples")
        batch_size = facts.n_samples if bs == "full" else bs
        steps_per_epoch = 1 if facts.function else math.ceil(facts.n_samples / batch_size)
        if facts.drop_last and not facts.function:
            steps_per_epoch = (
                facts.n_samples // batch_size
            )  # the batchers never reach the short batch
        steps = train.steps if train.steps is not None else (train.epochs or 0) * steps_per_epoch
        if steps > MAX_STEPS:
            raise SchemaError(
                "train.epochs",
                f"{train.epochs:_} epochs of {steps_per_epoch:_} steps are {steps:_} steps, "
                f"more than the limit of {MAX_STEPS:_}",
            )
        return batch_size, bs == "full" or bs == facts.n_samples, steps_per_epoch, steps

    def spec(
        self, combo: ex.Combo, presets: pre.Presets, name: str, varying: list[str], engine: str
    ) -> RunSpec:
        train = self.train
        facts = self.problem_facts(combo)
        lr = combo["lr"][0]
        cls, kwargs = self.optimizer(combo, presets, lr)
        batch_size, full, steps_per_epoch, steps = self.budget(combo, facts)
        sched_value, sched_loc = combo.get("schedule", (train.schedule, "train.schedule"))
        if isinstance(sched_value, ScheduleTable):
            sched_value = sched_value.model_dump()
        sched_name, sched_params = _schedule(sched_value)
        schedule = _check(sched_loc, schedules.resolve, sched_name, sched_params, steps)
        device = combo["device"][0]
        if device == "auto":
            device = "cuda" if _cuda() else "cpu"
        eval_every = train.eval_every
        if eval_every is None:
            eval_every = _default_eval_every(steps, train.epochs, steps_per_epoch)
        return RunSpec(
            problem=self.problem_name,
            problem_kwargs=facts.kwargs,
            optimizer=combo["optimizer"][0],
            optimizer_class=cls,
            optimizer_kwargs=opt.json_safe(kwargs),
            lr=float(lr),
            batch_size=batch_size,
            full_batch=full,
            device=device,
            seed=combo["seed"][0],
            steps=steps,
            epochs=train.epochs,
            steps_per_epoch=steps_per_epoch,
            n_samples=facts.n_samples,
            shuffle=train.shuffle,
            init=[float(v) for v in train.init] if isinstance(train.init, list) else train.init,
            target_loss=train.target_loss,
            eval_every=eval_every,
            max_seconds=train.max_seconds,
            schedule=schedule,
            divergence_factor=train.divergence_factor,
            deterministic=train.deterministic,
            optimizer_impl=train.optimizer_impl,
            stop_at_target=train.stop_at_target,
            threads=train.threads,
            engine="eager" if engine == "eager" else "stacked",
            early_stopping_patience=train.early_stopping.patience if train.early_stopping else 0,
            checkpoint_every=train.checkpoint_every,
            keep_checkpoints=train.keep_checkpoints,
            save_model=train.save_model,
            repeat=train.repeat,
            name=name,
            axes={k: combo[k][0] for k in varying if k in combo},
            search_path=str(self.base_dir),
        )


def _schedule(value: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(value, str):
        return value, {}
    params = dict(value)
    return params.pop("name"), params


def _built_facts(name: str, kwargs: dict[str, Any], search_path: str) -> Facts:
    """The facts of a problem known only by building it (``file``, plug-ins): imports torch."""
    from sgdbench.problems.factory import build_problem, parameter_count

    problem = build_problem(name, kwargs, 0, search_path)
    return Facts(
        n_samples=problem.n_samples,
        n_params=parameter_count(problem),
        function=problem.task == "function",
        has_val=problem.X_val is not None,
        drop_last=problem.drop_last,
    )


def _memory_bytes() -> int:
    """This machine's physical memory (a problem larger than it cannot be built)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _out_of_memory(e: BaseException) -> bool:
    """An allocation failure: MemoryError, or torch's RuntimeError from its allocator."""
    text = str(e).lower()
    return isinstance(e, MemoryError) or (
        isinstance(e, RuntimeError) and ("alloc" in text or "out of memory" in text)
    )


def _default_eval_every(
    steps: int, epochs: int | None, steps_per_epoch: int, evaluations: int = 100
) -> int:
    """Every epoch when the budget is in epochs, thinned to at most ~``evaluations``."""
    if epochs is not None:
        return steps_per_epoch * max(1, math.ceil(epochs / evaluations))
    return max(1, math.ceil(steps / evaluations))


def _sweep_eval_every(spec: RunSpec) -> RunSpec:
    """A stacked run without an explicit ``eval_every`` evaluates ~``STACKED_EVALUATIONS``
    times: a stack's evaluation is most of its cost, and steps to target are exact anyway
    (replayed, ``engine.crossing``)."""
    if spec.engine != "stacked":
        return spec
    every = _default_eval_every(spec.steps, spec.epochs, spec.steps_per_epoch, STACKED_EVALUATIONS)
    return replace(spec, eval_every=every)


def _choose_engines(
    specs: list[RunSpec], engine: str, file: str
) -> tuple[list[RunSpec], list[str]]:
    """Specs marked ``engine="stacked"`` become eager where they cannot be stacked (and, for
    ``auto``, where their group would have one member); notes say why, once per reason."""
    from sgdbench import stacked_optim
    from sgdbench.engine.stacking import problem_reason
    from sgdbench.problems.factory import build_problem

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
                sizes[group_id(spec)] = sizes.get(group_id(spec), 0) + 1
    out, counts = list[RunSpec](), dict[str, int]()
    for spec in specs:
        why = reasons[spec.run_id]
        if why is None and engine == "auto" and sizes[group_id(spec)] < 2:
            why = "its group has a single run (nothing to stack it with)"
        if why is not None:
            spec = replace(spec, engine="eager")
            counts[why] = counts.get(why, 0) + 1
        out.append(spec)
    notes = [f"{file}: {n} run(s) on the eager engine: {why}" for why, n in counts.items()]
    return out, notes
