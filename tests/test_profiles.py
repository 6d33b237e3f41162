"""Cross-problem summaries (sgdbench.profiles) on hand-made runs whose answers are known.

Two problems, three optimizers, two lrs, two seeds. Tuned steps to target:
    p1: A 100 (lr 0.01), B 200 (lr 0.1), C never (lr 0.01: lower final loss; lr 0.1 diverges)
    p2: A 300 (lr 0.01), B 100 (lr 0.01), C 150 (lr 0.1: steps tie with lr 0.01, lower loss)
so the ratios are p1: 1, 2, inf and p2: 3, 1, 1.5.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from sgdbench import profiles

NAN = math.nan


def _runs() -> pd.DataFrame:
    # (problem, optimizer, lr, steps per seed, final loss per seed, status)
    table = [
        ("p1", "A", 0.01, [100, 100], [0.1, 0.1], "ok"),
        ("p1", "A", 0.1, [NAN, NAN], [0.5, 0.5], "ok"),
        ("p1", "B", 0.01, [300, 300], [0.1, 0.1], "ok"),
        ("p1", "B", 0.1, [200, 200], [0.1, 0.1], "ok"),
        ("p1", "C", 0.01, [NAN, NAN], [0.3, 0.4], "ok"),
        ("p1", "C", 0.1, [NAN, NAN], [NAN, math.inf], "diverged"),
        ("p2", "A", 0.01, [300, 300], [0.1, 0.1], "ok"),
        ("p2", "A", 0.1, [400, 400], [0.1, 0.1], "ok"),
        ("p2", "B", 0.01, [100, 100], [0.1, 0.1], "ok"),
        ("p2", "B", 0.1, [NAN, NAN], [0.9, 0.9], "ok"),
        ("p2", "C", 0.01, [150, 150], [0.2, 0.2], "ok"),
        ("p2", "C", 0.1, [160, 140], [0.1, 0.1], "ok"),
    ]
    rows = []
    for problem, optimizer, lr, steps, finals, status in table:
        for seed, (s, f) in enumerate(zip(steps, finals, strict=True)):
            # time = steps / 1000, except B on p1, twice as fast per step as A
            time_s = s / 1000 / (4 if (problem, optimizer) == ("p1", "B") else 1)
            rows.append(
                dict(
                    problem=problem,
                    optimizer=optimizer,
                    lr=lr,
                    seed=seed,
                    status=status,
                    final_loss=f,
                    steps_to_target=s,
                    time_to_target_s=time_s,
                )
            )
    # A failed run has no numbers: it must neither count as a seed nor move a median.
    rows.append(
        dict(
            problem="p1",
            optimizer="A",
            lr=0.01,
            seed=2,
            status="failed",
            final_loss=NAN,
            steps_to_target=NAN,
            time_to_target_s=NAN,
        )
    )
    return pd.DataFrame(rows)


def test_tuning_protocol_picks_fewest_steps_then_final_loss() -> None:
    tuned = profiles.tune(_runs()).set_index(["problem", "optimizer"])
    assert tuned["lr"].to_dict() == {
        ("p1", "A"): 0.01,
        ("p1", "B"): 0.1,
        ("p1", "C"): 0.01,  # neither lr reaches target: the lower final loss decides
        ("p2", "A"): 0.01,
        ("p2", "B"): 0.01,
        ("p2", "C"): 0.1,  # 150 steps at both lrs: the lower final loss decides
    }
    assert tuned.loc[("p1", "A"), "seeds"] == 2  # the failed run is left out
    assert tuned.loc[("p1", "C"), "steps_to_target"] == math.inf
    assert tuned.loc[("p1", "C"), "final_loss"] == pytest.approx(0.35)
    assert (tuned["lrs"] == 2).all()


def test_a_seed_that_never_reaches_target_counts_as_infinite_in_the_median() -> None:
    runs = _runs()
    # one of B's two seeds at its tuned lr on p1 never reaches: the median becomes +inf, so
    # lr 0.01 (300 steps, both seeds) is B's tuned lr instead
    runs.loc[
        (runs.problem == "p1") & (runs.optimizer == "B") & (runs.lr == 0.1), "steps_to_target"
    ] = [
        200,
        NAN,
    ]
    tuned = profiles.tune(runs).set_index(["problem", "optimizer"])
    assert tuned.loc[("p1", "B"), "lr"] == 0.01
    assert tuned.loc[("p1", "B"), "steps_to_target"] == 300


def test_ratios_scores_ranks_and_win_loss() -> None:
    tuned = profiles.tune(_runs())
    ratio = profiles.ratios(tuned, "steps")
    assert ratio.loc["p1"].tolist() == [1.0, 2.0, math.inf]
    assert ratio.loc["p2"].tolist() == [3.0, 1.0, 1.5]
    # area of rho on [1, 4] / 3: A (3 + 1) / 6, B (2 + 3) / 6, C (0 + 2.5) / 6
    assert profiles.scores(ratio).to_dict() == pytest.approx({"A": 4 / 6, "B": 5 / 6, "C": 2.5 / 6})
    rho = profiles.profile(ratio, np.array([1.0, 1.5, 2.0, 3.0, 4.0]))
    assert rho["A"].tolist() == [0.5, 0.5, 0.5, 1.0, 1.0]
    assert rho["B"].tolist() == [0.5, 0.5, 1.0, 1.0, 1.0]
    assert rho["C"].tolist() == [0.0, 0.5, 0.5, 0.5, 0.5]
    rank = profiles.ranks(tuned, "steps")
    assert rank.loc["p1"].tolist() == [1, 2, 3]
    assert rank.loc["mean rank"].tolist() == [2.0, 1.5, 2.5]
    wins = profiles.win_loss(tuned, "steps")
    assert wins.loc["A"].tolist() == [0, 1, 1]
    assert wins.loc["B"].tolist() == [1, 0, 2]
    assert wins.loc["C"].tolist() == [1, 0, 0]


def test_time_profile_uses_seconds_not_steps() -> None:
    ratio = profiles.ratios(profiles.tune(_runs()), "time")
    # on p1, B takes twice A's steps at a quarter of the time per step: B is best in time
    assert ratio.loc["p1"].tolist() == [2.0, 1.0, math.inf]


def test_ratios_when_nobody_reaches_target_or_target_is_met_at_step_zero() -> None:
    tuned = pd.DataFrame(
        {
            "problem": ["p", "p", "q", "q"],
            "optimizer": ["A", "B", "A", "B"],
            "steps_to_target": [math.inf, math.inf, 0.0, 5.0],
            "time_to_target_s": [math.inf, math.inf, 0.0, 1.0],
        }
    )
    ratio = profiles.ratios(tuned, "steps")
    assert ratio.loc["p"].tolist() == [math.inf, math.inf]  # no best to divide by: no credit
    assert ratio.loc["q"].tolist() == [1.0, math.inf]  # 0 is the best, not 0/0
    assert profiles.scores(ratio).to_dict() == {"A": 0.5, "B": 0.0}


@pytest.mark.parametrize("values", [[1.0, 2.0, 3.0], [0.5, 0.5, 2.0, 7.0], [4.0]])
def test_expected_best_matches_enumerating_every_draw(values: list[float]) -> None:
    n = len(values)
    for k in (1, 2, 3):
        draws = list(itertools.product(values, repeat=k))
        brute = sum(min(d) for d in draws) / n**k
        assert profiles.expected_best(np.sort(values), k) == pytest.approx(brute)


def test_tuneability_counts_a_diverged_lr_as_the_worst_finite_loss() -> None:
    t = profiles.tuneability(_runs()).set_index(["problem", "optimizer", "k"])
    assert sorted(t.index.get_level_values("k").unique()) == [1, 2]
    # C on p1: lr 0.01 median 0.35; lr 0.1 diverged -> p1's worst finite median, A's 0.5
    assert t.loc[("p1", "C", 1), "expected_final_loss"] == pytest.approx(0.425)
    assert t.loc[("p1", "C", 2), "expected_final_loss"] == pytest.approx(0.75 * 0.35 + 0.25 * 0.5)
    assert t.loc[("p1", "C", 2), "p_reached"] == 0.0
    # A on p1 reaches with one of its two lrs: 1/2 with one trial, 3/4 with two
    assert t.loc[("p1", "A", 1), "p_reached"] == 0.5
    assert t.loc[("p1", "A", 2), "p_reached"] == 0.75
