"""The grid schema: one declaration, from which come the README's key table, the JSON Schema
(``sgdbench schema``), ``sgdbench list keys`` and value ranges."""

from __future__ import annotations

import itertools
import json
import math
import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError

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


def test_json_schema_describes_search_and_the_distribution_tables() -> None:
    from sgdbench import search

    doc = json.loads(cli("schema").stdout)
    defs = doc["$defs"]
    # every fixed axis may be a distribution, each its own table with its one key
    axes = doc["$defs"]["GridAxes"]["properties"]
    for key in schema.FIXED_AXES:
        refs = {item.get("$ref", "").rpartition("/")[2] for item in axes[key]["anyOf"]}
        tables = {defs[name]["required"][0]: defs[name] for name in refs if name}
        assert set(grid_values.DISTRIBUTIONS) <= set(tables), key
    for kind in grid_values.DISTRIBUTIONS:
        assert tables[kind]["additionalProperties"] is False
        assert tables[kind]["description"].startswith(f"A distribution: ``{{{kind} = ")
    assert tables["loguniform"]["properties"]["loguniform"]["items"]["exclusiveMinimum"] == 0
    assert tables["lograndint"]["properties"]["lograndint"]["items"]["minimum"] == 1
    assert tables["randint"]["properties"]["randint"]["items"]["type"] == "integer"
    # [search]: the keys sgdbench.search accepts, with its methods, samplers and limits
    table = defs[doc["properties"]["search"]["$ref"].rpartition("/")[2]]
    assert table["additionalProperties"] is False
    assert list(table["properties"]) == list(search.SEARCH_KEYS)
    assert table["required"] == ["method"]
    assert table["properties"]["method"]["enum"] == list(search.METHODS)
    assert table["properties"]["sampler"]["enum"] == list(search.SAMPLERS)
    trials = table["properties"]["trials"]["anyOf"][0]
    assert (trials["minimum"], trials["maximum"]) == (1, search.MAX_TRIALS)
    # and the key table lists them
    keys = [row[0] for row in schema.key_rows()]
    assert [f"search.{key}" for key in search.SEARCH_KEYS] == keys[-len(search.SEARCH_KEYS) :]
    for kind in grid_values.DISTRIBUTIONS:
        assert f"grid.KEY = {{{kind} = ...}}" in keys


@pytest.mark.parametrize(
    "value",
    [
        {"loguniform": [1e-4, 1.0]},
        {"loguniform": [0, 1]},
        {"loguniform": [1.0, 0.1]},
        {"loguniform": [1e-4]},
        {"uniform": [-1, 0.5]},
        {"uniform": [1, 0.1]},
        {"uniform": ["a", 1]},
        {"uniform": [0, 1, 2]},
        {"randint": [8, 64]},
        {"randint": [8, 64.0]},
        {"randint": [64, 8]},
        {"randint": [1, True]},
        {"lograndint": [1, 8]},
        {"lograndint": [0, 8]},
        {"choice": ["sgd", "adam"]},
        {"choice": []},
        {"choice": "sgd"},
    ],
)
def test_the_schema_distribution_tables_accept_what_search_accepts(value: dict) -> None:
    from sgdbench import search
    from sgdbench.errors import KeyedError

    try:
        search.parse_distribution("x", value)
        accepted = True
    except KeyedError:
        accepted = False
    table = grid_values.DISTRIBUTION_TABLES[next(iter(value))]
    try:
        table.model_validate(value)
        assert accepted, f"the schema accepts {value}, the search refuses it"
    except ValidationError:
        assert not accepted, f"the schema refuses {value}, the search accepts it"


@pytest.mark.parametrize(
    "table",
    [
        {"method": "random", "trials": 4},
        {"method": "sobol", "trials": 8, "seed": 3},
        {"method": "halving", "min_steps": 2, "eta": 2, "sampler": "halton", "trials": 3},
        {"method": "halving", "min_epochs": 1},
        {"method": "grid_search", "trials": 2},
        {"method": "random", "trials": 0},
        {"method": "random", "trails": 2},
        {"method": "halving", "min_steps": 2, "eta": 1},
        {"method": "halving", "min_steps": 2, "sampler": "grid", "trials": 2},
    ],
)
def test_the_schema_search_table_accepts_what_search_accepts(table: dict) -> None:
    from sgdbench import search
    from sgdbench.errors import KeyedError

    grid = {"lr": {"loguniform": [1e-3, 1.0]}} if "trials" in table else {"lr": 0.1}
    try:
        search.plan(table, grid)
        accepted = True
    except KeyedError:
        accepted = False
    try:
        schema.SearchTable.model_validate(table)
        assert accepted, f"the schema accepts {table}, the search refuses it"
    except ValidationError:
        assert not accepted, f"the schema refuses {table}, the search accepts it"
