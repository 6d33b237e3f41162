"""The package's imports flow one way (``python -m tests.import_graph`` prints the layers)."""

from __future__ import annotations

from tests.import_graph import closure, cycles, graph, layers

GRID_FILE_MODULES = (
    "sgdbench.schema",
    "sgdbench.schema_errors",
    "sgdbench.grid_values",
    "sgdbench.gridfile",
    "sgdbench.expand",
)


def test_no_import_cycles_function_level_imports_included() -> None:
    assert cycles(graph()) == []


def test_the_graph_reader_sees_function_level_imports_and_cycles() -> None:
    modules = graph()
    # cli imports the plan inside a command (so --help stays fast): still an edge
    assert "sgdbench.plan" in modules["sgdbench.cli.run"].imports
    assert "sgdbench.plan" not in modules["sgdbench.cli.run"].top_level
    # a cycle closed by a function-level import is found
    modules["sgdbench.spec"].imports.add("sgdbench.plan")
    assert any("sgdbench.spec" in cycle for cycle in cycles(modules))


def test_spec_is_a_leaf() -> None:
    modules = graph()
    assert modules["sgdbench.spec"].imports <= {"sgdbench", "sgdbench.limits"}
    assert modules["sgdbench.spec"].external <= {"__future__", *STDLIB}


def test_reading_validating_and_expanding_a_grid_needs_no_torch() -> None:
    modules = graph()
    for name in GRID_FILE_MODULES:
        loaded = closure(modules, name, top_level=False)  # function-level imports too
        assert not {"sgdbench.plan", "sgdbench.optimizers", "sgdbench.problems.factory"} & loaded
        external = set().union(*(modules[m].external for m in loaded))
        assert not {"torch", "numpy", "pandas"} & external, name


def test_only_the_plan_builds_problems_at_load_time() -> None:
    modules = graph()
    for name in ("sgdbench.spec", "sgdbench.presets", *GRID_FILE_MODULES):
        assert "sgdbench.problems.factory" not in modules[name].imports
    assert "sgdbench.problems.factory" in modules["sgdbench.plan"].imports
    # and the plan sits above everything it uses
    below = closure(modules, "sgdbench.plan", top_level=False)
    level = layers({name: modules[name] for name in below})
    assert all(level[m] < level["sgdbench.plan"] for m in modules["sgdbench.plan"].imports)


STDLIB = {
    "dataclasses",
    "functools",
    "hashlib",
    "json",
    "os",
    "pathlib",
    "typing",
}
