"""``[search]``: which configurations a grid tries, beyond the cartesian product.

Pure (numpy and scipy.stats.qmc, no torch). A ``[grid]`` axis may be a distribution instead of a
list of values::

    lr = {loguniform = [1e-4, 1.0]}        # log-uniform between the ends
    momentum = {uniform = [0.0, 0.99]}
    optimizer = {choice = ["sgd", "adam"]}
    batch_size = {lograndint = [8, 128]}   # integers, both ends included (or randint)

and ``[search]`` says how to draw them: ``method = "random"`` (independent uniform draws),
``"sobol"`` or ``"halton"`` (scrambled quasi-random points: the trials cover the space more
evenly than independent draws), ``trials = N``, ``seed = S``. Every trial is one point in the
unit cube, one coordinate per distribution, mapped through each distribution: the same seed gives
the same trials. The plain axes of the grid are crossed with the trials (every trial gets every
seed). ``method = "halving"`` prunes the grid's configurations by successive halving
(``sgdbench.halving``); its distributions, if any, are drawn by ``sampler`` (default random).

Sampled numbers are rounded to 6 significant digits, so that tables and run ids stay readable;
``randint`` and ``lograndint`` draw integers (uniformly, or log-uniformly) between both ends.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sgdbench.errors import KeyedError, did_you_mean
from sgdbench.grid_values import is_distribution
from sgdbench.schema import INTEGER_KINDS, MAX_TRIALS, METHODS, SAMPLERS, SEARCH_KEYS

SIGNIFICANT_DIGITS = 6


@dataclass(frozen=True)
class Distribution:
    """One sampled axis: ``kind`` in ``DISTRIBUTIONS`` and its bounds or options."""

    key: str
    kind: str
    values: tuple[Any, ...]

    def at(self, u: float) -> Any:
        """The value at quantile ``u`` in [0, 1)."""
        if self.kind == "choice":
            return self.values[min(int(u * len(self.values)), len(self.values) - 1)]
        low, high = self.values
        if self.kind in INTEGER_KINDS:
            return _integer_at(self.kind, low, high, u)
        if self.kind == "loguniform":
            value = math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
        else:
            value = low + u * (high - low)
        return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def _integer_at(kind: str, low: int, high: int, u: float) -> int:
    """``randint``: each of low..high equally likely; ``lograndint``: log-uniform over
    [low, high + 1), rounded down (so 8..15 is as likely as 64..127)."""
    if kind == "randint":
        value = low + math.floor(u * (high - low + 1))
    else:
        value = math.floor(math.exp(math.log(low) + u * (math.log(high + 1) - math.log(low))))
    return int(min(max(value, low), high))


def parse_distribution(key: str, value: dict[str, Any]) -> Distribution:
    """Check ``{kind = [...]}``; raises ``KeyedError`` naming ``grid.<key>``."""
    where = f"grid.{key}"
    ((kind, args),) = value.items()
    if not isinstance(args, list):
        raise KeyedError(where, f"{kind} takes a list, got {args!r}")
    if kind == "choice":
        if not args:
            raise KeyedError(where, "choice needs at least one value")
        return Distribution(key, kind, tuple(args))
    if kind in INTEGER_KINDS:
        return _integer_distribution(where, key, kind, args)
    if len(args) != 2 or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in args
    ):
        raise KeyedError(where, f"{kind} takes [low, high] (two finite numbers), got {args!r}")
    low, high = float(args[0]), float(args[1])
    if not low < high:
        raise KeyedError(where, f"{kind} needs low < high, got {args!r}")
    if kind == "loguniform" and low <= 0:
        raise KeyedError(where, f"loguniform needs low > 0, got {args!r}")
    return Distribution(key, kind, (low, high))


def _integer_distribution(where: str, key: str, kind: str, args: list[Any]) -> Distribution:
    if len(args) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in args):
        raise KeyedError(where, f"{kind} takes [low, high] (two integers), got {args!r}")
    low, high = args
    if not low < high:
        raise KeyedError(where, f"{kind} needs low < high, got {args!r}")
    if kind == "lograndint" and low < 1:
        raise KeyedError(where, f"lograndint needs low >= 1, got {args!r}")
    return Distribution(key, kind, (low, high))


def unit_points(sampler: str, n: int, d: int, seed: int) -> np.ndarray:
    """``n`` points in [0, 1)^d: independent uniform draws or a scrambled, seeded sequence."""
    if sampler == "random":
        return np.random.default_rng(seed).random((n, d))
    from scipy.stats import qmc

    engine = (qmc.Sobol if sampler == "sobol" else qmc.Halton)(d, scramble=True, rng=seed)
    with warnings.catch_warnings():
        # Sobol's balance is best at powers of two; any n is still a valid low-discrepancy prefix.
        warnings.simplefilter("ignore", UserWarning)
        return engine.random(n)


@dataclass(frozen=True)
class SearchPlan:
    """A parsed ``[search]`` with its drawn trials (empty for a plain grid)."""

    method: str = "grid"
    sampler: str | None = None
    seed: int = 0
    distributions: tuple[Distribution, ...] = ()
    trials: tuple[tuple[Any, ...], ...] = ()  # one value per distribution, per trial
    eta: int = 3
    min_steps: int | None = None
    min_epochs: int | None = None
    _index: dict[tuple[str, ...], int] = field(default_factory=dict, compare=False, repr=False)

    @property
    def keys(self) -> list[str]:
        """The sampled axes, in grid order."""
        return [d.key for d in self.distributions]

    def sampled_axes(self) -> dict[str, list[Any]]:
        """Each sampled axis as the list of its values, trial by trial (for validation)."""
        return {d.key: [t[i] for t in self.trials] for i, d in enumerate(self.distributions)}

    def halving_for(self, steps: int, steps_per_epoch: int) -> dict[str, Any] | None:
        """A run's halving plan (eta and rung steps), or None when the method is not halving."""
        if self.method != "halving":
            return None
        from sgdbench.halving import rung_steps

        first = self.min_steps if self.min_steps is not None else 0
        if self.min_epochs is not None:
            first = self.min_epochs * steps_per_epoch
        return {"eta": self.eta, "rungs": rung_steps(first, steps, self.eta)}

    def trial_of(self, combo: dict[str, tuple[Any, str]]) -> int | None:
        """The trial a combination belongs to (None for a plain grid)."""
        if not self.distributions:
            return None
        return self._index.get(_trial_key(tuple(combo[k][0] for k in self.keys)))

    def expand(
        self,
        axes: dict[str, list[tuple[Any, str]]],
        expand_plain: Any,
        check_count: Any = None,
    ) -> list[dict[str, tuple[Any, str]]]:
        """Cross the plain axes (expanded by ``expand_plain``, which applies exclude/include)
        with the trials: each trial's sampled values, located at ``grid.<key>[trial]``.
        ``check_count(n)`` is called with the number of runs before they are built (it raises
        when there are too many)."""
        if not self.distributions:
            return expand_plain(axes)
        sampled = {k: axes[k] for k in self.keys}
        plain = {k: v for k, v in axes.items() if k not in sampled}
        combos = expand_plain(plain) if plain else [{}]
        if check_count is not None:
            check_count(len(combos) * len(self.trials))
        return [
            {**combo, **{k: sampled[k][i] for k in self.keys}}
            for i in range(len(self.trials))
            for combo in combos
        ]


def _trial_key(values: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple(repr(v) for v in values)


def _int(key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise KeyedError(key, f"must be an integer >= {minimum}, got {value!r}")
    return value


def plan(search: Any, grid: dict[str, Any]) -> SearchPlan:
    """Parse ``[search]`` and the distributions of ``grid`` and draw the trials.

    Raises ``KeyedError`` whose key is the full dotted location (``search.trials``, ``grid.lr``).
    """
    search = _check_keys(search)
    distributions = tuple(parse_distribution(k, v) for k, v in grid.items() if is_distribution(v))
    if not search:
        if distributions:
            raise KeyedError(
                f"grid.{distributions[0].key}",
                'a distribution needs [search] method = "random", "sobol" or "halton"',
            )
        return SearchPlan()
    method = search.get("method")
    if method not in METHODS:
        raise KeyedError("search.method", f"must be one of {', '.join(METHODS)}, got {method!r}")
    seed = _int("search.seed", search.get("seed", 0), 0)
    halving = {"eta", "min_steps", "min_epochs", "sampler"} & set(search)
    if method != "halving" and halving:
        raise KeyedError(f"search.{sorted(halving)[0]}", 'only for method = "halving"')
    eta, min_steps, min_epochs = 3, None, None
    sampler: str | None = method
    if method == "halving":
        eta, min_steps, min_epochs = _halving_settings(search)
        sampler = _halving_sampler(search, distributions)
    if sampler is not None and not distributions:
        raise KeyedError(
            "search.method",
            f"{method} needs a distribution in [grid], e.g. lr = {{loguniform = [1e-4, 1.0]}}",
        )
    trials = _draw(search, distributions, sampler, seed)
    index: dict[tuple[str, ...], int] = {}
    for i, trial in enumerate(trials):
        index.setdefault(_trial_key(trial), i)  # a repeated draw (a choice) is one trial
    return SearchPlan(
        method=method,
        sampler=sampler,
        seed=seed,
        distributions=distributions,
        trials=trials,
        eta=eta,
        min_steps=min_steps,
        min_epochs=min_epochs,
        _index=index,
    )


def _check_keys(search: Any) -> dict[str, Any]:
    """``[search]`` as a table (empty when absent) whose keys are all known."""
    if search is not None and not isinstance(search, dict):
        raise KeyedError("search", "must be a table ([search])")
    for key in search or {}:
        if key not in SEARCH_KEYS:
            hint = did_you_mean(key, SEARCH_KEYS)
            raise KeyedError(
                f"search.{key}", f"unknown key{hint} (allowed: {', '.join(SEARCH_KEYS)})"
            )
    return search or {}


def _halving_settings(search: dict[str, Any]) -> tuple[int, int | None, int | None]:
    """Halving's eta and its first rung: (eta, min_steps, min_epochs), exactly one set."""
    eta = _int("search.eta", search.get("eta", 3), 2)
    if ("min_steps" in search) == ("min_epochs" in search):
        raise KeyedError("search", "halving needs exactly one of min_steps or min_epochs")
    if "min_steps" in search:
        return eta, _int("search.min_steps", search["min_steps"], 1), None
    return eta, None, _int("search.min_epochs", search["min_epochs"], 1)


def _halving_sampler(search: dict[str, Any], distributions: tuple[Distribution, ...]) -> Any:
    """How halving draws its distributions (None without any)."""
    if not distributions:
        return None
    sampler = search.get("sampler", "random")
    if sampler not in SAMPLERS:
        raise KeyedError("search.sampler", f"must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    return sampler


def _draw(
    search: dict[str, Any],
    distributions: tuple[Distribution, ...],
    sampler: str | None,
    seed: int,
) -> tuple[tuple[Any, ...], ...]:
    """The trials: ``search.trials`` points drawn by ``sampler`` (none without distributions)."""
    if not distributions:
        if "trials" in search:
            raise KeyedError("search.trials", "needs a distribution in [grid] to sample")
        return ()
    if "trials" not in search:
        raise KeyedError("search.trials", "required: the number of sampled configurations")
    trials_n = _int("search.trials", search["trials"], 1)
    if trials_n > MAX_TRIALS:
        raise KeyedError(
            "search.trials", f"{trials_n:_} trials, more than the limit of {MAX_TRIALS:_}"
        )
    assert sampler is not None
    points = unit_points(sampler, trials_n, len(distributions), seed)
    return tuple(
        tuple(d.at(float(u)) for d, u in zip(distributions, row, strict=True)) for row in points
    )


def budget_line(plan: SearchPlan, runs: list[Any]) -> str:
    """What ``--dry-run`` says about the budget: total optimizer steps, and how they were chosen."""
    total = sum(run.steps for run in runs)
    if plan.method == "halving" and runs:
        from sgdbench.halving import planned_steps

        members: dict[str, int] = {}
        for run in runs:
            members[run.config_id] = members.get(run.config_id, 0) + 1
        full = total
        total = planned_steps(
            runs[0].halving["rungs"], runs[0].steps, plan.eta, list(members.values())
        )
        return (
            f"budget {total:,} steps (at most; the full grid: {full:,}), halving with eta "
            f"{plan.eta} at rungs {runs[0].halving['rungs']}"
        )
    how = "" if plan.method == "grid" else f", {plan.method} search"
    if plan.trials:
        how += f" over {len(plan.trials)} trial(s) (seed {plan.seed})"
    return f"budget {total:,} steps{how}"
