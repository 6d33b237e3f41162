"""Suites: several problems in one benchmark (``sgdbench run SUITE.toml``), the cross-problem
report, plots and compare of suite folders, and every executor/engine on a multi-problem suite."""

from __future__ import annotations

import json
import re
import shutil
import tomllib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.helpers import cli

SUITE = """
name = "two"

[train]
steps = 30

[grid]
optimizer = ["sgd", "adam"]
lr = [0.01, 0.1]
batch_size = 32
seed = [0, 1]

[[problems]]
name = "linear"
n_samples = 200
n_features = 5
train = {target_loss = 0.05}

[[problems]]
label = "quad"
name = "quadratic"
dim = 5
train = {target_loss = 0.01, init = [1.0, 1.0, 1.0, 1.0, 1.0]}
grid = {batch_size = "full"}
"""


def runs(folder: Path) -> pd.DataFrame:
    return pd.read_parquet(folder / "runs.parquet").sort_values("run_id").reset_index(drop=True)


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("suite") / "suite.toml"
    path.write_text(SUITE)
    return path


@pytest.fixture(scope="module")
def ran(suite: Path) -> Path:
    """The suite run once, serially, for every test that reads it (none writes into it)."""
    out = suite.parent / "out"
    result = cli("run", suite, "--out", out, "-q")
    assert result.exit_code == 0, result
    return out


def test_each_problem_runs_into_its_own_results_folder(ran: Path, suite: Path) -> None:
    assert json.loads((ran / "suite.json").read_text())["members"] == ["linear", "quad"]
    assert (ran / "suite.toml").read_text() == suite.read_text()
    linear, quad = runs(ran / "linear"), runs(ran / "quad")
    assert len(linear) == len(quad) == 8 and (linear["status"] == "ok").all()
    # each run records its problem and its configuration, with the member's own overrides
    assert set(linear["problem"]) == {"linear"} and set(quad["problem"]) == {"quadratic"}
    assert json.loads(linear["problem_kwargs"][0])["n_samples"] == 200
    assert json.loads(quad["problem_kwargs"][0]) == {"dim": 5}
    assert set(linear["target_loss"]) == {0.05} and set(quad["target_loss"]) == {0.01}
    assert set(linear["batch_size"]) == {32} and set(quad["batch_size"]) == {1}  # "full": 1 point
    # a member folder's grid.toml is an ordinary grid: run on its own, it names the same runs
    from sgdbench.plan import load_grid

    member = load_grid(ran / "quad" / "grid.toml")
    assert sorted(s.run_id for s in member.runs) == list(quad["run_id"])


def test_suite_report_tunes_each_optimizer_per_problem(ran: Path) -> None:
    result = cli("report", ran, "--format", "json")
    assert result.exit_code == 0, result
    doc = json.loads(result.stdout)
    assert doc["suite"] == "two"  # the suite's name, not the folder's ("out")
    assert [p["label"] for p in doc["problems"]] == ["linear", "quad"]
    tuned = pd.DataFrame(doc["tuned"])
    assert len(tuned) == 4  # 2 problems x 2 optimizers
    for label in ("linear", "quad"):
        table = runs(ran / label)
        for _, t in tuned[tuned["problem"] == label].iterrows():
            at_lr = table[(table["optimizer"] == t["optimizer"]) & (table["lr"] == t["lr"])]
            assert len(at_lr) == t["seeds"] == 2  # every seed at the tuned lr
            steps = at_lr["steps_to_target"].to_numpy(np.float64, na_value=np.inf)
            expected = float(np.median(steps))
            got = t["steps_to_target"]  # JSON null: never reached
            assert (np.inf if pd.isna(got) else got) == expected
    for metric in ("steps", "time"):
        scores = doc["profiles"][metric]["scores"]
        assert set(scores) == {"sgd", "adam"} and all(0 <= s <= 1 for s in scores.values())
        ratios = doc["profiles"][metric]["ratios"]
        # on every problem some optimizer reaches the target: the best one's ratio is exactly 1
        assert all(1.0 in row.values() for row in ratios.values())
    assert {r["k"] for r in doc["tuneability"]} == {1, 2}
    markdown = cli("report", ran, "--format", "markdown").stdout
    assert "## linear: linear" in markdown and "## quad: quadratic dim=5" in markdown
    assert "Tuning protocol" in markdown and "score (steps)" in markdown
    table = cli("report", ran)
    assert table.exit_code == 0 and "Wins (steps to target)" in table.stdout
    csv = cli("report", ran, "--format", "csv").stdout.splitlines()
    assert csv[0].startswith("problem,optimizer,lr,") and len(csv) == 5


@pytest.mark.parametrize("kind", ["profile", "tuneability"])
def test_suite_plots(ran: Path, kind: str, tmp_path: Path) -> None:
    out = tmp_path / f"{kind}.png"
    result = cli("plot", ran, "--kind", kind, "--out", out)
    assert result.exit_code == 0, result
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_suite_only_options_are_refused_where_they_mean_nothing(ran: Path) -> None:
    result = cli("plot", ran / "quad", "--kind", "profile")
    assert result.exit_code == 2 and "not a suite results folder" in result.stderr
    result = cli("plot", ran, "--kind", "curves")
    assert result.exit_code == 2 and "DIR/<problem>" in result.stderr
    result = cli("report", ran, "--best")
    assert result.exit_code == 2 and "--best" in result.stderr
    # a member folder is an ordinary results folder
    assert cli("report", ran / "quad", "--best").exit_code == 0


def test_dry_run_lists_every_problem_and_writes_nothing(suite: Path, tmp_path: Path) -> None:
    result = cli("run", suite, "--out", tmp_path / "out", "--dry-run")
    assert result.exit_code == 0, result
    assert "== linear" in result.stdout and "== quad" in result.stdout
    assert len([line for line in result.stdout.splitlines() if line[:1].isalnum()]) == 2 * 9
    assert not (tmp_path / "out").exists()


def test_a_rerun_skips_every_run(ran: Path, suite: Path) -> None:
    before = {label: runs(ran / label) for label in ("linear", "quad")}
    result = cli("run", suite, "--out", ran, "-q")
    assert result.exit_code == 0, result
    assert result.stderr.count("8 of 8 runs already complete") == 2
    assert "0 run(s) into" in result.stderr and " ok" not in result.stderr
    for label, table in before.items():
        pd.testing.assert_frame_equal(runs(ran / label), table)


@pytest.mark.slow
def test_jobs_2_gives_the_serial_losses(ran: Path, suite: Path, tmp_path: Path) -> None:
    out = tmp_path / "jobs2"
    result = cli("run", suite, "--out", out, "-q", "--jobs", "2", "--always-parallel")
    assert result.exit_code == 0, result
    for label in ("linear", "quad"):
        assert list(runs(out / label)["loss_digest"]) == list(runs(ran / label)["loss_digest"])


@pytest.mark.slow
def test_dask_runs_a_suite(ran: Path, suite: Path, tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    out = tmp_path / "dask"
    # One cluster for both members (through --scheduler), with an in-process worker: it starts
    # in a second, where a LocalCluster of processes costs a torch import per worker and member.
    # One worker thread only: runs seed torch's process-wide generator, so two runs training in
    # threads of one process would draw from each other's stream.
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0"
    ) as cluster:
        result = cli("run", suite, "--out", out, "-q", "--scheduler", cluster.scheduler_address)
    assert result.exit_code == 0, result
    for label in ("linear", "quad"):
        assert list(runs(out / label)["loss_digest"]) == list(runs(ran / label)["loss_digest"])


def test_stacked_engine_groups_each_problem_apart(ran: Path, suite: Path, tmp_path: Path) -> None:
    out = tmp_path / "stacked"
    result = cli("run", suite, "--out", out, "-q", "--engine", "stacked")
    assert result.exit_code == 0, result
    groups = {}
    for label in ("linear", "quad"):
        stacked, eager = runs(out / label), runs(ran / label)
        assert (stacked["engine"] == "stacked").all() and (stacked["group_size"] > 1).all()
        groups[label] = set(stacked["group_id"])
        # the same runs as the eager engine's, on this problem's data: same final losses
        key = ["optimizer", "lr", "seed"]
        both = stacked.merge(eager, on=key, suffixes=("_stacked", "_eager"))
        assert len(both) == 8
        np.testing.assert_allclose(
            both["final_loss_stacked"], both["final_loss_eager"], rtol=1e-4, atol=1e-7
        )
    assert not groups["linear"] & groups["quad"]  # no group mixes the two problems


@pytest.mark.slow  # a second suite end to end
def test_compare_of_two_suite_folders_compares_each_problem(ran: Path, tmp_path: Path) -> None:
    result = cli("compare", ran, ran)
    assert result.exit_code == 0, result
    assert "== linear" in result.stdout and "== quad" in result.stdout
    assert "no regression in 2 problem(s) compared" in result.stdout
    # a suite whose quad member needs twice the steps to target: a regression, in quad only
    slower = tmp_path / "slower"
    shutil.copytree(ran, slower)
    table = pd.read_parquet(slower / "quad" / "runs.parquet")
    table["steps_to_target"] = table["steps_to_target"] * 2
    table.to_parquet(slower / "quad" / "runs.parquet")
    result = cli("compare", ran, slower, "--format", "json")
    assert result.exit_code == 1, result
    doc = json.loads(result.stdout)
    assert doc["regression"] is True
    assert doc["problems"]["quad"]["regression"] is True
    assert doc["problems"]["linear"]["regression"] is False
    # a suite folder whose quad member has not run yet: named, not compared
    other = tmp_path / "other"
    shutil.copytree(ran / "linear", other / "linear")
    for f in ("suite.json", "suite.toml"):
        shutil.copy(ran / f, other / f)
    result = cli("compare", ran, other)
    assert result.exit_code == 0, result
    assert f"only in {ran}: quad" in result.stdout
    result = cli("compare", ran, ran / "linear")
    assert result.exit_code == 2 and "not a suite results folder" in result.stderr


def test_a_member_can_be_an_existing_grid_file(
    write_grid: Callable[..., Path], tmp_path: Path
) -> None:
    write_grid(
        """
        name = "q"
        [problem]
        name = "quadratic"
        dim = 3
        [train]
        steps = 5
        init = [1.0, 1.0, 1.0]
        [grid]
        optimizer = "sgd"
        lr = 0.1
        batch_size = "full"
        """,
        "q.toml",
    )
    head = SUITE.split("[[problems]]")[0]
    suite = write_grid(
        head
        + '[[problems]]\nname = "linear"\n\n[[problems]]\nlabel = "quad"\ngrid_file = "q.toml"\n',
        "files.toml",
    )
    result = cli("run", suite, "--out", tmp_path / "out", "-q")
    assert result.exit_code == 0, result
    quad = runs(tmp_path / "out" / "quad")
    assert len(quad) == 1 and quad["steps"][0] == 5


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("dim = 5", "dim = -5"), "problems[1].dim: "),
        (("n_samples = 200", "n_samplez = 200"), "problems[0].n_samplez: unknown"),
        (
            ("train = {target_loss = 0.01,", "train = {steps = 0, target_loss = 0.01,"),
            "problems[1].train.steps: ",
        ),
        (("lr = [0.01, 0.1]", "lr = [0.01, -0.1]"), "grid.lr[1]: must be > 0"),
        (('label = "quad"', 'label = "linear"'), "problems[1].label: 'linear' is"),
        (
            ('label = "quad"', 'label = "plots"'),
            "problems[1].label: 'plots' is reserved",
        ),
        (
            ('name = "two"', 'name = "two"\nproblem = {name = "linear"}'),
            "problem: unknown key; did you mean problems?",
        ),
    ],
)
def test_bad_suite_is_one_line_exit_2_and_writes_nothing(
    write_grid: Callable[..., Path], tmp_path: Path, edit: tuple[str, str], message: str
) -> None:
    assert edit[0] in SUITE
    suite = write_grid(SUITE.replace(*edit, 1), "suite.toml")
    tomllib.loads(suite.read_text())  # still TOML: the error is the suite's, not the parser's
    out = tmp_path / "out"
    result = cli("run", suite, "--out", out, "-q")
    assert result.exit_code == 2, result
    assert result.stderr.startswith(f"{suite}: {message}"), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert not out.exists()


def test_a_non_suite_folder_is_refused_untouched(suite: Path, tmp_path: Path) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = cli("run", suite, "--out", out, "-q")
    assert result.exit_code == 2 and "not a suite results folder" in result.stderr
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


@pytest.mark.slow  # a suite's HTML page with every plot
def test_html_report_of_a_suite_folder(ran: Path) -> None:
    """``report SUITE_DIR --format html``: one self-contained page with every section of the text
    report as a sortable table, both suite plots inline, and the suite file as run."""
    from sgdbench.suite_report import load, sections
    from tests.test_html_report import parse

    result = cli("report", ran, "--format", "html")
    assert result.exit_code == 0, result
    page = ran / "report.html"  # the default place, as for one folder
    assert str(page) in result.stderr and result.stdout == ""
    p = parse(page)
    expected = sections(load(ran))
    tables = [a["id"] for tag, a in p.tags if tag == "table"]
    assert tables == [f"suite-table-{i}" for i in range(len(expected))]
    assert p.headers == [h for _, header, _ in expected for h in header]
    assert p.rows == [row for _, _, rows in expected for row in rows]
    figures = {a.get("id") for tag, a in p.tags if tag == "figure"}
    assert figures == {"plot-profile", "plot-tuneability"}
    for tag, a in p.tags:
        if tag == "img":
            assert (a["src"] or "").startswith("data:image/svg+xml;base64,")
        assert not (a.get("src") or a.get("href") or "").startswith(("http:", "https:", "//"))
    text = "".join(p.text)
    assert 'name = "two"' in text  # the suite as run
    # "never" sorts after every number: its sort key is the largest float, not its text
    html = page.read_text()
    never = re.findall(r'<td data-sort="([^"]*)">never</td>', html)
    assert never and set(never) == {"1e308"}


@pytest.mark.slow  # a headless browser process
def test_html_report_of_a_suite_folder_in_a_browser(ran: Path, tmp_path: Path) -> None:
    from tests.test_html_report import run_browser

    page = tmp_path / "suite.html"
    assert cli("report", ran, "--format", "html", "--out", page).exit_code == 0
    dom = run_browser("--dump-dom", page.as_uri()).stdout
    errors = re.search(r'<pre id="js-errors"([^>]*)>(.*?)</pre>', dom, flags=re.S)
    assert errors is not None and "hidden" in errors.group(1) and errors.group(2) == ""
    assert 'data-images-drawn="2/2"' in dom  # both plots decoded and drawn
