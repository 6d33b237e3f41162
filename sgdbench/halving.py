"""Successive halving (``[search] method = "halving"``): the rungs and the pruning decisions.

Pure (numpy only). Rungs sit at budgets ``min_steps * eta**k`` below the run's full budget. At
each rung, every configuration (the runs that differ only in seed) is scored by the median over
its seeds of the full-data training loss at that step (a seed that diverged or failed counts as
+inf), and the best ``ceil(n / eta)`` configurations continue; the others stop there with status
``pruned``. Ties are broken by ``config_id``, so the same grid prunes the same runs.

The stacked engine asks a ``Pruner`` at each rung step and drops the pruned members from the
stack: the survivors simply go on training, nothing restarts. The eager engine trains a halving
group rung by rung, pausing each member at the rung (``engine.eager_halving``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


def rung_steps(min_steps: int, total_steps: int, eta: int) -> list[int]:
    """The steps at which decisions are made: ``min_steps * eta**k`` below ``total_steps``."""
    if min_steps < 1 or eta < 2:
        raise ValueError(f"need min_steps >= 1 and eta >= 2, got {min_steps} and {eta}")
    rungs, budget = [], min_steps
    while budget < total_steps:
        rungs.append(budget)
        budget *= eta
    return rungs


def n_kept(n_configs: int, eta: int) -> int:
    """How many of ``n_configs`` configurations continue past a rung."""
    return max(1, math.ceil(n_configs / eta))


def median(values: Sequence[float]) -> float:
    """The median with NaN counted as +inf (a diverged seed sinks its configuration's half)."""
    clean = sorted(v if math.isfinite(v) else math.inf for v in values)
    mid = len(clean) // 2
    if len(clean) % 2:
        return clean[mid]
    low, high = clean[mid - 1], clean[mid]
    return math.inf if math.inf in (low, high) else (low + high) / 2


def survivors(scores: dict[str, list[float]], eta: int) -> list[str]:
    """The configurations that continue, best first: the lowest median score over seeds
    (NaN counts as +inf), ties broken by the configuration's id."""

    ranked = sorted(scores, key=lambda config: (median(scores[config]), config))
    return ranked[: n_kept(len(ranked), eta)]


def planned_steps(rungs: Sequence[int], total_steps: int, eta: int, members: Sequence[int]) -> int:
    """Optimizer steps the halving will train when nothing diverges: ``members[c]`` runs
    (seeds) per configuration, every configuration to the first rung, the kept ones onwards."""
    n_configs = len(members)
    per_config = sorted(members, reverse=True)  # an upper bound when seed counts differ
    total, previous, alive = 0, 0, n_configs
    for budget in [*rungs, total_steps]:
        total += sum(per_config[:alive]) * (budget - previous)
        previous, alive = budget, n_kept(alive, eta)
    return total


def pruned_message(rung: int, step: int, eta: int) -> str:
    """The message of a run pruned at ``rung`` (after ``step`` steps)."""
    return (
        f"pruned at rung {rung} (step {step}): the median full-data loss over its seeds was not "
        f"among the best 1/{eta}"
    )


def group_key(spec: Any) -> str:
    """The eager runs halved together: those with the same budget and rungs (any optimizer,
    batch size or other axis; the stacked engine halves each stacked group apart)."""
    plan = spec.halving
    return f"halving:{spec.steps}:{plan['eta']}:{','.join(map(str, plan['rungs']))}"


@dataclass
class Pruner:
    """Halving decisions for one stacked unit. ``config_ids[m]`` is member ``m``'s configuration;
    ``rungs`` the decision steps; members that end otherwise are ``retire``d with +inf."""

    config_ids: list[str]
    rungs: list[int]
    eta: int
    scores: dict[int, float] = field(default_factory=dict)  # member -> loss at the last rung
    retired: set[int] = field(default_factory=set)

    @classmethod
    def for_specs(cls, specs: Sequence[Any]) -> Pruner | None:
        """The pruner for specs carrying a ``halving`` plan, or None for a plain unit."""
        plan = specs[0].halving
        if not plan:
            return None
        return cls([s.config_id for s in specs], list(plan["rungs"]), int(plan["eta"]))

    def rung_of(self, step: int) -> int | None:
        """The rung index decided at ``step``, or None."""
        return self.rungs.index(step) if step in self.rungs else None

    def reached(self, step: int, total_steps: int) -> int | None:
        """The last rung a member that stopped at ``step`` reached (``len(rungs)``: the full
        budget ``total_steps``), or None before the first."""
        passed = [k for k, budget in enumerate([*self.rungs, total_steps]) if budget <= step]
        return passed[-1] if passed else None

    def retire(self, member: int) -> None:
        """A member that stopped by itself (diverged, stalled, failed): scores +inf from now."""
        self.retired.add(member)

    def decide(self, active: Sequence[int], losses: Sequence[float]) -> list[int]:
        """At a rung: the members (of ``active``, whose full-data losses are ``losses``) whose
        configuration is pruned. Members retired earlier count for their configuration as +inf."""
        per_config: dict[str, list[float]] = {}
        for member, loss in zip(active, losses, strict=True):
            per_config.setdefault(self.config_ids[member], []).append(float(loss))
        for member in self.retired:
            config = self.config_ids[member]
            if config in per_config:
                per_config[config].append(math.inf)
        keep = set(survivors(per_config, self.eta))
        return [m for m in active if self.config_ids[m] not in keep]


def rung_summary(results: Any, all_versions: bool = False) -> str:
    """One line for the report of the results folder ``results``: the rungs, how many
    configurations reached each, and the steps trained against the full grid's. Empty for
    results without halving. Only the runs of the folder's current grid version, unless
    ``all_versions`` (as the report's table)."""
    import json
    from pathlib import Path

    from sgdbench.store import read_manifest, read_schema_names, read_table

    path = Path(results) / "runs.parquet"
    names = read_schema_names(path)
    if "rung" not in names:
        return ""
    columns = ["config_id", "search", "rung", "steps", "spec"]
    runs = read_table(path, columns + (["grid_id"] if "grid_id" in names else [])).to_pandas()
    current = (read_manifest(Path(results)) or {}).get("current_grid")
    if not all_versions and current is not None and "grid_id" in runs:
        runs = runs[runs["grid_id"] == current]
    halved = runs[runs["search"] == "halving"]
    if halved.empty:
        return ""
    plan = json.loads(halved["spec"].iloc[0])
    budgets = [*plan["halving"]["rungs"], plan["steps"]]
    # A run that stopped before the first rung (diverged) reached no rung: -1.
    best_rung = halved.assign(rung=halved["rung"].fillna(-1)).groupby("config_id")["rung"].max()
    counts = [int((best_rung >= k).sum()) for k in range(len(budgets))]
    full = len(halved) * plan["steps"]
    trained = int(halved["steps"].sum())
    return (
        f"Successive halving (eta {plan['halving']['eta']}): rungs at steps "
        f"{', '.join(f'{b:,}' for b in budgets)}: "
        f"{best_rung.size} configuration(s), reaching each rung: "
        f"{' → '.join(str(c) for c in counts)}; "
        f"{trained:,} of the full grid's {full:,} steps ({trained / full:.0%})."
    )


def with_rungs(report_json: str, results: Any, run_ids: Sequence[Sequence[str]]) -> str:
    """``report --format json`` with, per configuration of a halving grid (``run_ids[i]``: the
    runs of configuration ``i``), ``halving``: the last rung it reached (``len(rungs)``: the
    full budget), the steps of the rungs it reached and the loss that ranked it at each (the
    median over its seeds of the full-data training loss there; null: every seed diverged).
    Unchanged for other grids."""
    import json
    from pathlib import Path

    from sgdbench.store import EVALS_DIR, read_schema_names, read_table

    path = Path(results) / "runs.parquet"
    if "rung" not in read_schema_names(path):
        return report_json
    runs = read_table(path, ["run_id", "search", "rung", "spec"]).to_pandas()
    halved = runs[runs["search"] == "halving"].set_index("run_id")
    if halved.empty:
        return report_json
    doc = json.loads(report_json)
    for record, ids in zip(doc["configurations"], run_ids, strict=True):
        mine = [i for i in ids if i in halved.index]
        if not mine:
            continue
        plan = json.loads(halved.loc[mine[0], "spec"])
        budgets = [*plan["halving"]["rungs"], plan["steps"]]
        reached = halved.loc[mine, "rung"].dropna()
        top = int(reached.max()) if len(reached) else -1
        losses: list[list[float]] = [[] for _ in budgets[: top + 1]]
        for run_id in mine:
            evals = read_table(
                Path(results) / EVALS_DIR / f"{run_id}.parquet", ["step", "train_loss"]
            ).to_pandas()
            at = evals.groupby("step")["train_loss"].last()
            for k, budget in enumerate(budgets[: top + 1]):
                losses[k].append(float(at.get(budget, math.inf)))
        ranked = [median(values) for values in losses]
        record["halving"] = {
            "rung": top if top >= 0 else None,
            "rung_steps": budgets[: top + 1],
            "rung_loss": [v if math.isfinite(v) else None for v in ranked],
        }
    return json.dumps(doc, indent=2, allow_nan=False) + "\n"
