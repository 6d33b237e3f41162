"""``sgdbench compare``: matching by axes, the changes, and the exit codes CI gates on."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from sgdbench import compare
from sgdbench.errors import UsageError
from tests.helpers import cli
from tests.report_results import results


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return results("seeds", tmp_path_factory)


@pytest.fixture(scope="module")
def quad(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return results("quad", tmp_path_factory)


def edited(src: Path, dst: Path, edit: Callable[[pd.DataFrame], pd.DataFrame]) -> Path:
    """A copy of a results folder whose runs.parquet went through ``edit``."""
    shutil.copytree(src, dst)
    runs = pd.read_parquet(dst / "runs.parquet")
    edit(runs).to_parquet(dst / "runs.parquet", index=False)
    return dst


def compare_json(*args: str | Path) -> tuple[int, dict]:
    r = cli("compare", *args, "--format", "json")
    return r.exit_code, (json.loads(r.stdout) if r.stdout else {})


def by_lr(doc: dict) -> dict[float, dict]:
    return {c["key"]["lr"]: c for c in doc["configurations"]}


def test_same_results_no_change_exit_0(seeds: Path) -> None:
    code, doc = compare_json(seeds, seeds)
    assert code == 0 and doc["regression"] is False
    assert doc["schema_version"] == compare.COMPARE_SCHEMA_VERSION
    rows = by_lr(doc)
    assert set(rows) == {0.05, 0.5}
    assert rows[0.05]["key"]["problem"] == "linear"
    assert rows[0.05]["steps/s"]["change"] == 0.0
    assert doc["overall"]["steps/s"]["change"] == pytest.approx(0.0)


def test_throughput_drop_is_a_regression(seeds: Path, tmp_path: Path) -> None:
    def slower(runs: pd.DataFrame) -> pd.DataFrame:
        runs.loc[runs["lr"] == 0.05, "steps_per_s"] *= 0.8
        return runs

    new = edited(seeds, tmp_path / "new", slower)
    code, doc = compare_json(seeds, new)
    assert code == 1 and doc["regression"] is True
    rows = by_lr(doc)
    assert rows[0.05]["steps/s"]["change"] == pytest.approx(-0.2)
    assert rows[0.05]["steps/s"]["regression"] and rows[0.05]["regression"]
    assert not rows[0.5]["regression"]
    assert cli("compare", seeds, new, "--threshold", "25%").exit_code == 0
    assert cli("compare", seeds, new, "--threshold", "25").exit_code == 0
    table = cli("compare", seeds, new).stdout
    assert "-20.0% ✗" in table and "REGRESSION" in table
    assert cli("compare", new, seeds).exit_code == 0  # faster is not a regression


def test_fewer_seeds_reaching_target_is_a_regression(seeds: Path, tmp_path: Path) -> None:
    def lose_one(runs: pd.DataFrame) -> pd.DataFrame:
        first = runs.index[runs["lr"] == 0.05][0]
        runs.loc[first, ["steps_to_target", "samples_to_target", "time_to_target_s"]] = None
        return runs

    new = edited(seeds, tmp_path / "new", lose_one)
    code, doc = compare_json(seeds, new, "--threshold", "1000%")
    assert code == 1
    reached = by_lr(doc)[0.05]["reached"]
    assert (reached["base"], reached["new"], reached["regression"]) == ("4/4", "3/4", True)


def test_markdown_rows_and_unmatched_configurations(seeds: Path, tmp_path: Path) -> None:
    new = edited(seeds, tmp_path / "new", lambda runs: runs[runs["lr"] == 0.05])
    r = cli("compare", seeds, new, "--format", "markdown")
    assert r.exit_code == 0, r
    rows = [line for line in r.stdout.splitlines() if line.startswith("|")]
    assert len(rows) == 2 + 1 + 1  # header, rule, lr=0.05, overall
    assert rows[2].startswith("| 0.05 |")
    assert "Only in base (1): lr=0.5" in r.stdout


def test_nothing_matches_exit_2(seeds: Path, quad: Path) -> None:
    r = cli("compare", seeds, quad)
    assert r.exit_code == 2 and "no configuration" in r.stderr
    assert cli("compare", seeds, seeds, "--threshold", "five").exit_code == 2


def test_change_rules() -> None:
    assert compare.change(100.0, 94.0, True, 0.05)["regression"] is True
    assert compare.change(100.0, 96.0, True, 0.05)["regression"] is False
    assert compare.change(10.0, 10.6, False, 0.05)["regression"] is True
    lost = compare.change(10.0, float("nan"), False, 0.05)
    assert (lost["regression"], lost["note"]) == (True, "lost")
    assert compare.change(float("inf"), 1.0, False, 0.05)["regression"] is False
    assert compare.parse_threshold("7.5%") == pytest.approx(0.075)
    with pytest.raises(UsageError):
        compare.parse_threshold("-1%")
