"""``sgdbench compare BASE NEW``: per-configuration changes between two results folders.

Configurations are matched by the values of their grid axes (seed excluded): the union of both
folders' axes, a value a folder does not vary read from its run spec; the problem (with its
parameters), optimizer and batch size must match too. Both sides are summarized
by ``report.summarize_runs``, so the numbers compared are the report's medians. A change worse
than the threshold in throughput (steps/s), steps or seconds to target, or final loss, or fewer
seeds reaching target, is a regression: ``sgdbench compare`` then exits 1.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sgdbench import report
from sgdbench.errors import UsageError

COMPARE_SCHEMA_VERSION = 1
# Matched on top of the axes, from the run spec: what is optimized, and by what.
IDENTITY = ("problem", "problem_kwargs", "optimizer", "batch_size")


@dataclass(frozen=True)
class Metric:
    column: str  # in report.summarize_runs's frame
    name: str
    higher_is_better: bool


METRICS = (
    Metric("steps_per_s_median", "steps/s", True),
    Metric("steps_to_target_median", "steps to target", False),
    Metric("time_to_target_s_median", "time to target", False),
    Metric("final_loss_median", "final loss", False),
)


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


def change(base: float, new: float, higher_is_better: bool, threshold: float) -> dict[str, Any]:
    """Relative change new/base - 1 and whether it is a regression beyond ``threshold``.

    Not reaching target (NaN) or diverging (+inf loss) where the baseline did is a regression;
    the reverse an improvement.
    """
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
    worse = -rel if higher_is_better else rel
    out["change"] = rel if math.isfinite(rel) else None
    out["regression"] = bool(worse > threshold)
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

    @property
    def regressed(self) -> bool:
        return any(r["regression"] for r in self.rows) or any(
            m.get("regression") for m in self.overall.values()
        )


def compare(
    base_dir: Path, new_dir: Path, threshold: float, all_versions: bool = False
) -> Comparison:
    """Match the configurations of two results folders and compute the changes (of each
    folder's current grid version, unless ``all_versions``)."""
    base_runs = report.load_runs(Path(base_dir), extra_columns=["spec"], all_versions=all_versions)
    new_runs = report.load_runs(Path(new_dir), extra_columns=["spec"], all_versions=all_versions)
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
    result = Comparison(threshold=threshold, labels=labels)
    ratios: dict[str, list[float]] = {m.name: [] for m in METRICS}
    for i, key in enumerate(base["key"]):
        described = report.describe(base_labels.iloc[i], labels)
        if key not in new_by_key:
            result.only_base.append(described)
            continue
        b, n = base.iloc[i], new.iloc[new_by_key[key]]
        row: dict[str, Any] = {"configuration": described, "key": json.loads(key)}
        row["axes"] = {c: report.json_number(base_labels.iloc[i][c]) for c in labels}
        for m in METRICS:
            row[m.name] = change(b[m.column], n[m.column], m.higher_is_better, threshold)
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
    # Overall: geometric mean of new/base over the configurations where both sides have a number.
    for m in METRICS:
        r = ratios[m.name]
        if not r or any(x <= 0 for x in r):
            result.overall[m.name] = {"change": None, "n": len(r), "regression": False}
            continue
        geo = float(np.exp(np.mean(np.log(r)))) - 1
        worse = -geo if m.higher_is_better else geo
        result.overall[m.name] = {"change": geo, "n": len(r), "regression": worse > threshold}
    return result


def _first_runs(runs: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    first = runs.drop_duplicates("config_id").set_index("config_id")
    return first.loc[list(table["config_id"])].reset_index()


# ---------------------------------------------------------------------------------------------
# formats


def _fmt_change(c: dict[str, Any], *, values: bool, fmt: Any) -> str:
    if c.get("note") == "lost":
        text = "lost"
    elif c.get("note") == "gained":
        text = "gained"
    elif c["change"] is None:
        text = "-"
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
    header = [*comp.labels, *names, "reached", "verdict"]
    rows = []
    for r in comp.rows:
        cells = [report.plain(r["axes"][c]) for c in comp.labels]
        cells += [_fmt_change(r[m.name], values=values, fmt=_FORMATS[m.name]) for m in METRICS]
        reached = r["reached"]
        cells.append(
            "-"
            if reached["base"] is None
            else f"{reached['base']} → {reached['new']}" + (" ✗" if reached["regression"] else "")
        )
        cells.append("REGRESSION" if r["regression"] else "ok")
        rows.append(cells)
    overall = ["overall", *[""] * (len(comp.labels) - 1)]
    for m in METRICS:
        o = comp.overall[m.name]
        text = "-" if o["change"] is None else f"{100 * o['change']:+.1f}%"
        overall.append(text + (" ✗" if o["regression"] else ""))
    overall += ["", "REGRESSION" if comp.regressed else "ok"]
    rows.append(overall)
    return header, rows


def _summary_lines(comp: Comparison) -> list[str]:
    n_reg = sum(r["regression"] for r in comp.rows)
    lines = [
        f"{len(comp.rows)} configuration(s) matched; {n_reg} regressed beyond "
        f"{100 * comp.threshold:g}% (✗)" + ("" if not comp.regressed else ": exit 1")
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
    fmt: str = "table",
    color: bool = False,
    width: int | None = None,
    all_versions: bool = False,
) -> tuple[str, bool]:
    """(text, regressed): the comparison in ``fmt`` and whether anything regressed."""
    comp = compare(Path(base), Path(new), parse_threshold(threshold), all_versions)
    if fmt == "json":
        text = to_json(comp, base, new)
    elif fmt == "markdown":
        text = to_markdown(comp)
    else:
        text = to_rich(comp, color=color, width=width)
    return text, comp.regressed
