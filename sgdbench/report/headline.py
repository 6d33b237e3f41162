"""The headline: which configuration reaches the target first, decided by deterministic
quantities (steps, then samples to target); time decides only a tie, and only when the
difference lies outside the measured noise, and then the headline says so (DESIGN §5)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sgdbench.report.aggregate import axis_names, label_columns, speed_key
from sgdbench.report.fmt import (
    describe,
    fmt_count,
    fmt_seconds,
    fmt_sig,
    fmt_times,
    json_number,
    plain,
)

# Verdicts listed under the table with their explanation (see sgdbench.diagnose).
DIAGNOSED = ("too_slow", "oscillating", "plateau", "lr_too_high")
MAX_LISTED = 10  # diverged/failed runs listed under the table; all of them are in --format json


@dataclass
class Headline:
    """What the user reads first: the fastest configuration to target and what decided it, how
    it compares with the slowest that also reached target, and what diverged or never got
    there."""

    target_loss: float | None
    fastest: dict[str, Any] | None = None
    decided_by: str | None = None  # "reliability" | "steps" | "samples" | "time" | "tie"
    tied_with: list[str] = field(default_factory=list)  # tie that time could not break
    slowest: dict[str, Any] | None = None
    fewer_steps: float | None = None  # slowest's steps / fastest's steps
    times_faster: float | None = None  # slowest's time / fastest's time, only with its interval
    times_faster_interval: tuple[float, float] | None = None
    not_reached: list[str] = field(default_factory=list)
    diverged: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    # runs whose learning rate looks wrong: too_slow, oscillating, plateau, lr_too_high (+ why)
    diagnosed: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The headline as plain JSON types."""
        doc = asdict(self)
        if self.times_faster_interval is not None:
            doc["times_faster_interval"] = list(self.times_faster_interval)
        return doc


def time_interval(row: pd.Series) -> tuple[float, float] | None:
    """The noise band of a configuration's time to target: the seeds' interquartile range,
    widened by the per-run throughput interval when the runs table has one. None when there is
    no measure of noise (one seed, no interval): then time cannot decide anything."""
    q25, q75 = row["time_to_target_s_q25"], row["time_to_target_s_q75"]
    if pd.isna(q25) or pd.isna(q75):
        return None
    lo, hi = float(q25), float(q75)
    steps, fast, slow = (
        row["steps_to_target_median"],
        row.get("steps_per_s_hi"),
        row.get("steps_per_s_lo"),
    )
    has_rate = not (pd.isna(fast) or pd.isna(slow)) and fast > 0 and slow > 0
    if has_rate and not pd.isna(steps):
        lo, hi = min(lo, steps / fast), max(hi, steps / slow)
    if lo == hi and not has_rate:
        return None
    return lo, hi


def time_ratio(slow: pd.Series, fast: pd.Series) -> tuple[float, tuple[float, float]] | None:
    """(slow / fast time to target, its interval), or None without an interval for both."""
    a, b = time_interval(slow), time_interval(fast)
    ts, tf = slow["time_to_target_s_median"], fast["time_to_target_s_median"]
    if a is None or b is None or pd.isna(ts) or pd.isna(tf) or tf <= 0 or b[0] <= 0:
        return None
    return float(ts / tf), (a[0] / b[1], a[1] / b[0])


def _decide(reached: pd.DataFrame, order: list[int]) -> tuple[int, str, list[int]]:
    """(winner's position, what decided, tied positions time could not separate)."""
    keys = [speed_key(reached.iloc[i]) for i in order]
    first = keys[0]
    tied = [order[k] for k in range(1, len(order)) if keys[k][:3] == first[:3]]
    if not tied:
        if len(order) == 1:
            return order[0], "steps", []
        second = keys[1]
        what = "reliability" if second[0] != first[0] else "steps"
        if what == "steps" and second[1] == first[1]:
            what = "samples"
        return order[0], what, []
    group = [order[0], *tied]
    bands = {i: time_interval(reached.iloc[i]) for i in group}
    by_time = sorted(group, key=lambda i: reached.iloc[i]["time_to_target_s_median"])
    best = by_time[0]
    band = bands[best]
    if band is not None and all(
        (other := bands[j]) is not None and band[1] < other[0] for j in group if j != best
    ):
        return best, "time", []
    return order[0], "tie", [i for i in group if i != order[0]]


def headline(runs: pd.DataFrame, table: pd.DataFrame) -> Headline:
    """The headline of a report: ranking as ``speed_key`` (deterministic), time only to break a
    tie beyond the noise."""
    labels = table.attrs["labels"]
    targets = runs["target_loss"].dropna().unique()
    head = Headline(target_loss=float(targets[0]) if len(targets) == 1 else None)
    reached = table[table["reached"] > 0]
    if len(targets) and len(reached):
        order = sorted(range(len(reached)), key=lambda i: speed_key(reached.iloc[i]))
        win, head.decided_by, tied = _decide(reached, order)
        fast = reached.iloc[win]
        head.fastest = _speed_summary(fast, labels)
        head.tied_with = [describe(reached.iloc[i], labels) for i in tied]
        if head.decided_by == "time":
            other = reached.iloc[next(i for i in order if i != win)]
            ratio = time_ratio(other, fast)
            if ratio is not None:
                head.fastest["time_ratio"], head.fastest["time_ratio_interval"] = ratio
                head.fastest["over"] = describe(other, labels)
        slow_i = max(order, key=lambda i: speed_key(reached.iloc[i])[1:])
        if len(reached) > 1 and slow_i != win:
            slow = reached.iloc[slow_i]
            head.slowest = _speed_summary(slow, labels)
            head.fewer_steps = _ratio(
                slow["steps_to_target_median"], fast["steps_to_target_median"]
            )
            ratio = time_ratio(slow, fast)
            if ratio is not None:
                head.times_faster, head.times_faster_interval = ratio
    if len(targets):
        head.not_reached = [describe(r, labels) for _, r in table.iterrows() if r["reached"] == 0]
    _list_runs(runs, head)
    return head


def _list_runs(runs: pd.DataFrame, head: Headline) -> None:
    """Diverged, failed and diagnosed runs, each named by its own grid axes."""
    label_frame = label_columns(runs, axis_names(runs) or ["optimizer", "lr"])
    diagnosed = runs["verdict"].isin(DIAGNOSED).to_numpy() & (runs["status"] == "ok").to_numpy()
    for out, mask in (
        (head.diverged, (runs["status"] == "diverged").to_numpy()),
        (head.failed, (runs["status"] == "failed").to_numpy()),
        (head.diagnosed, diagnosed),
    ):
        for i in np.flatnonzero(mask):
            r = runs.iloc[i]
            message = r["message"] or ""
            if out is head.diagnosed:
                message = f"{r['verdict']}: {r['verdict_detail']}"
            out.append(
                {
                    "run_id": r["run_id"],
                    "configuration": " ".join(
                        f"{c}={plain(label_frame.iloc[i][c])}" for c in label_frame.columns
                    ),
                    "seed": int(r["seed"]),
                    "message": message,
                }
            )


def _speed_summary(row: pd.Series, labels: Sequence[str]) -> dict[str, Any]:
    return {
        "configuration": describe(row, labels),
        "steps_to_target": json_number(row["steps_to_target_median"]),
        "samples_to_target": json_number(row["samples_to_target_median"]),
        "time_to_target_s": json_number(row["time_to_target_s_median"]),
        "reached": int(row["reached"]),
        "runs": int(row["runs"]),
    }


def _ratio(a: float, b: float) -> float | None:
    if pd.isna(a) or pd.isna(b) or b <= 0:
        return None
    return float(a / b)


def fmt_ratio_interval(ratio: float, interval: tuple[float, float]) -> str:
    """``8.36× faster (7.90 … 8.81)``."""
    return f"{fmt_sig(ratio)}× faster ({fmt_sig(interval[0])} … {fmt_sig(interval[1])})"


DECIDED = {
    "reliability": "more of its runs reached target",
    "steps": "fewest steps to target",
    "samples": "same steps, fewest samples to target",
    "time": "same steps and samples; time decided, outside the noise",
    "tie": "tied on steps and samples; time cannot tell them apart within the noise",
}


def headline_blocks(head: Headline) -> list[tuple[str, list[str], bool]]:
    """The headline as (first line, detail lines, details-are-a-list) blocks."""
    blocks: list[tuple[str, list[str], bool]] = []
    target = f"loss ≤ {head.target_loss:g}" if head.target_loss is not None else "target"
    if head.target_loss is None and head.fastest is None:
        blocks.append(
            (
                "No single target_loss in these runs (set one in the grid or --target-loss).",
                [],
                False,
            )
        )
    if head.fastest:
        f = head.fastest
        details = [
            f"{fmt_count(f['steps_to_target'])} steps, {fmt_seconds(f['time_to_target_s'])}"
            f" (median; {f['reached']}/{f['runs']} runs reached target)",
            f"decided by: {DECIDED[head.decided_by or 'steps']}",
        ]
        if "time_ratio" in f:
            details.append(
                f"{fmt_ratio_interval(f['time_ratio'], f['time_ratio_interval'])} than {f['over']}"
            )
        if head.tied_with:
            details.append("tied with: " + "; ".join(head.tied_with))
        if head.slowest:
            s = head.slowest
            words = fmt_times(head.fewer_steps, "steps") if head.fewer_steps else ""
            if head.times_faster and head.times_faster_interval:
                words += ", " + fmt_ratio_interval(head.times_faster, head.times_faster_interval)
            details.append(
                f"{words} than the slowest to target, {s['configuration']}: "
                f"{fmt_count(s['steps_to_target'])} steps, {fmt_seconds(s['time_to_target_s'])}"
            )
        blocks.append((f"Fastest to {target}: {f['configuration']}", details, False))
    elif head.target_loss is not None:
        blocks.append((f"No configuration reached {target}.", [], False))
    if head.not_reached and head.fastest:
        blocks.append((f"Never reached {target}: {len(head.not_reached)}", head.not_reached, True))
    for what, items in (
        ("Diverged", head.diverged),
        ("Failed", head.failed),
        ("Learning rate to revisit", head.diagnosed),
    ):
        if items:
            details = []
            for d in items[:MAX_LISTED]:
                message = f": {d['message']}" if d["message"] else ""
                details.append(f"{d['run_id']}  {d['configuration']} seed={d['seed']}{message}")
            if len(items) > MAX_LISTED:
                details.append(f"… and {len(items) - MAX_LISTED} more (--format json lists all)")
            blocks.append((f"{what}: {len(items)} run(s)", details, True))
    return blocks


def headline_lines(head: Headline) -> list[str]:
    """The headline for a terminal: details indented under their first line (the table
    renderer wraps each with a hanging indent)."""
    return [
        line
        for first, details, _ in headline_blocks(head)
        for line in [first, *(f"    {d}" for d in details)]
    ]
