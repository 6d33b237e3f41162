"""Grid expansion and run identity."""

from __future__ import annotations

import pickle

import pytest

from sgdbench.errors import GridError
from sgdbench.plan import load_grid
from sgdbench.spec import RunSpec

BASE = """
name = "g"
[problem]
name = "linear"
n_samples = 64
n_features = 3
[train]
steps = 10
"""


def grid(write_grid, body: str, name: str = "grid.toml"):
    return load_grid(write_grid(BASE + body, name))


def test_cartesian_product_of_list_axes(write_grid):
    g = grid(
        write_grid,
        """
[grid]
optimizer = ["sgd", "adam"]
lr = [0.1, 0.01, 0.001]
batch_size = [4, "full"]
seed = [0, 1]
""",
    )
    assert len(g.runs) == 2 * 3 * 2 * 2
    assert set(g.axes) == {"optimizer", "lr", "batch_size", "seed"}
    full = [r for r in g.runs if r.full_batch]
    assert len(full) == 12 and all(r.batch_size == 64 for r in full)
    assert len({r.run_id for r in g.runs}) == len(g.runs)


def test_exclude_then_include_follow_github_matrix_semantics(write_grid):
    g = grid(
        write_grid,
        """
[grid]
optimizer = ["sgd", "adam"]
lr = [0.1, 0.01]
batch_size = 8
seed = [0, 1]

[[exclude]]
optimizer = "adam"
lr = 0.1

[[include]]        # matches the sgd runs: adds a keyword to them
optimizer = "sgd"
momentum = 0.9

[[include]]        # matches nothing (lr 0.5 is new): a new configuration, for every seed
optimizer = "sgd"
lr = 0.5
""",
    )
    combos = {(r.optimizer, r.lr, r.seed) for r in g.runs}
    assert ("adam", 0.1, 0) not in combos and ("adam", 0.01, 0) in combos
    assert {("sgd", 0.5, 0), ("sgd", 0.5, 1)} <= combos
    sgd_old = [r for r in g.runs if r.optimizer == "sgd" and r.lr != 0.5]
    assert sgd_old and all(r.optimizer_kwargs["momentum"] == 0.9 for r in sgd_old)
    new = [r for r in g.runs if r.lr == 0.5]
    assert all("momentum" not in r.optimizer_kwargs for r in new)
    assert len(g.runs) == 6 + 2


def test_include_that_duplicates_a_run_runs_it_once(write_grid):
    g = grid(
        write_grid,
        """
[grid]
lr = [0.1]
batch_size = 8
[[include]]
lr = 0.1
batch_size = 8
""",
    )
    assert len(g.runs) == 1


def test_run_id_depends_on_what_is_computed_not_where_it_came_from(write_grid):
    a = grid(write_grid, "[grid]\nlr = [0.1, 1]\nbatch_size = 8\nseed = [3]\n", "a.toml")
    b = load_grid(
        write_grid(
            (BASE + "[grid]\nlr = 1.0\nbatch_size = 8\nseed = 3\n").replace(
                'name = "g"', 'name = "other"'
            ),
            "b.toml",
        )
    )
    # lr = 1 and lr = 1.0 are the same run; the grid's name and the other axes don't matter.
    assert b.runs[0].run_id == a.runs[1].run_id
    assert a.runs[0].run_id != a.runs[1].run_id
    # The id is a pure function of the spec: it survives pickling and JSON.
    spec = a.runs[0]
    assert pickle.loads(pickle.dumps(spec)).run_id == spec.run_id
    assert RunSpec.from_json(spec.to_json()).run_id == spec.run_id
    assert len(spec.run_id) == 12 and int(spec.run_id, 16) >= 0


def test_config_id_ignores_seed_only(write_grid):
    g = grid(write_grid, "[grid]\nlr = [0.1, 0.2]\nbatch_size = 8\nseed = [0, 1]\n")
    by_lr = {}
    for r in g.runs:
        by_lr.setdefault(r.lr, set()).add(r.config_id)
    assert all(len(ids) == 1 for ids in by_lr.values())
    assert by_lr[0.1] != by_lr[0.2]


def test_presets_and_keyword_axes(write_grid):
    g = grid(
        write_grid,
        """
[grid]
optimizer = ["momentum", "heavy", "Adam"]
lr = 0.1
batch_size = 8
[optimizers.heavy]
type = "sgd"
momentum = 0.99
dampening = 0
""",
    )
    by_name = {r.optimizer: r for r in g.runs}
    assert by_name["momentum"].optimizer_class == "SGD"
    assert by_name["momentum"].optimizer_kwargs == {"momentum": 0.9}
    assert by_name["heavy"].optimizer_kwargs == {"dampening": 0.0, "momentum": 0.99}
    assert by_name["Adam"].optimizer_class == "Adam"


def test_tuple_keyword_is_one_value_unless_nested(write_grid):
    one = grid(
        write_grid,
        '[grid]\noptimizer = "adam"\nlr = 0.1\nbatch_size = 8\nbetas = [0.8, 0.9]\n',
        "one.toml",
    )
    assert len(one.runs) == 1 and one.runs[0].optimizer_kwargs["betas"] == [0.8, 0.9]
    two = grid(
        write_grid,
        '[grid]\noptimizer = "adam"\nlr = 0.1\nbatch_size = 8\n'
        "betas = [[0.8, 0.9], [0.9, 0.999]]\n",
        "two.toml",
    )
    assert len(two.runs) == 2 and "betas" in two.axes


def test_budget_resolution_and_default_evaluation(write_grid):
    g = load_grid(
        write_grid(
            BASE.replace("steps = 10", "epochs = 3")
            + """
[grid]
lr = 0.1
batch_size = [10, "full"]
"""
        )
    )
    by_bs = {r.batch_size: r for r in g.runs}
    assert by_bs[10].steps_per_epoch == 7 and by_bs[10].steps == 21  # 64 = 6*10 + 4
    assert by_bs[10].eval_every == 7  # every epoch
    assert by_bs[64].steps == 3 and by_bs[64].full_batch


def test_function_problems_default_to_full_batch(write_grid):
    g = load_grid(
        write_grid("""
[problem]
name = "quadratic"
[train]
steps = 5
init = [-1.5]
[grid]
lr = 0.1
""")
    )
    (run,) = g.runs
    assert run.full_batch and run.n_samples == 1 and run.steps == 5


def test_auto_device_resolves_to_what_is_present(write_grid):
    import torch

    g = grid(write_grid, '[grid]\nlr = 0.1\nbatch_size = 8\ndevice = "auto"\n')
    assert g.runs[0].device == ("cuda" if torch.cuda.is_available() else "cpu")


def test_keyword_not_accepted_by_one_optimizer_names_the_axis(write_grid):
    with pytest.raises(GridError) as e:
        grid(
            write_grid,
            '[grid]\noptimizer = ["sgd", "adam"]\nlr = 0.1\nbatch_size = 8\n'
            "momentum = [0.0, 0.9]\n",
        )
    assert e.value.key == "grid.momentum[0]"
    assert "Adam" in e.value.message and "exclude" in e.value.message


def test_schedule_as_an_axis(write_grid):
    g = grid(
        write_grid,
        "[grid]\nlr = 0.1\nbatch_size = 8\n"
        'schedule = ["constant", {name = "step", step_size = 2, gamma = 0.5}]\n',
    )
    names = sorted(r.schedule["name"] for r in g.runs)
    assert names == ["constant", "step"]
    step = next(r for r in g.runs if r.schedule["name"] == "step")
    assert step.schedule == {"name": "step", "step_size": 2, "gamma": 0.5}


def test_problem_parameters_can_be_axes(write_grid):
    g = grid(
        write_grid,
        """
[grid]
lr = 0.1
batch_size = 8
problem.n_features = [2, 5]
seed = [0, 1]
""",
    )
    assert len(g.runs) == 4 and "problem.n_features" in g.axes
    widths = sorted({r.problem_kwargs["n_features"] for r in g.runs})
    assert widths == [2, 5]
    assert all(r.axes["problem.n_features"] == r.problem_kwargs["n_features"] for r in g.runs)
    # the other problem keys keep the [problem] values
    assert {r.problem_kwargs["n_samples"] for r in g.runs} == {64}


def test_a_bad_problem_axis_value_is_located_in_the_grid(write_grid):
    with pytest.raises(GridError) as e:
        grid(write_grid, "[grid]\nlr = 0.1\nbatch_size = 8\nproblem.noise = [0.1, -1.0]\n")
    assert e.value.key == "grid.problem.noise[1]"
    assert e.value.message == "must be >= 0, got -1.0"


def test_batch_size_is_checked_against_each_problem_size(write_grid):
    with pytest.raises(GridError) as e:
        grid(write_grid, "[grid]\nlr = 0.1\nbatch_size = 20\nproblem.n_samples = [100, 10]\n")
    assert e.value.key == "grid.batch_size"
    assert "larger than the 10 training samples" in e.value.message


def test_a_data_file_counts_by_content_not_location(tmp_path):
    grid_text = """
[problem]
name = "file"
path = "data.csv"
target = "y"
[train]
steps = 3
[grid]
lr = 0.1
batch_size = 2
"""
    ids = []
    for folder, data in [
        ("a", "x,y\n1,2\n3,4\n"),
        ("b", "x,y\n1,2\n3,4\n"),
        ("c", "x,y\n1,2\n3,5\n"),
    ]:
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "data.csv").write_text(data)
        (tmp_path / folder / "grid.toml").write_text(grid_text)
        ids.append(load_grid(tmp_path / folder / "grid.toml").runs[0].run_id)
    assert ids[0] == ids[1]  # the same data elsewhere: the same run
    assert ids[0] != ids[2]  # other data: another run


def test_the_documented_limits_are_inclusive(write_grid):
    from sgdbench import spec

    g = load_grid(
        write_grid(
            BASE.replace('name = "g"', f'name = "{"n" * spec.MAX_NAME_LENGTH}"').replace(
                "steps = 10", f"steps = {spec.MAX_STEPS}\nthreads = {spec.MAX_THREADS}"
            )
            + f"[grid]\nlr = 3.4e38\nbatch_size = 8\nseed = {2**32 - 1}\n"
        )
    )
    (run,) = g.runs
    assert (run.steps, run.lr, run.seed) == (spec.MAX_STEPS, 3.4e38, 2**32 - 1)


def test_runs_added_by_an_include_count_toward_the_limit(write_grid):
    # 300 x 300 = 90,000 runs is under the limit; an include matching none of them adds a new
    # configuration for every seed and weight decay: 180,000, refused before building them.
    values = list(range(300))
    with pytest.raises(GridError) as e:
        grid(
            write_grid,
            f"[grid]\nlr = 0.1\nbatch_size = 8\nseed = {values}\nweight_decay = {values}\n"
            "[[include]]\nlr = 0.5\n",
        )
    assert e.value.key == "grid"
    assert e.value.message.startswith("180_000 combinations, more than the limit of 100_000")


def test_out_of_memory_names_the_problem_axis_value_that_caused_it(write_grid):
    with pytest.raises(GridError) as e:
        grid(
            write_grid,
            "[grid]\nlr = 0.1\nbatch_size = 8\n"
            "problem.n_features = 200000\nproblem.n_samples = [64, 100000000]\n",
        )
    assert e.value.key == "grid.problem.n_samples[1]"
    assert e.value.message == "out of memory building the problem (n_samples = 100000000)"
