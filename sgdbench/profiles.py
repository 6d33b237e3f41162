"""Cross-problem summaries of a suite: tuned learning rates, performance profiles, ranks,
win/loss counts and tuneability. Pure pandas/numpy on a runs table; no files, no plotting.

The input has one row per run with columns ``problem``, ``optimizer``, ``lr``, ``seed``,
``status``, ``final_loss``, ``steps_to_target`` and ``time_to_target_s`` (empty when the run never
reached target). Lower is better for every quantity here.

- Tuning protocol (DeepOBS): per problem and optimizer, the grid's lr with the fewest median steps
  to target over the seeds (a seed that never reached target counts as +inf), ties and
  never-reached broken by the median final loss (a diverged run's counts as +inf), then the
  smaller lr. Every seed at that lr is the optimizer's result on the problem.
- Performance profile (Dolan & Moré 2002, in AlgoPerf's form): r[p, o] = the tuned optimizer's
  median steps (or seconds) to target on problem p divided by the best optimizer's on p; +inf when
  it never reaches target (or when no optimizer does). rho_o(tau) = fraction of problems with
  r[p, o] <= tau; score_o = the area under rho_o over [1, tau_max] divided by (tau_max - 1).
- Tuneability ("Descending through a Crowded Valley", Schmidt et al. 2021): the expected best
  result after k lrs drawn uniformly, with replacement, from the grid's lrs, from the order
  statistics of the results already run (no extra runs).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

TRAINED = ("ok", "diverged", "stalled", "timeout")  # runs whose numbers mean something
METRICS = {"steps": "steps_to_target", "time": "time_to_target_s"}
KEYS = ["problem", "optimizer"]


def _median(values: pd.Series) -> float:
    v = values.to_numpy(dtype=np.float64, na_value=math.inf)
    return float(np.median(v)) if len(v) else math.nan


def lr_results(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (problem, optimizer, lr): seeds, seeds that reached target, and the medians
    over seeds of steps and seconds to target (+inf for a seed that never reached it) and of the
    final loss (+inf for a diverged or non-finite one). Failed and skipped runs are left out."""
    trained = runs[runs["status"].isin(TRAINED)].copy()
    final = trained["final_loss"].to_numpy(dtype=np.float64, na_value=math.inf).copy()
    final[(trained["status"] == "diverged").to_numpy() | ~np.isfinite(final)] = math.inf
    trained["final_loss"] = final
    rows = []
    for (problem, optimizer, lr), g in trained.groupby([*KEYS, "lr"], sort=False):
        rows.append(
            {
                "problem": problem,
                "optimizer": optimizer,
                "lr": float(lr),
                "seeds": len(g),
                "reached": int(g["steps_to_target"].notna().sum()),
                "steps_to_target": _median(g["steps_to_target"]),
                "time_to_target_s": _median(g["time_to_target_s"]),
                "final_loss": _median(g["final_loss"]),
            }
        )
    columns = [*KEYS, "lr", "seeds", "reached", *METRICS.values(), "final_loss"]
    return pd.DataFrame(rows, columns=columns)


def tune(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (problem, optimizer), the row of ``lr_results`` at the tuned lr (module docstring),
    with ``lrs``: how many lrs the grid tried."""
    per_lr = lr_results(runs)
    ordered = per_lr.sort_values([*KEYS, "steps_to_target", "final_loss", "lr"], kind="stable")
    tuned = ordered.groupby(KEYS, sort=False).head(1).copy()
    tuned["lrs"] = tuned.apply(
        lambda r: int(
            ((per_lr["problem"] == r["problem"]) & (per_lr["optimizer"] == r["optimizer"])).sum()
        ),
        axis=1,
    )
    order = {k: list(dict.fromkeys(per_lr[k])) for k in KEYS}  # first-seen order, as in the grid
    tuned["_p"] = tuned["problem"].map(order["problem"].index)
    tuned["_o"] = tuned["optimizer"].map(order["optimizer"].index)
    return tuned.sort_values(["_p", "_o"]).drop(columns=["_p", "_o"]).reset_index(drop=True)


def values(tuned: pd.DataFrame, metric: str = "steps") -> pd.DataFrame:
    """problem × optimizer table of the tuned ``metric`` ("steps" or "time"); +inf: never
    reached target; NaN: the optimizer has no trained run on that problem."""
    table = tuned.pivot(index="problem", columns="optimizer", values=METRICS[metric])
    return table.loc[list(dict.fromkeys(tuned["problem"])), list(dict.fromkeys(tuned["optimizer"]))]


def ratios(tuned: pd.DataFrame, metric: str = "steps") -> pd.DataFrame:
    """problem × optimizer performance ratios: the tuned ``metric`` over the best optimizer's on
    that problem (1.0 = best; +inf = never reached, or no optimizer did)."""
    table = values(tuned, metric).fillna(math.inf)
    t = table.to_numpy(dtype=np.float64)
    best = t.min(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = t / best
    r[t == best] = 1.0  # the best itself, also when it is 0 (target met at the start)
    r[~np.isfinite(t) | ~np.isfinite(best) | np.isnan(r)] = math.inf
    return pd.DataFrame(r, index=table.index, columns=table.columns)


def profile(ratio: pd.DataFrame, taus: np.ndarray) -> pd.DataFrame:
    """rho_o(tau): tau × optimizer, the fraction of problems with ratio <= tau."""
    r = ratio.to_numpy(dtype=np.float64)
    rho = (r[None, :, :] <= np.asarray(taus, dtype=np.float64)[:, None, None]).mean(axis=1)
    return pd.DataFrame(rho, index=pd.Index(taus, name="tau"), columns=ratio.columns)


def scores(ratio: pd.DataFrame, tau_max: float = 4.0) -> pd.Series:
    """The normalised area under each optimizer's profile on [1, tau_max], in [0, 1].

    rho is a step function, so the area is exact: a problem with ratio r adds (tau_max - r) for
    r <= tau_max, nothing beyond (never reaching target is r = +inf)."""
    r = ratio.to_numpy(dtype=np.float64)
    area = np.clip(tau_max - np.maximum(r, 1.0), 0.0, None)
    return pd.Series(area.mean(axis=0) / (tau_max - 1.0), index=ratio.columns, name="score")


def ranks(tuned: pd.DataFrame, metric: str = "steps") -> pd.DataFrame:
    """problem × optimizer rank of the tuned ``metric`` (1 = best; ties share the mean rank;
    never reaching target ranks below every optimizer that did), with a ``mean rank`` row."""
    table = values(tuned, metric).fillna(math.inf)
    ranked = table.rank(axis=1, method="average")
    ranked.loc["mean rank"] = ranked.mean(axis=0)
    return ranked


def win_loss(tuned: pd.DataFrame, metric: str = "steps") -> pd.DataFrame:
    """optimizer × optimizer: on how many problems the row's tuned ``metric`` is strictly better
    than the column's (reaching target beats not reaching it; neither reaching is a draw)."""
    table = values(tuned, metric).fillna(math.inf).to_numpy(dtype=np.float64)
    wins = (table[:, :, None] < table[:, None, :]).sum(axis=0)
    names = list(dict.fromkeys(tuned["optimizer"]))
    return pd.DataFrame(wins, index=pd.Index(names, name="wins"), columns=names)


def expected_best(sorted_values: np.ndarray, k: int) -> float:
    """E[min of k draws with replacement] from ``sorted_values`` (ascending): the minimum is the
    i-th smallest (1-based) with probability ((n-i+1)/n)^k - ((n-i)/n)^k."""
    n = len(sorted_values)
    i = np.arange(1, n + 1)
    p = ((n - i + 1) / n) ** k - ((n - i) / n) ** k
    return float(np.dot(p, sorted_values))


def tuneability(runs: pd.DataFrame, k_max: int | None = None) -> pd.DataFrame:
    """Per problem, optimizer and k = 1..k_max (default: the most lrs any optimizer tried):
    ``expected_final_loss``, the expected best median final loss after k random lr trials, and
    ``p_reached``, the probability that at least one of them reaches target at the median seed.

    A diverged lr counts as the worst finite final loss seen on that problem (a number, so one
    bad lr in the grid does not make every expectation infinite)."""
    per_lr = lr_results(runs)
    if k_max is None:
        k_max = int(per_lr.groupby(KEYS).size().max()) if len(per_lr) else 0
    rows = []
    for problem, g_problem in per_lr.groupby("problem", sort=False):
        finite = g_problem["final_loss"][np.isfinite(g_problem["final_loss"])]
        worst = float(finite.max()) if len(finite) else math.nan
        for optimizer, g in g_problem.groupby("optimizer", sort=False):
            loss = np.sort(np.where(np.isfinite(g["final_loss"]), g["final_loss"], worst))
            share_reached = float(np.isfinite(g["steps_to_target"]).mean())
            for k in range(1, k_max + 1):
                rows.append(
                    {
                        "problem": problem,
                        "optimizer": optimizer,
                        "k": k,
                        "expected_final_loss": expected_best(loss, k),
                        "p_reached": 1.0 - (1.0 - share_reached) ** k,
                    }
                )
    columns = [*KEYS, "k", "expected_final_loss", "p_reached"]
    return pd.DataFrame(rows, columns=columns)
