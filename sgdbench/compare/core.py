"""``compare``: match two folders' configurations and compute every change (``stats``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from sgdbench import report
from sgdbench.compare import match, stats
from sgdbench.compare.limits import FAIL_ON_KEYS, METRICS, Threshold
from sgdbench.errors import UsageError


@dataclass
class Comparison:
    threshold: float
    labels: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    overall: dict[str, Any] = field(default_factory=dict)
    only_base: list[str] = field(default_factory=list)
    only_new: list[str] = field(default_factory=list)
    thresholds: dict[str, Threshold] = field(default_factory=dict)
    env_differences: list[str] = field(default_factory=list)  # "torch_version: 2.12 vs 2.13"

    @property
    def regressed(self) -> bool:
        return any(r["regression"] for r in self.rows) or any(
            m.get("regression") for m in self.overall.values()
        )


@dataclass
class _Pair:
    """One matched configuration: its summary rows and its trained runs on both sides."""

    described: str
    key: str
    axes: dict[str, Any]
    b: pd.Series
    n: pd.Series
    b_runs: pd.DataFrame  # every run (for the digests)
    n_runs: pd.DataFrame
    b_trained: pd.DataFrame  # trained runs (for the timings)
    n_trained: pd.DataFrame

    def clock(self, same_machine: bool) -> str:
        """What the steps/s test times: ``probe`` (CPU time in machine-speed probe times, when
        both sides have probes and ran on the same machine, torch and threads), ``cpu`` (CPU
        time where both sides have it: what a step costs, whatever else the machine ran) or
        ``wall``."""
        b, n = self.b_trained, self.n_trained
        if not (match.has_cpu_time(b) and match.has_cpu_time(n)):
            return "wall"
        if same_machine and match.has_probes(b) and match.has_probes(n):
            return "probe"
        return "cpu"


def _tests(
    pairs: list[_Pair], same_machine: bool
) -> tuple[list[stats.RatioInterval], list[stats.RatioInterval]]:
    """Per pair, the steps/s test on its clock (``_Pair.clock``; the variance pooled over the
    pairs on the same clock) and the wall-clock test."""
    rate: list[stats.RatioInterval | None] = [None] * len(pairs)
    for clock in ("probe", "cpu", "wall"):
        at = [i for i, p in enumerate(pairs) if p.clock(same_machine) == clock]
        column, probe = (
            ("window_s", False) if clock == "wall" else ("window_cpu_s", clock == "probe")
        )
        units = [
            (
                match.units(pairs[i].b_trained, column, probe),
                match.units(pairs[i].n_trained, column, probe),
            )
            for i in at
        ]
        for i, test in zip(at, stats.unit_ratio_tests(units), strict=True):
            rate[i] = test
    wall = stats.unit_ratio_tests(
        [
            (match.units(p.b_trained, "window_s"), match.units(p.n_trained, "window_s"))
            for p in pairs
        ]
    )
    return [r for r in rate if r is not None], wall


def _row(
    pair: _Pair,
    rate: stats.RatioInterval,
    wall: stats.RatioInterval,
    limits: dict[str, Threshold],
    same_machine: bool,
) -> dict[str, Any]:
    b, n = pair.b, pair.n
    row: dict[str, Any] = {"configuration": pair.described, "key": json.loads(pair.key)}
    row["axes"] = pair.axes
    row["trajectory"] = match.trajectory(pair.b_runs, pair.n_runs)
    for m in METRICS:
        if m.key == "steps_per_s":
            # base and new stay the report's medians; the change is the tested one
            c = stats.timed_change(
                b[m.column], n[m.column], rate, True, limits[m.key], tested_change=True
            )
            c["clock"] = pair.clock(same_machine)
            c["units"] = list(rate.units)
        elif m.key == "time_to_target_s":
            c = stats.time_to_target_change(b, n, rate, wall, limits[m.key])
        else:
            c = stats.change(b[m.column], n[m.column], m.higher_is_better, limits[m.key])
        row[m.name] = c
    reached_b = b["reached"] / b["runs"] if b["reached"] >= 0 else None
    reached_n = n["reached"] / n["runs"] if n["reached"] >= 0 else None
    row["reached"] = {
        "base": f"{b['reached']}/{b['runs']}" if reached_b is not None else None,
        "new": f"{n['reached']}/{n['runs']}" if reached_n is not None else None,
        "regression": bool(
            reached_b is not None and reached_n is not None and reached_n < reached_b
        ),
    }
    row["regression"] = any(row[m.name]["regression"] for m in METRICS) or bool(
        row["reached"]["regression"]
    )
    return row


def compare(
    base_dir: Path,
    new_dir: Path,
    threshold: float,
    all_versions: bool = False,
    fail_on: dict[str, Threshold] | None = None,
) -> Comparison:
    """Match the configurations of two results folders and compute the changes (of each
    folder's current grid version, unless ``all_versions``). ``fail_on`` sets a threshold per
    metric (``limits.parse_fail_on``); the others use ``threshold``."""
    limits = {key: Threshold(threshold) for key in FAIL_ON_KEYS} | (fail_on or {})
    extra = ["spec", "loss_digest", "window_cpu_s", "window_probe_s"]
    base_runs = report.load_runs(Path(base_dir), extra_columns=extra, all_versions=all_versions)
    new_runs = report.load_runs(Path(new_dir), extra_columns=extra, all_versions=all_versions)
    names = list(dict.fromkeys([*report.axis_names(base_runs), *report.axis_names(new_runs)]))
    names = names or ["optimizer", "lr"]
    # Same axis values on another problem (or optimizer, or batch size) is not the same run.
    identity = [*names, *(k for k in match.IDENTITY if k not in names)]
    base = report.summarize_runs(base_runs)
    new = report.summarize_runs(new_runs)
    base["key"] = match.match_keys(base_runs, base, identity)
    new["key"] = match.match_keys(new_runs, new, identity)
    new_by_key = {k: i for i, k in enumerate(new["key"])}
    labels = [n for n in names if n != "config_id"]
    base_labels = report.label_columns(match.first_runs(base_runs, base), labels)
    result = Comparison(threshold=threshold, labels=labels, thresholds=limits)
    result.env_differences = match.environment_differences(Path(base_dir), Path(new_dir))
    pairs = []
    for i, key in enumerate(base["key"]):
        described = report.describe(base_labels.iloc[i], labels)
        if key not in new_by_key:
            result.only_base.append(described)
            continue
        b, n = base.iloc[i], new.iloc[new_by_key[key]]
        axes = {c: report.json_number(base_labels.iloc[i][c]) for c in labels}
        pairs.append(
            _Pair(
                described,
                key,
                axes,
                b,
                n,
                base_runs[base_runs["run_id"].isin(b["run_ids"])],
                new_runs[new_runs["run_id"].isin(n["run_ids"])],
                match.trained(base_runs, b["run_ids"]),
                match.trained(new_runs, n["run_ids"]),
            )
        )
    new_labels = report.label_columns(match.first_runs(new_runs, new), labels)
    base_keys = set(base["key"])
    result.only_new = [
        report.describe(new_labels.iloc[i], labels)
        for i, k in enumerate(new["key"])
        if k not in base_keys
    ]
    if not pairs:
        raise UsageError(
            f"compare: no configuration of {base_dir} matches one of {new_dir} "
            f"(axes compared: {', '.join(names)})"
        )
    same_machine = match.same_environment(Path(base_dir), Path(new_dir))
    rate, wall = _tests(pairs, same_machine)
    result.rows = [
        _row(p, r, w, limits, same_machine) for p, r, w in zip(pairs, rate, wall, strict=True)
    ]
    for m in METRICS:
        changes = [r[m.name] for r in result.rows if r[m.name]["change"] is not None]
        intervals = [
            (1 + c["interval"][0], 1 + c["interval"][1]) for c in changes if c.get("interval")
        ]
        result.overall[m.name] = stats.overall(
            m, [1 + c["change"] for c in changes], intervals, limits[m.key]
        )
    return result
