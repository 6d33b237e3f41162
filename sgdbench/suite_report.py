"""``sgdbench report SUITE_DIR``: per-problem tuned results, then the cross-problem summary.

Reads each member folder with ``report.load_runs`` (so version filtering, ``--all`` and
``--target-loss`` mean what they mean for one folder), computes with ``sgdbench.profiles``, and
renders the sections as a rich table, markdown, csv or json.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sgdbench import profiles
from sgdbench.errors import UsageError

TAU_MAX = 4.0
PROTOCOL = (
    "Tuning protocol (as DeepOBS): for each problem and optimizer, the grid's lr with the fewest "
    "median steps to target over the seeds (a seed that never reached target counts as never), "
    "ties and never-reached broken by the median final loss; every seed at that lr is the "
    "optimizer's result. Profiles (Dolan & Moré, AlgoPerf's form): ratio = steps (or seconds) "
    "to target over the best optimizer's on that problem, never reaching target = infinite; "
    "score = area under the fraction of problems within ratio tau, for tau in [1, "
    f"{TAU_MAX:g}], divided by {TAU_MAX - 1:g}. Tuneability (Crowded Valley): the expected best "
    "median final loss after k lrs drawn at random (with replacement) from the grid's lrs; a "
    "diverged lr counts as the problem's worst finite final loss."
)


@dataclass
class SuiteResults:
    """Everything a suite report shows, computed once for every format."""

    name: str
    problems: pd.DataFrame  # label, problem, problem_kwargs, target_loss, runs
    runs: pd.DataFrame  # one row per run: profiles' input columns
    tuned: pd.DataFrame
    tuneability: pd.DataFrame
    ratios: dict[str, pd.DataFrame] = field(default_factory=dict)
    scores: dict[str, pd.Series] = field(default_factory=dict)
    ranks: dict[str, pd.DataFrame] = field(default_factory=dict)
    wins: dict[str, pd.DataFrame] = field(default_factory=dict)


def _optimizer_labels(runs: pd.DataFrame) -> list[str]:
    """The optimizer as the profiles compare it: its name, plus any other varying grid axis but
    lr and seed (``adam batch_size=32``), so configurations that differ are never merged."""
    from sgdbench.report import axis_names, label_columns

    others = [a for a in axis_names(runs) if a not in ("optimizer", "lr")]
    frame = label_columns(runs, ["optimizer", *others])
    return [
        " ".join([str(r["optimizer"]), *(f"{a}={r[a]}" for a in others)])
        for _, r in frame.iterrows()
    ]


def load(
    results: Path, *, target_loss: float | None = None, all_versions: bool = False
) -> SuiteResults:
    """Read every member folder of a suite results folder and compute the summaries."""
    from sgdbench.report import load_runs
    from sgdbench.suite import SUITE_MARKER, suite_members

    results = Path(results)
    frames = []
    problems = []
    for label in suite_members(results):
        folder = results / label
        if not folder.is_dir():
            print(f"sgdbench: {folder}: not run yet, left out", file=sys.stderr)
            continue
        runs = load_runs(
            folder,
            extra_columns=["problem", "problem_kwargs"],
            target_loss=target_loss,
            all_versions=all_versions,
        )
        targets = runs["target_loss"].dropna().unique()
        problems.append(
            {
                "label": label,
                "problem": runs["problem"].iloc[0],
                "problem_kwargs": runs["problem_kwargs"].iloc[0],
                "target_loss": float(targets[0]) if len(targets) == 1 else math.nan,
                "runs": len(runs),
            }
        )
        frame = runs[[c for c in runs.columns if c in _RUN_COLUMNS]].copy()
        frame["optimizer"] = _optimizer_labels(runs)
        frame["problem"] = label
        frames.append(frame)
    if not frames:
        raise UsageError(f"{results}: no member of the suite has results yet")
    runs = pd.concat(frames, ignore_index=True)
    tuned = profiles.tune(runs)
    try:  # the suite's own name; the folder may have been renamed or given with --out
        name = str(json.loads((results / SUITE_MARKER).read_text()).get("suite", results.name))
    except (OSError, ValueError, AttributeError):
        name = results.name
    out = SuiteResults(
        name=name,
        problems=pd.DataFrame(problems),
        runs=runs,
        tuned=tuned,
        tuneability=profiles.tuneability(runs),
    )
    for metric in profiles.METRICS:
        out.ratios[metric] = profiles.ratios(tuned, metric)
        out.scores[metric] = profiles.scores(out.ratios[metric], TAU_MAX)
        out.ranks[metric] = profiles.ranks(tuned, metric)
        out.wins[metric] = profiles.win_loss(tuned, metric)
    return out


_RUN_COLUMNS = (
    "run_id",
    "optimizer",
    "lr",
    "seed",
    "status",
    "final_loss",
    "steps_to_target",
    "time_to_target_s",
)


# ---------------------------------------------------------------------------------------------
# sections: (title, header, rows); every text format draws the same cells


def _steps(x: float) -> str:
    if not math.isfinite(x):
        return "never"
    return f"{x:,.0f}" if x == int(x) else f"{x:,.1f}"  # a median of two seeds may be a half


def _config(kwargs_json: Any) -> str:
    """``n_samples=200 noise=0.1``: the problem's parameters that are set."""
    try:
        kwargs = json.loads(kwargs_json) if isinstance(kwargs_json, str) else {}
    except ValueError:
        return str(kwargs_json)
    return " ".join(f"{k}={json.dumps(v)}" for k, v in kwargs.items() if v is not None)


def _ratio(x: float) -> str:
    return "never" if not math.isfinite(x) else f"{x:.2f}"


def sections(res: SuiteResults) -> list[tuple[str, list[str], list[list[str]]]]:
    """The report's tables, in order: per problem, then the cross-problem summary."""
    from sgdbench.report import fmt_seconds, fmt_sig

    out = []
    for _, p in res.problems.iterrows():
        rows = []
        for _, r in res.tuned[res.tuned["problem"] == p["label"]].iterrows():
            rows.append(
                [
                    r["optimizer"],
                    f"{r['lr']:g}",
                    f"{int(r['lrs'])}",
                    f"{int(r['reached'])}/{int(r['seeds'])}",
                    _steps(r["steps_to_target"]),
                    "never"
                    if not math.isfinite(r["time_to_target_s"])
                    else fmt_seconds(r["time_to_target_s"]),
                    fmt_sig(r["final_loss"]) if math.isfinite(r["final_loss"]) else "diverged",
                    _ratio(res.ratios["steps"].loc[p["label"], r["optimizer"]]),
                ]
            )
        target = "" if math.isnan(p["target_loss"]) else f", target loss {p['target_loss']:g}"
        out.append(
            (
                f"{p['label']}: {p['problem']} {_config(p['problem_kwargs'])}{target}",
                [
                    "optimizer",
                    "tuned lr",
                    "lrs",
                    "reached",
                    "steps to target",
                    "time to target",
                    "final loss",
                    "steps ratio",
                ],
                rows,
            )
        )
    names = list(res.scores["steps"].index)
    n_problems = len(res.problems)
    reached = {o: int(np.isfinite(res.ratios["steps"][o]).sum()) for o in names}
    rows = [
        [
            o,
            f"{res.scores['steps'][o]:.3f}",
            f"{res.scores['time'][o]:.3f}",
            f"{res.ranks['steps'].loc['mean rank', o]:.2f}",
            f"{res.ranks['time'].loc['mean rank', o]:.2f}",
            f"{reached[o]}/{n_problems}",
        ]
        for o in sorted(names, key=lambda o: (-res.scores["steps"][o], o))
    ]
    out.append(
        (
            f"Across {n_problems} problems: performance-profile score (1 = best on every "
            f"problem) and mean rank",
            [
                "optimizer",
                "score (steps)",
                "score (time)",
                "mean rank (steps)",
                "mean rank (time)",
                "reached target",
            ],
            rows,
        )
    )
    ratio = res.ratios["steps"]
    out.append(
        (
            "Steps to target over the best optimizer's, per problem",
            ["problem", *names],
            [[p, *(_ratio(ratio.loc[p, o]) for o in names)] for p in ratio.index],
        )
    )
    wins = res.wins["steps"]
    out.append(
        (
            "Wins (steps to target): problems on which the row beats the column",
            ["", *names],
            [[o, *(str(int(wins.loc[o, c])) if o != c else "-" for c in names)] for o in names],
        )
    )
    t = res.tuneability
    ks = sorted(t["k"].unique())
    rows = []
    for (problem, optimizer), g in t.groupby(["problem", "optimizer"], sort=False):
        g = g.set_index("k")
        rows.append(
            [
                problem,
                optimizer,
                *(fmt_sig(g.loc[k, "expected_final_loss"]) for k in ks),
                *(f"{g.loc[k, 'p_reached']:.2f}" for k in (ks[0], ks[-1])),
            ]
        )
    out.append(
        (
            "Tuneability: expected best final loss after k random lr trials; P(reach target)",
            [
                "problem",
                "optimizer",
                *(f"k={k}" for k in ks),
                f"P(reach) k={ks[0]}",
                f"P(reach) k={ks[-1]}",
            ],
            rows,
        )
    )
    return out


def _markdown(res: SuiteResults) -> str:
    lines = [f"# {res.name}: {len(res.problems)} problem(s)", "", PROTOCOL]
    for title, header, rows in sections(res):
        lines += ["", f"## {title}", ""]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _rich(res: SuiteResults, *, color: bool, width: int) -> str:
    from io import StringIO

    from rich import box
    from rich.table import Table

    from sgdbench.report.table import text_console

    buf = StringIO()
    console = text_console(buf, width, color)
    console.print(f"{res.name}: {len(res.problems)} problem(s)", markup=False)
    console.print(PROTOCOL, markup=False)
    for title, header, rows in sections(res):
        # The title is a line of its own: as a table title, rich wraps it to the table's width.
        console.print()
        console.print(title, markup=False, style="bold" if color else "")
        t = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
        for i, h in enumerate(header):
            left = i == 0 or h in ("problem", "optimizer")
            t.add_column(h, justify="left" if left else "right", overflow="fold")
        for r in rows:
            t.add_row(*r)
        console.print(t)
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()) + "\n"


def _plain(value: Any) -> Any:
    """JSON has no infinity: never reaching target is null."""
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict("records")]


def _matrix(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    return {str(i): {str(c): _plain(frame.loc[i, c]) for c in frame.columns} for i in frame.index}


def _json(res: SuiteResults) -> str:
    doc = {
        "suite": res.name,
        "protocol": PROTOCOL,
        "tau_max": TAU_MAX,
        "problems": _records(res.problems),
        "tuned": _records(res.tuned),
        "profiles": {
            metric: {
                "ratios": _matrix(res.ratios[metric]),
                "scores": {k: _plain(v) for k, v in res.scores[metric].items()},
                "ranks": _matrix(res.ranks[metric]),
                "wins": _matrix(res.wins[metric]),
            }
            for metric in profiles.METRICS
        },
        "tuneability": _records(res.tuneability),
    }
    return json.dumps(doc, indent=2) + "\n"


def _csv(res: SuiteResults) -> str:
    """One row per problem and optimizer: the tuned result and its profile ratios."""
    table = res.tuned.copy()
    for metric in profiles.METRICS:
        ratio = res.ratios[metric]
        table[f"{metric}_ratio"] = [
            ratio.loc[p, o] for p, o in zip(table["problem"], table["optimizer"], strict=True)
        ]
    return table.to_csv(index=False)


def render(
    results: Path,
    *,
    fmt: str = "table",
    target_loss: float | None = None,
    all_versions: bool = False,
    color: bool = False,
    width: int = 100,
) -> str:
    """The suite report of a suite results folder as text in ``fmt``."""
    res = load(results, target_loss=target_loss, all_versions=all_versions)
    if fmt == "json":
        return _json(res)
    if fmt == "csv":
        return _csv(res)
    if fmt == "markdown":
        return _markdown(res)
    if fmt == "table":
        return _rich(res, color=color, width=width)
    raise UsageError(f"--format {fmt}: a suite folder reports as table, markdown, csv or json")
