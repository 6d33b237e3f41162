"""``compare``'s outputs: the terminal table, markdown and JSON, and ``render`` for the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from sgdbench import report, timing
from sgdbench.compare import stats
from sgdbench.compare.core import Comparison, compare
from sgdbench.compare.limits import METRICS, Threshold, parse_fail_on, parse_threshold

COMPARE_SCHEMA_VERSION = 4
# Fewer timed runs (seeds x repeats) than this a side get a hint: 2 seeds x 3 repeats kept the
# false alarms and the misses of benchmarks/compare_trials.py near 1 in 20 on a loaded machine,
# 2 seeds x 1 did not (docs/performance.md).
FIRM_UNITS = 6


def _fmt_change(c: dict[str, Any], *, values: bool, fmt: Any) -> str:
    """A metric's change; a timing's always with its interval (``values``: the long form)."""
    interval = c.get("interval")
    if c.get("note") in ("lost", "gained", stats.NO_INTERVAL, stats.TOO_FEW):
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


def _probe_words(timed: list[dict[str, Any]]) -> str:
    """How many steps/s tests timed in probe times (``stats``), if any did."""
    probed = sum(c.get("clock") == "probe" for c in timed)
    if not probed:
        return ""
    return (
        f"; CPU time measured in machine-speed probe times in {probed} of {len(timed)} "
        "configuration(s), so that the machine's drift between the folders cancels"
    )


def _summary_lines(comp: Comparison) -> list[str]:
    n_reg = sum(r["regression"] for r in comp.rows)
    limits = ", ".join(
        f"{m.key} {_fmt_limit(comp.thresholds.get(m.key, Threshold(comp.threshold)))}"
        for m in METRICS
    )
    timed = [r["steps/s"] for r in comp.rows]
    quiet = sum(c["interval"] is not None and not c["significant"] for c in timed)
    few = sum(c.get("note") == stats.TOO_FEW for c in timed)
    lines = [
        f"{len(comp.rows)} configuration(s) matched; {n_reg} regressed beyond their threshold "
        f"({limits}) and the noise (✗)" + ("" if not comp.regressed else ": exit 1"),
        f"steps/s: no significant change (n.s.) in {quiet} of {len(timed)} configuration(s)"
        + (f", {stats.TOO_FEW} in {few}" if few else "")
        + f"; [lo,hi]: {100 * timing.CONFIDENCE:g}% interval of the change in %, a t interval "
        "over runs and repeats (each one's median window), run-to-run variance pooled over "
        "the configurations" + _probe_words(timed),
        *_detail_lines(comp),
    ]
    fewest = min((min(c["units"]) for c in timed if c.get("units") and min(c["units"])), default=0)
    if 0 < fewest < FIRM_UNITS:
        lines.append(
            f"steps/s: {fewest} timed run(s) a side (seeds × repeats); {FIRM_UNITS} or more, "
            "e.g. 2 seeds and `sgdbench run --repeat 3`, make a firmer test"
        )
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
