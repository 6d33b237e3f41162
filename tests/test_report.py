"""``sgdbench report`` end to end on small real grids: the numbers, the formats, the errors."""

from __future__ import annotations

import io
import itertools
import json
import re
import shutil
import statistics
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from sgdbench import report
from tests.helpers import cli
from tests.report_results import results


@pytest.fixture(scope="module")
def quad(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return results("quad", tmp_path_factory)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return results("seeds", tmp_path_factory)


def report_json(*args: str | Path) -> dict:
    r = cli("report", *args, "--format", "json")
    assert r.exit_code == 0, r
    return json.loads(r.stdout)


def by_lr(doc: dict) -> dict[float, dict]:
    return {c["lr"]: c for c in doc["configurations"]}


def first_at_or_below(evals: pd.DataFrame, run_id: str, target: float) -> pd.Series | None:
    ev = evals[evals["run_id"] == run_id].sort_values("step")
    hit = ev[ev["train_loss"] <= target]
    return None if hit.empty else hit.iloc[0]


def test_quadratic_steps_to_target_and_divergence(quad: Path) -> None:
    doc = report_json(quad)
    assert doc["schema_version"] == report.REPORT_SCHEMA_VERSION
    rows = by_lr(doc)
    # loss_k = 2.25 * 0.64^k <= 0.01 first at k = 13: exact, though evaluations are every 5 steps
    assert rows[0.1]["steps_to_target_median"] == 13
    assert rows[0.5]["steps_to_target_median"] == 1
    assert rows[0.1]["reached"] == rows[0.5]["reached"] == 1
    diverged = rows[1.5]
    assert (diverged["n_diverged"], diverged["reached"]) == (1, 0)
    assert diverged["final_loss_median"] is None  # +inf: a diverged run's last loss is no result
    assert diverged["best_loss_median"] == pytest.approx(2.25)  # its starting loss
    head = doc["headline"]
    assert head["fastest"]["configuration"] == "lr=0.5"
    assert head["slowest"]["configuration"] == "lr=0.1"
    # A "× faster" ratio only ever comes with its interval (from the runs' window timings).
    assert (head["times_faster"] is None) == (head.get("times_faster_interval") is None)
    assert head["fewer_steps"] == pytest.approx(13.0)
    assert head["decided_by"] == "steps"
    runs = pd.read_parquet(quad / "runs.parquet")
    diverged_id = runs.loc[runs["lr"] == 1.5, "run_id"].item()
    assert [d["run_id"] for d in head["diverged"]] == [diverged_id]
    assert head["not_reached"] == ["lr=1.5"]


def test_median_and_iqr_by_hand(seeds: Path) -> None:
    runs = pd.read_parquet(seeds / "runs.parquet")
    v = sorted(runs.loc[runs["lr"] == 0.05, "final_loss"])
    assert len(v) == 4
    # numpy's default (linear) quantiles of 4 values: positions 0.75, 1.5 and 2.25.
    q25 = v[0] + 0.75 * (v[1] - v[0])
    median = (v[1] + v[2]) / 2
    q75 = v[2] + 0.25 * (v[3] - v[2])
    row = by_lr(report_json(seeds))[0.05]
    assert row["final_loss_median"] == pytest.approx(median, rel=1e-12)
    assert row["final_loss_q25"] == pytest.approx(q25, rel=1e-12)
    assert row["final_loss_q75"] == pytest.approx(q75, rel=1e-12)
    assert (row["runs"], row["seeds"], row["n_ok"]) == (4, 4, 4)


def test_diverging_seeds_are_counted_not_dropped(seeds: Path) -> None:
    runs = pd.read_parquet(seeds / "runs.parquet")
    big = runs[runs["lr"] == 0.5]
    n_div = int((big["status"] == "diverged").sum())
    assert 0 < n_div < 4, "the grid should have a configuration where only some seeds diverge"
    row = by_lr(report_json(seeds))[0.5]
    assert (row["n_diverged"], row["n_ok"], row["runs"]) == (n_div, 4 - n_div, 4)
    # Most seeds diverged, so the median final loss is +inf (null in JSON, inf in CSV).
    assert row["final_loss_median"] is None
    csv = pd.read_csv(io.StringIO(cli("report", seeds, "--format", "csv").stdout))
    assert csv.loc[csv["lr"] == 0.5, "final_loss_median"].item() == float("inf")
    text = cli("report", seeds).stdout
    assert f"Diverged: {n_div} run(s)" in text
    for rid in big.loc[big["status"] == "diverged", "run_id"]:
        assert rid in text


def exact_steps_within_their_evaluation_window(
    folder: Path, lr: float, target: float, steps_to_target: pd.Series
) -> list[int]:
    """The runs at ``lr`` that reached ``target`` at an evaluation; each exact step must lie
    after the evaluation before that one and at or before it (tests/test_exact_target.py checks
    the exact value itself)."""
    runs = pd.read_parquet(folder / "runs.parquet")
    evals = pd.read_parquet(folder / "evals")
    reached = []
    for rid in runs.loc[runs["lr"] == lr, "run_id"]:
        first = first_at_or_below(evals, rid, target)
        if first is None:
            continue
        t = int(steps_to_target[rid])
        assert first["step"] - 5 < t <= first["step"]  # evaluations every 5 steps
        reached.append(t)
    return reached


def test_steps_to_target_is_exact_inside_the_evaluation_window(seeds: Path) -> None:
    runs = pd.read_parquet(seeds / "runs.parquet").set_index("run_id")
    reached = exact_steps_within_their_evaluation_window(seeds, 0.05, 0.3, runs["steps_to_target"])
    row = by_lr(report_json(seeds))[0.05]
    assert row["reached"] == len(reached)
    assert row["steps_to_target_median"] == statistics.median(reached)
    assert row["time_to_target_s_median"] == pytest.approx(
        runs.loc[runs["lr"] == 0.05, "time_to_target_s"].median()
    )


def test_target_loss_recomputed_from_evals(seeds: Path) -> None:
    target = 0.29
    runs = pd.read_parquet(seeds / "runs.parquet")
    exact = report.load_runs(seeds, target_loss=target).set_index("run_id")
    reached = exact_steps_within_their_evaluation_window(
        seeds, 0.05, target, exact["steps_to_target"]
    )
    assert 0 < len(reached) < 4, "at this target only some seeds should reach it"
    row = by_lr(report_json(seeds, "--target-loss", str(target)))[0.05]
    assert row["target_loss"] == target
    assert row["reached"] == len(reached)
    assert row["steps_to_target_median"] == statistics.median(reached)
    # samples: 25 steps of 4 samples per epoch of 100 (metrics.samples_after)
    samples = [(t // 25) * 100 + min(t % 25 * 4, 100) for t in reached]
    assert row["samples_to_target_median"] == statistics.median(samples)
    # The stored runs are unchanged: recomputing does not write.
    assert pd.read_parquet(seeds / "runs.parquet")["steps_to_target"].equals(
        runs["steps_to_target"]
    )


def test_table_fits_100_columns_with_headline(seeds: Path, quad: Path) -> None:
    for folder in (seeds, quad):
        r = cli("report", folder)
        assert r.exit_code == 0, r
        assert "\x1b[" not in r.stdout  # not a terminal: no colour codes
        assert max(len(line) for line in r.stdout.splitlines()) <= 100
        assert "Fastest to loss ≤" in r.stdout
    # A "× faster" ratio never stands without its interval.
    for m in re.finditer(r"× faster(.{0,3})", cli("report", quad).stdout):
        assert m.group(1).startswith(" ("), m.group(0)
    text = report.render(quad, color=True)
    assert "\x1b[" in text


def test_markdown_and_csv_parse_back(seeds: Path) -> None:
    md = cli("report", seeds, "--format", "markdown").stdout
    table = [line for line in md.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table]
    assert len({len(c) for c in cells}) == 1
    assert cells[0][0] == "lr" and set(cells[1][1:]) == {"---:"}
    assert [c[0] for c in cells[2:]] == ["0.05", "0.5"]
    csv = pd.read_csv(io.StringIO(cli("report", seeds, "--format", "csv").stdout))
    doc = report_json(seeds)
    assert list(csv["lr"]) == [0.05, 0.5]
    assert list(csv["reached"]) == [c["reached"] for c in doc["configurations"]]
    assert csv["steps_per_s_median"].gt(0).all()


def test_best_keeps_fastest_lr_per_optimizer(quad: Path, seeds: Path) -> None:
    assert [c["lr"] for c in report_json(quad, "--best")["configurations"]] == [0.5]
    assert [c["lr"] for c in report_json(seeds, "--best")["configurations"]] == [0.05]


def test_by_and_sort(seeds: Path, quad: Path) -> None:
    doc = report_json(seeds, "--by", "batch_size")
    assert len(doc["configurations"]) == 1
    only = doc["configurations"][0]
    runs = pd.read_parquet(seeds / "runs.parquet")
    assert only["runs"] == 8
    assert only["n_diverged"] == int((runs["status"] == "diverged").sum())
    order = [c["lr"] for c in report_json(quad, "--sort", "-steps_to_target")["configurations"]]
    assert order == [0.1, 0.5, 1.5]  # 15, 5, never (missing goes last)


def test_report_does_not_need_steps(quad: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(quad, copy)
    shutil.rmtree(copy / "steps")
    assert cli("report", copy, "--format", "json").stdout == cli(
        "report", quad, "--format", "json"
    ).stdout.replace(str(quad), str(copy))


def test_errors_are_one_line_exit_2(tmp_path: Path, quad: Path) -> None:
    from sgdbench.store import RUN_SCHEMA

    r = cli("report", tmp_path / "nothing")
    assert r.exit_code == 2 and "no such results folder" in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli("report", empty).exit_code == 2
    pq.write_table(RUN_SCHEMA.empty_table(), empty / "runs.parquet")
    r = cli("report", empty)
    assert r.exit_code == 2 and "has no runs" in r.stderr
    r = cli("report", quad, "--sort", "nope")
    assert r.exit_code == 2 and "--sort" in r.stderr
    r = cli("report", quad, "--by", "nope")
    assert r.exit_code == 2 and "--by" in r.stderr


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0098765, "0.00988"),
        (12345.6, "12346"),
        (2.5e-7, "2.50e-7"),
        (float("inf"), "inf"),
        (None, "-"),
        (0, "0"),
    ],
)
def test_fmt_sig(value: float | None, text: str) -> None:
    assert report.fmt_sig(value) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.000709, "709 µs"),
        (0.01234, "12.3 ms"),
        (4.0, "4.00 s"),
        (150, "150 s"),
        (1500, "25.0 min"),
        (7200, "2.00 h"),
    ],
)
def test_fmt_seconds(seconds: float, text: str) -> None:
    assert report.fmt_seconds(seconds) == text


def test_quantiles_keep_infinity() -> None:
    assert report.quantiles([1.0, 2.0, 3.0, 4.0]) == (1.75, 2.5, 3.25)
    assert report.quantiles([1.0, float("inf"), float("inf")]) == (
        float("inf"),
        float("inf"),
        float("inf"),
    )
    assert report.quantiles([1.0, 3.0, float("inf")])[:2] == (2.0, 3.0)


# ---------------------------------------------------------------------------------------------
# the terminal table, the headline's ranking, the listing (issues 12, 13, 16)

DIGITS = """
    name = "digits3"
    [problem]
    name = "digits"
    [train]
    steps = 8
    target_loss = 1.5
    eval_every = 4
    [grid]
    optimizer = ["sgd", "adam"]
    lr = [0.01, 0.1]
    batch_size = [16, 64]
"""


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three axes and a validation set: the grid whose columns used to be clipped."""
    import textwrap

    base = tmp_path_factory.mktemp("digits3")
    (base / "grid.toml").write_text(textwrap.dedent(DIGITS))
    r = cli("run", base / "grid.toml", "--out", base / "results" / "digits3", "-q")
    assert r.exit_code == 0, r
    assert "fastest to loss ≤ 1.5" in r.stderr  # the run ends with the winner ...
    assert f"sgdbench report {base / 'results' / 'digits3'}" in r.stderr  # ... and the command
    return base / "results" / "digits3"


HEADERS = ["status", "verdict", "final", "reached", "steps to", "time to", "steps/s", "val acc"]


@pytest.mark.parametrize("columns", ["200", "80"])
def test_no_column_is_ever_dropped(
    digits: Path, columns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", columns)
    r = cli("report", digits)
    assert r.exit_code == 0, r
    lines = r.stdout.splitlines()
    assert max(len(line) for line in lines) <= int(columns)
    for h in [*HEADERS, "optimizer", "lr", "batch_size"]:
        assert h in r.stdout, h
    assert "%" in r.stdout  # validation accuracy cells
    split = "split in" in r.stdout
    assert split == (columns == "80")  # 200 columns hold the whole table in one part
    if split:  # every part repeats the axes, so each row can be read on its own
        assert r.stdout.count("optimizer   lr") >= 2


def test_columns_option_chooses_and_rejects(digits: Path) -> None:
    r = cli("report", digits, "--columns", "steps_per_s,val_acc")
    assert r.exit_code == 0, r
    header = r.stdout.splitlines()[2] + r.stdout.splitlines()[3]
    assert "steps/s" in header and "val acc" in header and "verdict" not in header
    r = cli("report", digits, "--columns", "nope")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "--columns" in r.stderr


def test_headline_items_wrap_with_a_hanging_indent(
    digits: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    out = cli("report", digits).stdout
    tail = out[out.index("Fastest to") :].splitlines()
    assert all(len(line) <= 60 for line in tail)
    for before, line in itertools.pairwise(tail):
        # a continuation never starts at the margin: it sits 4 further in than its item
        if not line.startswith(("Fastest", "Never", "Learning", "Diverged", "Failed")):
            assert line.startswith("    "), (before, line)


def test_report_without_a_folder_lists_the_results_folders(digits: Path, seeds: Path) -> None:
    root = digits.parent
    shutil.copytree(seeds, root / "seeds", dirs_exist_ok=True)
    r = cli("report", cwd=root.parent)
    assert r.exit_code == 0, r
    assert "2 results folder(s)" in r.stdout
    for name in ("digits3", "seeds"):
        assert name in r.stdout
    assert "8 ok" in r.stdout and "lr=0.05" in r.stdout  # statuses, seeds' headline winner
    assert "sgdbench report results/NAME" in r.stdout


def test_best_picks_over_the_lr_only_and_says_so(digits: Path) -> None:
    doc = report_json(digits, "--best")
    assert doc["best"] == {"tuned": ["lr"], "per": ["optimizer", "batch_size"]}
    kept = {(c["optimizer"], c["batch_size"]) for c in doc["configurations"]}
    assert len(doc["configurations"]) == len(kept) == 4  # never picks over the batch size
    assert (
        "--best picked over lr per optimizer × batch_size" in cli("report", digits, "--best").stdout
    )


@pytest.mark.parametrize("target", ["-1", "nan", "inf"])
def test_target_loss_that_cannot_be_a_loss_is_exit_2(quad: Path, target: str) -> None:
    r = cli("report", quad, f"--target-loss={target}")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1
    assert r.stderr.startswith("--target-loss: must be a finite number >= 0, got")


def test_headline_winner_does_not_change_with_machine_load(seeds: Path) -> None:
    """Same grid, timings scaled per run by up to 3x (a loaded machine): same winner."""
    import numpy as np

    runs, _, head = report.build(seeds)
    rng = np.random.default_rng(0)
    for _ in range(20):
        noisy = runs.copy()
        slow = rng.uniform(1.0, 3.0, len(runs))
        noisy["time_to_target_s"] = noisy["time_to_target_s"] * slow
        noisy["steps_per_s"] = noisy["steps_per_s"] / slow
        t = report.summarize_runs(noisy)
        assert report.headline(noisy, t).fastest["configuration"] == head.fastest["configuration"]


def test_time_breaks_a_tie_only_outside_the_noise() -> None:
    def row(name: str, t25: float, t50: float, t75: float) -> dict:
        return {
            "lr": name,
            "reached": 4,
            "runs": 4,
            "steps_to_target_median": 60.0,
            "samples_to_target_median": 240.0,
            "final_loss_median": 0.1,
            "time_to_target_s_q25": t25,
            "time_to_target_s_median": t50,
            "time_to_target_s_q75": t75,
            "steps_per_s_lo": float("nan"),
            "steps_per_s_hi": float("nan"),
            "samples_to_target_q25": 0,
        }

    runs = pd.DataFrame(
        {
            "target_loss": [0.1],
            "verdict": ["converged"],
            "status": ["ok"],
            "axes_dict": [{"lr": 1}],
        }
    )
    overlap = pd.DataFrame([row("a", 1.0, 1.3, 1.6), row("b", 1.2, 1.25, 1.5)])
    overlap.attrs["labels"] = ["lr"]
    head = report.headline(runs, overlap)
    assert head.decided_by == "tie" and head.fastest["configuration"] == "lr=a"
    apart = pd.DataFrame([row("a", 2.0, 2.2, 2.4), row("b", 1.0, 1.1, 1.2)])
    apart.attrs["labels"] = ["lr"]
    head = report.headline(runs, apart)
    assert head.decided_by == "time" and head.fastest["configuration"] == "lr=b"
    low, high = head.fastest["time_ratio_interval"]
    assert low == pytest.approx(2.0 / 1.2) and high == pytest.approx(2.4 / 1.0)
    assert "time decided" in "\n".join(report.headline_lines(head))


@pytest.mark.parametrize(
    ("ratio", "words"),
    [(6.5, "6.50× fewer steps"), (1 / 1.2, "1.20× more steps"), (1.0, "1.00× fewer steps")],
)
def test_ratios_in_words_never_read_backwards(ratio: float, words: str) -> None:
    assert report.fmt_times(ratio, "steps") == words


def test_dry_run_and_compare_use_the_one_table_renderer(
    seeds: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = report.table.render_table

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(report, "render_table", spy)
    monkeypatch.setattr("sgdbench.report.table.render_table", spy)
    monkeypatch.setattr("sgdbench.text_table.render_table", spy)  # what --dry-run imports
    monkeypatch.setattr("sgdbench.report.formats.render_table", spy)
    assert cli("compare", seeds, seeds).exit_code == 0
    assert cli("report", seeds).exit_code == 0
    assert cli("run", seeds / "grid.toml", "--dry-run").exit_code == 0
    assert len(calls) == 3
