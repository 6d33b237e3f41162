"""Each shipped experiment runs, and the lesson its header promises holds."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from sgdbench.engine import eager
from sgdbench.metrics import loss_digest
from sgdbench.plan import load_grid
from sgdbench.suite import is_suite, load_suite
from tests.helpers import REPO, cli

EXPERIMENTS = REPO / "experiments"


def run_experiment(name: str, tmp_path: Path) -> pd.DataFrame:
    result = cli("run", EXPERIMENTS / f"{name}.toml", "--out", tmp_path / name, "-q")
    assert result.exit_code == 0, result
    runs = pd.read_parquet(tmp_path / name / "runs.parquet")
    for key in dict.fromkeys(k for a in runs["axes"] for k in json.loads(a)):
        if key not in runs:  # e.g. problem.model; batch_size stays the resolved integer
            runs[key] = [json.loads(a).get(key) for a in runs["axes"]]
    return runs


def test_every_experiment_says_what_it_answers():
    paths = sorted(EXPERIMENTS.glob("*.toml"))
    assert len(paths) >= 5, f"no experiments found under {EXPERIMENTS}"  # not a vacuous pass
    for path in paths:
        header = path.read_text().splitlines()[0]
        assert header.startswith("# "), f"{path.name} has no comment header"
        if is_suite(path):  # a suite: every member a valid grid
            assert len(load_suite(path).members) > 1
        else:
            load_grid(path)  # and it is a valid grid


@pytest.mark.slow  # seconds of training
def test_small_batches_need_about_the_same_steps_but_far_fewer_samples(tmp_path):
    """Counted exactly, at lr 0.1 every batch size reaches the target in about 35 steps (batch
    1 seemed to need 100 only while evaluations came once per epoch): a noisy step makes about
    the progress of an exact one this far above the noise floor, at 1/100 of the samples."""
    runs = run_experiment("gd_vs_sgd_vs_minibatch", tmp_path)
    assert set(runs["verdict"]) == {"converged"}
    median = runs.groupby("batch_size")[["steps_to_target", "samples_to_target"]].median()
    full = runs.loc[runs["full_batch"], "batch_size"].iloc[0]
    steps, samples = median["steps_to_target"], median["samples_to_target"]
    assert steps.max() <= 1.25 * steps.min()
    assert samples[1] * 5 < samples[10] and samples[10] * 5 < samples[full]


@pytest.mark.slow  # a shipped experiment's lesson, trained
def test_learning_rate_verdicts_say_crawl_converge_bounce_diverge(tmp_path):
    runs = run_experiment("learning_rate_too_low_high", tmp_path).set_index("lr")
    assert runs["verdict"].to_dict() == {
        0.001: "too_slow",
        0.1: "converged",
        0.5: "converged",
        0.9: "converged",
        1.0: "oscillating",
        1.1: "diverged",
    }
    assert runs.loc[0.5, "steps_to_target"] == 1  # lr 0.5 jumps to the minimum in one step
    # and the report tells the four regimes apart, with the why under the table
    report = cli("report", tmp_path / "learning_rate_too_low_high", "--format", "json")
    doc = json.loads(report.stdout)
    verdicts = {row["lr"]: row["verdict"] for row in doc["configurations"]}
    assert verdicts == runs["verdict"].to_dict()
    revisit = {d["configuration"]: d["message"] for d in doc["headline"]["diagnosed"]}
    assert revisit["lr=0.001"].startswith("too_slow: at the recent rate")
    assert revisit["lr=1"].startswith("oscillating: successive updates point back and forth")
    # --target-loss recomputes convergence and the verdicts that depend on it
    strict = cli(
        "report",
        tmp_path / "learning_rate_too_low_high",
        "--format",
        "json",
        "--target-loss",
        "1e-30",
    )
    rows = {row["lr"]: row for row in json.loads(strict.stdout)["configurations"]}
    assert rows[0.1]["reached"] == 0 and rows[0.1]["verdict"] != "converged"
    assert rows[0.5]["verdict"] == "converged"  # lr 0.5 lands exactly on the minimum


@pytest.mark.slow  # trains digits to 95% accuracy
def test_digits_linear_classifier_reaches_95_percent(tmp_path):
    runs = run_experiment("digits_3_vs_7", tmp_path)
    linear = runs[runs["problem.model"] == "linear"]
    assert linear.groupby("optimizer")["final_val_accuracy"].median().min() >= 0.95
    mlp = runs[runs["problem.model"] == "mlp"]
    assert (mlp["final_val_accuracy"] >= 0.95).all()
    assert runs["best_val_step"].notna().all()


@pytest.mark.slow  # seconds of training
def test_larger_batches_trade_steps_for_samples(tmp_path):
    runs = run_experiment("noisy_quadratic_batch_size", tmp_path)
    median = runs.groupby("batch_size")[["steps_to_target", "samples_to_target"]].median()
    order = median.sort_index()  # batch sizes 1, 8, 64, 1000 (full)
    assert order["steps_to_target"].is_monotonic_decreasing
    assert order["samples_to_target"].is_monotonic_increasing
    assert order["steps_to_target"].iloc[0] > 10 * order["steps_to_target"].iloc[-1]


@pytest.mark.slow  # seconds of training
def test_resume_adam_needs_the_optimizer_state(tmp_path):
    (spec,) = load_grid(EXPERIMENTS / "resume_adam.toml").runs
    # CI-sized: the experiment's schedule and checkpointing, over fewer steps.
    spec = dataclasses.replace(
        spec, steps=1200, eval_every=200, checkpoint_dir=str(tmp_path / "ckpt")
    )
    whole = eager.run(dataclasses.replace(spec, checkpoint_every=0))

    stops = iter([False] * 3 + [True])
    with pytest.raises(eager.StopRequested):
        eager.run(spec, should_stop=lambda: next(stops))
    saved = tmp_path / "ckpt" / f"{spec.run_id}.pt"
    shutil.copy(saved, tmp_path / "saved.pt")
    resumed = eager.run(spec)
    assert resumed.info["resumed_from_step"] > 0
    assert loss_digest(resumed.losses) == loss_digest(whole.losses)

    import torch

    state = torch.load(tmp_path / "saved.pt", weights_only=True)
    assert {"exp_avg", "exp_avg_sq", "step"} <= set(
        next(iter(state["optimizer"]["state"].values()))
    )
    state["optimizer"]["state"] = {}  # "resume" with the model's state only
    torch.save(state, saved)
    model_only = eager.run(spec)
    assert model_only.info["resumed_from_step"] == resumed.info["resumed_from_step"]
    assert loss_digest(model_only.losses) != loss_digest(whole.losses)
