"""The grid schema: one declaration, from which come the README's key table, the JSON Schema
(``sgdbench schema``), ``sgdbench list keys`` and value ranges."""

from __future__ import annotations

import itertools
import json
import math
import tomllib
from pathlib import Path

import pytest

from sgdbench import grid_values, optimizers, schema
from sgdbench.errors import GridError
from sgdbench.plan import load_grid
from sgdbench.suite import is_suite
from tests.helpers import REPO, cli

# Grid files only: a suite ([[problems]]) is checked member by member (tests/test_experiments.py).
EXPERIMENTS = sorted(p for p in (REPO / "experiments").glob("*.toml") if not is_suite(p))
BASE = """
[problem]
name = "linear"
n_samples = 64
n_features = 3
[train]
steps = 2
[grid]
batch_size = 8
"""


def test_readme_key_table_is_the_generated_one() -> None:
    readme = (REPO / "README.md").read_text()
    start = readme.index("<!-- grid-keys: generated")
    start = readme.index("\n", start) + 1
    end = readme.index("<!-- grid-keys: end -->")
    assert readme[start:end] == schema.key_table()
    # and it names every [train] key the schema accepts
    for key in schema.Train.model_fields:
        assert f"`train.{key}`" in readme[start:end]


def test_json_schema_is_well_formed_and_forbids_unknown_keys(tmp_path: Path) -> None:
    result = cli("schema")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["$schema"].startswith("https://json-schema.org/")
    assert set(doc["properties"]) == {
        "name", "description", "problem", "train", "grid", "search", "optimizers", "exclude",
        "include",
    }  # fmt: skip
    assert doc["additionalProperties"] is False
    train = doc["$defs"]["Train"]
    assert train["additionalProperties"] is False
    assert set(train["properties"]) == set(schema.Train.model_fields)
    assert train["properties"]["engine"]["enum"] == ["auto", "eager", "stacked"]
    assert "lr" in doc["$defs"]["GridAxes"]["required"]
    # the schema's ranges are the ones the loader accepts
    lr = doc["$defs"]["GridAxes"]["properties"]["lr"]["anyOf"]
    refs = {item.get("$ref", "").rpartition("/")[2] for item in lr}
    assert {"LogSpace", "LinSpace", "IntRange"} <= refs


@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_every_shipped_experiment_validates_against_the_schema(path: Path) -> None:
    data = tomllib.loads(path.read_text())
    assert schema.validate(data).problem.name


def test_experiments_are_found() -> None:
    assert len(EXPERIMENTS) >= 5  # an empty glob would make the test above pass vacuously


def test_schema_and_optimizers_agree_on_implementations() -> None:
    assert schema.IMPLS == optimizers.IMPLS


def test_list_keys_comes_from_the_schema() -> None:
    result = cli("list", "keys")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert len(lines) == len(schema.key_rows())
    assert "train.divergence_factor [10000]: diverged when" in result.stdout


def test_value_ranges_include_both_ends(write_grid) -> None:
    g = load_grid(
        write_grid(
            BASE + "lr = {logspace = [1e-4, 1.0], num = 5}\n"
            "momentum = {linspace = [0.0, 0.9], num = 4}\n"
            "seed = {range = [1, 7], step = 3}\n"
        )
    )
    assert sorted({r.lr for r in g.runs}) == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    assert {r.lr for r in g.runs} >= {1e-4, 1.0}  # the ends exactly, not 0.9999999
    assert sorted({r.optimizer_kwargs["momentum"] for r in g.runs}) == pytest.approx(
        [0.0, 0.3, 0.6, 0.9]
    )
    assert sorted({r.seed for r in g.runs}) == [1, 4, 7]
    assert len(g.runs) == 5 * 4 * 3 and set(g.axes) == {"lr", "momentum", "seed"}


def test_a_range_gives_the_same_runs_as_its_typed_values(write_grid) -> None:
    typed = load_grid(write_grid(BASE + "lr = [0.01, 0.1, 1.0]\n", "a.toml"))
    ranged = load_grid(write_grid(BASE + "lr = {logspace = [0.01, 1.0], num = 3}\n", "b.toml"))
    assert [r.run_id for r in typed.runs] == [r.run_id for r in ranged.runs]


def test_the_shipped_lr_sweep_is_a_rounded_logspace() -> None:
    (path,) = [p for p in EXPERIMENTS if p.stem == "lr_sweep_stacked"]
    lrs = sorted({r.lr for r in load_grid(path).runs})
    exact = [10 ** (-4 + i * 4.5 / 39) for i in range(40)]
    assert lrs == [float(f"{v:.4g}") for v in exact]
    assert (lrs[0], lrs[26], lrs[-1]) == (0.0001, 0.1, 3.162)  # as once typed by hand


@pytest.mark.parametrize(
    ("axis", "key", "message"),
    [
        ("lr = {logspace = [1e-4, -1.0], num = 5}", "grid.lr.logspace[1]", "must be > 0, got -1.0"),
        ("lr = {logspace = [1e-4, 1.0], num = 1}", "grid.lr.num", "must be >= 2, got 1"),
        ("lr = {linspace = [0.0, 1.0], num = 3}", "grid.lr", "must be > 0, got 0.0"),
        ("lr = {logspace = [1e-4], num = 3}", "grid.lr.logspace", "must be a list [start, end]"),
        ("lr = 0.1\nseed = {range = [5, 1]}", "grid.seed", "is empty: the end 1 is below"),
        ("lr = 0.1\nseed = {range = [0, 3], step = 0}", "grid.seed.step", "must be >= 1, got 0"),
        ("lr = 0.1\nseed = {range = [0.5, 3]}", "grid.seed.range[0]", "must be an integer"),
        ("lr = {logspace = [1e-4, 1.0], num = 3, base = 2}", "grid.lr.base", "unknown key"),
    ],
)
def test_a_bad_range_is_one_error_naming_its_key(write_grid, axis, key, message) -> None:
    with pytest.raises(GridError) as e:
        load_grid(write_grid(BASE + axis + "\n"))
    assert e.value.key == key
    assert e.value.message.startswith(message), e.value.message


def test_dry_run_shows_the_values_of_a_range(write_grid, tmp_path: Path) -> None:
    path = write_grid(BASE + "lr = {logspace = [0.001, 0.1], num = 3}\n")
    result = cli("run", path, "--dry-run", cwd=tmp_path)
    assert result.exit_code == 0
    assert [line.split()[1] for line in result.stdout.splitlines()[1:]] == ["0.001", "0.01", "0.1"]
    assert not any(tmp_path.glob("results"))


def test_logspace_values_are_evenly_spaced_in_log_scale() -> None:
    values = grid_values.LogSpace(logspace=[1e-3, 1e3], num=7).values()
    ratios = [b / a for a, b in itertools.pairwise(values)]
    assert all(math.isclose(r, 10.0) for r in ratios)
