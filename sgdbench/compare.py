"""``sgdbench compare BASE NEW``: per-configuration changes between two results folders.

Configurations are matched by the values of their grid axes (seed excluded): the union of both
folders' axes, a value a folder does not vary read from its run spec; the problem (with its
parameters), optimizer and batch size must match too. Both sides are summarized by
``report.summarize_runs``.

What is deterministic is compared exactly: the loss digests of the seeds both sides ran
("identical trajectory"), steps to target and final loss. Timings are noisy, so they are
compared with a statistic: the ratio new/base of the median throughput over every timed window
of every seed and repeat, with a bootstrap interval (``sgdbench.timing``), on the windows' CPU
time where both sides have it (other processes' load hardly moves it), else on wall clock.
Time to target carries the wall-clock noise, and is judged on what it is made of: the exact
steps to target over that throughput ratio. A change in a timing is a regression only when it
is beyond both its threshold and the noise: the whole interval lies beyond the threshold on the
worse side. An interval that holds 1 is "no significant change". Thresholds default to
``--threshold`` and are set per metric with ``--fail-on METRIC:5%`` (relative) or ``METRIC:N``
(absolute, in the metric's unit), pytest-benchmark's grammar. A regression makes ``sgdbench
compare`` exit 1.
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sgdbench import metrics, report, timing
from sgdbench.errors import UsageError, did_you_mean

COMPARE_SCHEMA_VERSION = 2
# Matched on top of the axes, from the run spec: what is optimized, and by what.
IDENTITY = ("problem", "problem_kwargs", "optimizer", "batch_size")
# env.json fields that make timings of two folders incomparable: machine, torch, threads.
ENV_FIELDS = ("hostname", "processor", "cpu_count", "torch_version", "torch_threads")


@dataclass(frozen=True)
class Metric:
    column: str  # in report.summarize_runs's frame
    name: str
    higher_is_better: bool
    key: str  # its name in --fail-on
    timed: bool  # measured with a clock: compared with its noise, not exactly


METRICS = (
    Metric("steps_per_s_median", "steps/s", True, "steps_per_s", True),
    Metric("steps_to_target_median", "steps to target", False, "steps_to_target", False),
    Metric("time_to_target_s_median", "time to target", False, "time_to_target_s", True),
    Metric("final_loss_median", "final loss", False, "final_loss", False),
)
FAIL_ON_KEYS = tuple(m.key for m in METRICS)


@dataclass(frozen=True)
class Threshold:
    """How much worse a metric may get: a fraction (``relative``) or an amount in its unit."""

    value: float
    relative: bool = True

    def exceeded(self, base: float, new: float, higher_is_better: bool) -> bool:
        worse = (base - new) if higher_is_better else (new - base)
        if self.relative:
            if base == 0:
                return worse > 0
            return worse / abs(base) > self.value
        return worse > self.value


def parse_threshold(text: str | float) -> float:
    """``"5%"`` or ``5`` -> 0.05 (a bare number is a percentage)."""
    raw = str(text).strip()
    try:
        value = float(raw.removesuffix("%"))
    except ValueError:
        raise UsageError(f"--threshold: expected a percentage like 5%, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"--threshold: must be a percentage >= 0, got {text!r}")
    return value / 100


_FAIL_ON = re.compile(r"^\s*([A-Za-z_]+)\s*:\s*([^%\s]+)\s*(%?)\s*$")


def parse_fail_on(texts: list[str], default: float) -> dict[str, Threshold]:
    """Per-metric thresholds from ``--fail-on METRIC:N%`` (relative) or ``METRIC:N`` (absolute,
    in the metric's unit), pytest-benchmark's grammar; metrics not named get ``default``."""
    out = {key: Threshold(default) for key in FAIL_ON_KEYS}
    for text in texts:
        m = _FAIL_ON.match(text)
        if m is None:
            raise UsageError(
                f"--fail-on: expected METRIC:N% or METRIC:N (e.g. steps_per_s:10%), got {text!r}"
            )
        key, number, percent = m.groups()
        if key not in FAIL_ON_KEYS:
            raise UsageError(
                f"--fail-on: {key}: unknown metric{did_you_mean(key, FAIL_ON_KEYS)} "
                f"(one of {', '.join(FAIL_ON_KEYS)})"
            )
        try:
            value = float(number)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0:
            raise UsageError(f"--fail-on: {key}: must be a number >= 0, got {number!r}")
        out[key] = Threshold(value / 100, True) if percent else Threshold(value, False)
    return out


def _key_value(name: str, axes: dict[str, Any], spec: dict[str, Any]) -> Any:
    if name in ("lr", "batch_size") and name in spec:  # "full" and 1000 are the same batch
        return spec[name]
    if name in axes:
        return axes[name]
    if name in spec:
        return spec[name]
    return spec.get("optimizer_kwargs", {}).get(name)


def match_keys(runs: pd.DataFrame, table: pd.DataFrame, names: list[str]) -> list[str]:
    """One key per summary row: the JSON of its axis values."""
    first = runs.drop_duplicates("config_id").set_index("config_id")
    keys = []
    for cid in table["config_id"]:
        row = first.loc[cid]
        spec = json.loads(row["spec"]) if row["spec"] else {}
        values = {n: _key_value(n, row["axes_dict"], spec) for n in names}
        keys.append(json.dumps(values, sort_keys=True, default=str))
    return keys


def change(
    base: float, new: float, higher_is_better: bool, threshold: float | Threshold
) -> dict[str, Any]:
    """Relative change new/base - 1 and whether it is a regression beyond ``threshold`` (a
    fraction, or a ``Threshold``). For deterministic quantities, compared exactly.

    Not reaching target (NaN) or diverging (+inf loss) where the baseline did is a regression;
    the reverse an improvement.
    """
    limit = threshold if isinstance(threshold, Threshold) else Threshold(threshold)
    out: dict[str, Any] = {
        "base": report.json_number(base),
        "new": report.json_number(new),
        "change": None,
    }
    b_ok, n_ok = _usable(base), _usable(new)
    if not b_ok and not n_ok:
        out["regression"] = False
        return out
    if b_ok != n_ok:  # one side reached target / stayed finite, the other did not
        out["regression"] = b_ok
        out["change"] = None
        out["note"] = "lost" if b_ok else "gained"
        return out
    if base == new:
        rel = 0.0
    elif base == 0:
        rel = math.inf
    else:
        rel = new / base - 1
    out["change"] = rel if math.isfinite(rel) else None
    out["regression"] = bool(limit.exceeded(float(base), float(new), higher_is_better))
    return out


def timed_change(
    base: float,
    new: float,
    ratio_samples: np.ndarray | None,
    higher_is_better: bool,
    threshold: float | Threshold,
) -> dict[str, Any]:
    """``change`` for a timing: ``ratio_samples`` are bootstrap draws of new/base; the change
    is ``significant`` when their 95% interval lies on one side of 1, and a regression only
    when the whole interval lies beyond ``threshold`` on the worse side: beyond both the
    threshold and the noise."""
    limit = threshold if isinstance(threshold, Threshold) else Threshold(threshold)
    out = change(base, new, higher_is_better, limit)
    out["interval"] = None
    out["significant"] = False
    if out.get("note") or out["change"] is None:
        return out
    usable = ratio_samples is not None and np.isfinite(ratio_samples).any()
    if not usable:  # no stored timings (older results): never shown as a change
        out["regression"] = False
        out["note"] = "no interval"
        return out
    tail = 100 * (1 - timing.CONFIDENCE) / 2
    lo, hi = np.nanpercentile(ratio_samples, [tail, 100 - tail])
    out["interval"] = [float(lo) - 1, float(hi) - 1]
    out["significant"] = bool(lo > 1 or hi < 1)
    least_worse = hi if higher_is_better else lo  # the end of the interval nearest "better"
    beyond = limit.exceeded(float(base), float(base) * least_worse, higher_is_better)
    out["regression"] = bool(out["regression"] and beyond)
    if not out["significant"]:
        out["note"] = "no significant change"
    return out


def _usable(v: Any) -> bool:
    return v is not None and not pd.isna(v) and math.isfinite(float(v))


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


def _trained(runs: pd.DataFrame, run_ids: list[str]) -> pd.DataFrame:
    return runs[runs["run_id"].isin(run_ids) & runs["status"].isin(report.TRAINED)]


def _has_cpu_time(runs: pd.DataFrame) -> bool:
    """Whether every window of these runs has its CPU time (CPU runs of newer results)."""
    cpu = runs["window_cpu_s"]
    return bool(len(runs)) and all(
        c is not None and len(c) > 0 and np.isfinite(np.asarray(c, dtype=np.float64)).all()
        for c in cpu
    )


def _units(runs: pd.DataFrame, clock: str) -> list[timing.Windows]:
    """The timed windows (steps) of ``runs`` by ``clock`` (a column), one unit per repeat."""
    return metrics.pooled_windows(runs["window_steps"], runs[clock], runs["window_repeat"])


def _ratio_samples(base: list[timing.Windows], new: list[timing.Windows]) -> np.ndarray | None:
    """Bootstrap draws of new/base median steps/s (independent draws for the two sides)."""
    if not base or not new:
        return None
    return timing.bootstrap_medians(new, seed=timing.SEED + 1) / timing.bootstrap_medians(base)


def _cpu_change(
    shown: dict[str, Any], rate_b: float, rate_n: float, limit: Threshold
) -> dict[str, Any]:
    """The steps/s change measured on CPU time: ``shown`` keeps the report's (wall-clock)
    medians as base and new; the change, and so the threshold, is the CPU-time one (an absolute
    threshold applies to that change times the base's steps/s)."""
    if not (_usable(rate_b) and _usable(rate_n)) or rate_b <= 0 or shown["base"] is None:
        return shown
    rel = rate_n / rate_b - 1
    shown["change"] = rel
    beyond = Threshold(limit.value, limit.relative).exceeded(
        1.0 if limit.relative else float(shown["base"]),
        (1.0 if limit.relative else float(shown["base"])) * (1 + rel),
        True,
    )
    ref = 1.0 if limit.relative else float(shown["base"])
    interval = shown["interval"]
    noise = interval is not None and limit.exceeded(ref, ref * (1 + interval[1]), True)
    shown["regression"] = bool(beyond and noise)
    return shown


def _time_to_target_samples(
    b: pd.Series, n: pd.Series, wall: np.ndarray | None, rate: np.ndarray
) -> tuple[np.ndarray | None, tuple[float, float]]:
    """Bootstrap draws of the time-to-target ratio, and the 95% interval of what it is made
    of (steps to target over the throughput, as a ratio new/base).

    A run's time to target is read once, and includes the warm-up steps (allocation, the
    noisiest part of a run), so there is nothing to measure its noise with: its draws are the
    measured ratio times the relative noise of the wall-clock throughput (``wall``, draws of
    new/base). Whether it changed beyond the noise is judged on what time to target is made
    of: the exact steps to target over the throughput draws ``rate`` (the clock steps/s is
    judged by), so warm-up noise or machine load alone never make a change."""
    tb, tn = b["time_to_target_s_median"], n["time_to_target_s_median"]
    sb, sn = b["steps_to_target_median"], n["steps_to_target_median"]
    none = (math.nan, math.nan)
    if not (_usable(tb) and _usable(tn) and _usable(sb) and _usable(sn)) or tb <= 0 or sb <= 0:
        return None, none
    if wall is None:
        return None, none
    samples = (tn / tb) * np.nanmedian(wall) / wall
    tail = 100 * (1 - timing.CONFIDENCE) / 2
    lo, hi = np.nanpercentile((sn / sb) / rate, [tail, 100 - tail])
    return samples, (float(lo), float(hi))


def _judge_time_to_target(c: dict[str, Any], parts: tuple[float, float], limit: Threshold) -> None:
    """Time to target changed beyond the noise only in the direction its ``parts`` (the
    interval of steps over throughput, new/base) say; slower only when all of it is."""
    lo, hi = parts
    direction = 1 if lo > 1 else -1 if hi < 1 else 0
    measured = 0 if c["change"] is None else (1 if c["change"] > 0 else -1)
    if c["significant"] and direction != measured:
        c["significant"] = False
        c["note"] = "no significant change"
    base = float(c["base"]) if c["base"] is not None else math.nan
    beyond = direction > 0 and limit.exceeded(base, base * lo, False)
    c["regression"] = bool(c["regression"] and c["significant"] and beyond)


def trajectory(base_runs: pd.DataFrame, new_runs: pd.DataFrame) -> dict[str, Any]:
    """Whether the seeds both sides ran have bitwise-identical losses (equal loss digests)."""
    b = base_runs.dropna(subset=["loss_digest"]).drop_duplicates("seed").set_index("seed")
    n = new_runs.dropna(subset=["loss_digest"]).drop_duplicates("seed").set_index("seed")
    seeds = sorted(set(b.index) & set(n.index))
    differ = [s for s in seeds if b.loc[s, "loss_digest"] != n.loc[s, "loss_digest"]]
    return {"seeds": len(seeds), "differ": len(differ), "identical": bool(seeds) and not differ}


def environment_differences(base_dir: Path, new_dir: Path) -> list[str]:
    """The ``ENV_FIELDS`` whose values differ between the folders' env.json files."""

    def read(folder: Path) -> dict[str, Any]:
        try:
            data = json.loads((folder / "env.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    base, new = read(base_dir), read(new_dir)
    if not base or not new:
        return []
    return [f"{k} {base.get(k)} vs {new.get(k)}" for k in ENV_FIELDS if base.get(k) != new.get(k)]


def compare(
    base_dir: Path,
    new_dir: Path,
    threshold: float,
    all_versions: bool = False,
    fail_on: dict[str, Threshold] | None = None,
) -> Comparison:
    """Match the configurations of two results folders and compute the changes (of each
    folder's current grid version, unless ``all_versions``). ``fail_on`` sets a threshold per
    metric (``parse_fail_on``); the others use ``threshold``."""
    limits = {key: Threshold(threshold) for key in FAIL_ON_KEYS} | (fail_on or {})
    extra = ["spec", "loss_digest", "window_cpu_s"]
    base_runs = report.load_runs(Path(base_dir), extra_columns=extra, all_versions=all_versions)
    new_runs = report.load_runs(Path(new_dir), extra_columns=extra, all_versions=all_versions)
    names = list(dict.fromkeys([*report.axis_names(base_runs), *report.axis_names(new_runs)]))
    names = names or ["optimizer", "lr"]
    # Same axis values on another problem (or optimizer, or batch size) is not the same run.
    identity = [*names, *(k for k in IDENTITY if k not in names)]
    base = report.summarize_runs(base_runs)
    new = report.summarize_runs(new_runs)
    base["key"] = match_keys(base_runs, base, identity)
    new["key"] = match_keys(new_runs, new, identity)
    new_by_key = {k: i for i, k in enumerate(new["key"])}
    base_keys = set(base["key"])
    labels = [n for n in names if n != "config_id"]
    base_labels = report.label_columns(_first_runs(base_runs, base), labels)
    result = Comparison(threshold=threshold, labels=labels, thresholds=limits)
    result.env_differences = environment_differences(Path(base_dir), Path(new_dir))
    ratios: dict[str, list[float]] = {m.name: [] for m in METRICS}
    draws: dict[str, list[np.ndarray]] = {m.name: [] for m in METRICS if m.timed}
    for i, key in enumerate(base["key"]):
        described = report.describe(base_labels.iloc[i], labels)
        if key not in new_by_key:
            result.only_base.append(described)
            continue
        b, n = base.iloc[i], new.iloc[new_by_key[key]]
        row: dict[str, Any] = {"configuration": described, "key": json.loads(key)}
        row["axes"] = {c: report.json_number(base_labels.iloc[i][c]) for c in labels}
        b_runs = base_runs[base_runs["run_id"].isin(b["run_ids"])]
        n_runs = new_runs[new_runs["run_id"].isin(n["run_ids"])]
        row["trajectory"] = trajectory(b_runs, n_runs)
        # CPU time where both sides have it: what a step costs, whatever else the machine ran.
        b_trained, n_trained = _trained(base_runs, b["run_ids"]), _trained(new_runs, n["run_ids"])
        cpu = _has_cpu_time(b_trained) and _has_cpu_time(n_trained)
        clock = "window_cpu_s" if cpu else "window_s"
        rate = _ratio_samples(_units(b_trained, clock), _units(n_trained, clock))
        wall = rate
        if cpu:
            wall = _ratio_samples(_units(b_trained, "window_s"), _units(n_trained, "window_s"))
        if cpu:  # the change is the CPU-time one; base and new stay the report's medians
            rate_b = timing.rate(_units(b_trained, clock)).median
            rate_n = timing.rate(_units(n_trained, clock)).median
        for m in METRICS:
            samples, parts = None, (math.nan, math.nan)
            if m.key == "steps_per_s":
                samples = rate
            elif m.timed and rate is not None:
                samples, parts = _time_to_target_samples(b, n, wall, rate)
            if m.timed:
                row[m.name] = timed_change(
                    b[m.column], n[m.column], samples, m.higher_is_better, limits[m.key]
                )
                if m.key == "steps_per_s":
                    row[m.name]["clock"] = "cpu" if cpu else "wall"
                    if cpu and samples is not None:
                        row[m.name] = _cpu_change(row[m.name], rate_b, rate_n, limits[m.key])
                if m.key == "time_to_target_s" and samples is not None:
                    _judge_time_to_target(row[m.name], parts, limits[m.key])
                if row[m.name]["interval"] is not None and samples is not None:
                    draws[m.name].append(samples)
            else:
                row[m.name] = change(b[m.column], n[m.column], m.higher_is_better, limits[m.key])
            if row[m.name]["change"] is not None:
                ratios[m.name].append(1 + row[m.name]["change"])
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
        result.rows.append(row)
    new_labels = report.label_columns(_first_runs(new_runs, new), labels)
    result.only_new = [
        report.describe(new_labels.iloc[i], labels)
        for i, k in enumerate(new["key"])
        if k not in base_keys
    ]
    if not result.rows:
        raise UsageError(
            f"compare: no configuration of {base_dir} matches one of {new_dir} "
            f"(axes compared: {', '.join(names)})"
        )
    for m in METRICS:
        result.overall[m.name] = _overall(m, ratios[m.name], draws.get(m.name), limits[m.key])
    return result


def _overall(
    m: Metric, ratios: list[float], draws: list[np.ndarray] | None, limit: Threshold
) -> dict[str, Any]:
    """Geometric mean of new/base over the configurations where both sides have a number; for
    a timing, with the interval of the geometric mean of the configurations' bootstrap draws
    (independent configurations), and a regression only beyond the threshold and the noise."""
    if not ratios or any(x <= 0 for x in ratios):
        return {"change": None, "n": len(ratios), "regression": False}
    geo = float(np.exp(np.mean(np.log(ratios))))
    # An absolute threshold has no meaning across configurations: only relative ones apply.
    regression = limit.relative and limit.exceeded(1.0, geo, m.higher_is_better)
    out: dict[str, Any] = {"change": geo - 1, "n": len(ratios)}
    if m.timed:
        out["interval"] = None
        if draws and len(draws) == len(ratios):
            geo_draws = np.exp(np.nanmean(np.log(np.vstack(draws)), axis=0))
            tail = 100 * (1 - timing.CONFIDENCE) / 2
            lo, hi = np.nanpercentile(geo_draws, [tail, 100 - tail])
            out["interval"] = [float(lo) - 1, float(hi) - 1]
            least_worse = hi if m.higher_is_better else lo
            regression = regression and limit.exceeded(1.0, least_worse, m.higher_is_better)
        else:
            regression = False
    out["regression"] = bool(regression)
    return out


def _first_runs(runs: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    first = runs.drop_duplicates("config_id").set_index("config_id")
    return first.loc[list(table["config_id"])].reset_index()


# ---------------------------------------------------------------------------------------------
# formats


def _fmt_change(c: dict[str, Any], *, values: bool, fmt: Any) -> str:
    """A metric's change; a timing's always with its interval (``values``: the long form)."""
    interval = c.get("interval")
    if c.get("note") in ("lost", "gained", "no interval"):
        text = c["note"]
    elif c["change"] is None:
        text = "-"
    elif interval is not None and values:
        lo, hi = interval
        text = f"{100 * c['change']:+.1f}% [{100 * lo:+.1f}%, {100 * hi:+.1f}%]"
        if not c["significant"]:
            text = f"no significant change ({text})"
    elif interval is not None:  # the table: compact, n.s. = no significant change
        lo, hi = interval
        shown = "n.s." if not c["significant"] else f"{100 * c['change']:+.0f}%"
        text = f"{shown} [{100 * lo:+.0f},{100 * hi:+.0f}]"
    else:
        text = f"{100 * c['change']:+.1f}%"
    if values and (c["base"] is not None or c["new"] is not None):
        text = f"{fmt(c['base'])} → {fmt(c['new'])} ({text})"
    return text + (" ✗" if c.get("regression") else "")


_FORMATS = {
    "steps/s": report.fmt_rate,
    "steps to target": report.fmt_count,
    "time to target": report.fmt_seconds,
    "final loss": report.fmt_sig,
}


def _cells(comp: Comparison, *, values: bool) -> tuple[list[str], list[list[str]]]:
    """One column per axis, one per metric (relative change; ``values`` adds base → new)."""
    names = (
        [m.name for m in METRICS]
        if values
        else ["steps/s", "steps to\ntarget", "time to\ntarget", "final\nloss"]
    )
    header = [*comp.labels, "trajectory" if values else "losses", *names, "reached", "verdict"]
    rows = []
    for r in comp.rows:
        cells = [report.plain(r["axes"][c]) for c in comp.labels]
        cells.append(_fmt_trajectory(r["trajectory"], values=values))
        cells += [_fmt_change(r[m.name], values=values, fmt=_FORMATS[m.name]) for m in METRICS]
        reached = r["reached"]
        cells.append(
            "-"
            if reached["base"] is None
            else f"{reached['base']} → {reached['new']}" + (" ✗" if reached["regression"] else "")
        )
        cells.append("REGRESSION" if r["regression"] else "ok")
        rows.append(cells)
    overall = ["overall", *[""] * (len(comp.labels) - 1), ""]
    for m in METRICS:
        o = comp.overall[m.name]
        text = "-" if o["change"] is None else f"{100 * o['change']:+.1f}%"
        if o.get("interval") is not None:
            lo, hi = o["interval"]
            text = f"{100 * o['change']:+.0f}% [{100 * lo:+.0f},{100 * hi:+.0f}]"
        overall.append(text + (" ✗" if o["regression"] else ""))
    overall += ["", "REGRESSION" if comp.regressed else "ok"]
    rows.append(overall)
    return header, rows


def _fmt_trajectory(t: dict[str, Any], *, values: bool) -> str:
    """Whether the losses are bitwise identical (equal digests), seed by seed."""
    if not t["seeds"]:
        return "-"
    if t["identical"]:
        return "identical" if values else "same"
    return (
        f"{t['differ']}/{t['seeds']} seeds differ"
        if values
        else f"{t['differ']}/{t['seeds']} differ"
    )


def _fmt_limit(limit: Threshold) -> str:
    return f"{100 * limit.value:g}%" if limit.relative else f"{limit.value:g}"


def _detail_lines(comp: Comparison) -> list[str]:
    """Sentences for what is deterministic: the trajectories, and exact changes in steps."""
    lines = []
    same = [r for r in comp.rows if r["trajectory"]["identical"]]
    if same and len(same) == len(comp.rows):
        lines.append(f"identical trajectory in all {len(same)} configuration(s) (equal digests)")
    for r in comp.rows:
        t = r["trajectory"]
        if t["seeds"] and not t["identical"]:
            lines.append(
                f"{r['configuration']}: trajectory differs ({t['differ']} of {t['seeds']} seeds)"
            )
        steps = r["steps to target"]
        if steps["change"]:
            lines.append(
                f"{r['configuration']}: steps to target {report.fmt_count(steps['base'])} → "
                f"{report.fmt_count(steps['new'])}, {100 * steps['change']:+.1f}%"
            )
    return lines


def _summary_lines(comp: Comparison) -> list[str]:
    n_reg = sum(r["regression"] for r in comp.rows)
    limits = ", ".join(
        f"{m.key} {_fmt_limit(comp.thresholds.get(m.key, Threshold(comp.threshold)))}"
        for m in METRICS
    )
    timed = [r["steps/s"] for r in comp.rows]
    quiet = sum(not c["significant"] for c in timed if "significant" in c)
    lines = [
        f"{len(comp.rows)} configuration(s) matched; {n_reg} regressed beyond their threshold "
        f"({limits}) and the noise (✗)" + ("" if not comp.regressed else ": exit 1"),
        f"steps/s: no significant change (n.s.) in {quiet} of {len(timed)} configuration(s); "
        f"[lo,hi]: {100 * timing.CONFIDENCE:g}% bootstrap interval of the change in %, over "
        "windows, repeats and seeds",
        *_detail_lines(comp),
    ]
    if comp.only_base:
        lines.append(f"Only in base ({len(comp.only_base)}): " + "; ".join(comp.only_base))
    if comp.only_new:
        lines.append(f"Only in new ({len(comp.only_new)}): " + "; ".join(comp.only_new))
    return lines


def to_rich(comp: Comparison, *, color: bool = False, width: int | None = None) -> str:
    """The comparison as a terminal table (``report.render_table``), regressions red."""
    header, rows = _cells(comp, values=False)
    styles = [
        (("red" if cells[-1] == "REGRESSION" else "green") if color else "") for cells in rows
    ]
    table = report.TextTable(
        header, rows, len(comp.labels), row_styles=styles, rule_before_last=True
    )
    return report.render_table(table, _summary_lines(comp), color=color, width=width)


def to_markdown(comp: Comparison) -> str:
    header, rows = _cells(comp, values=True)
    lines = ["| " + " | ".join(header) + " |"]
    n_labels = len(comp.labels)
    lines.append("|" + " --- |" * n_labels + " ---: |" * (len(header) - n_labels))
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    lines.append("")
    lines += [f"{line}\n" for line in _summary_lines(comp)]
    return "\n".join(lines).rstrip() + "\n"


def to_json(comp: Comparison, base: Path, new: Path) -> str:
    doc = {
        "schema_version": COMPARE_SCHEMA_VERSION,
        "base": str(base),
        "new": str(new),
        "threshold": comp.threshold,
        "fail_on": {
            k: {"value": v.value, "relative": v.relative} for k, v in comp.thresholds.items()
        },
        "environment_differences": comp.env_differences,
        "regression": comp.regressed,
        "configurations": comp.rows,
        "overall": comp.overall,
        "only_in_base": comp.only_base,
        "only_in_new": comp.only_new,
    }
    return json.dumps(doc, indent=2, allow_nan=False) + "\n"


def render(
    base: Path,
    new: Path,
    *,
    threshold: str | float = "5%",
    fail_on: list[str] | None = None,
    fmt: str = "table",
    color: bool = False,
    width: int | None = None,
    all_versions: bool = False,
) -> tuple[str, bool]:
    """(text, regressed): the comparison in ``fmt`` and whether anything regressed."""
    default = parse_threshold(threshold)
    limits = parse_fail_on(fail_on or [], default)
    comp = compare(Path(base), Path(new), default, all_versions, limits)
    if comp.env_differences:
        print(
            "sgdbench: warning: the two folders ran in different environments ("
            + "; ".join(comp.env_differences)
            + "): their timings may differ for that reason",
            file=sys.stderr,
        )
    if fmt == "json":
        text = to_json(comp, base, new)
    elif fmt == "markdown":
        text = to_markdown(comp)
    else:
        text = to_rich(comp, color=color, width=width)
    return text, comp.regressed
