"""Start-up: which heavy modules each command imports (whole processes), and the optimizer step
that avoids ``torch._dynamo`` while updating the parameters bitwise like ``optimizer.step``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sgdbench.lazy_dynamo import plain_step
from tests.helpers import REPO, imported_modules

GRID = """
name = "startup"
[problem]
name = "linear"
n_samples = 40
n_features = 3
[train]
steps = 10
eval_every = 5
[grid]
optimizer = ["sgd", "adam"]
lr = [0.05]
batch_size = [8]
"""


@pytest.mark.slow  # a fresh interpreter that imports torch and trains
def test_run_trains_without_importing_dynamo_or_inductor(tmp_path: Path) -> None:
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID)
    code, modules = imported_modules(tmp_path, "run", grid, "--out", tmp_path / "out", "-q")
    assert code == 0
    assert "torch" in modules  # it did train
    assert "torch._dynamo" not in modules
    assert "torch._inductor" not in modules


@pytest.mark.parametrize(
    "text",
    [
        None,  # no such file
        "name = \n",  # TOML syntax error
        GRID.replace("steps = 10", "steps = -1"),  # a bad [train] value
    ],
    ids=["missing", "toml", "train"],
)
def test_run_error_exits_do_not_import_torch(tmp_path: Path, text: str | None) -> None:
    grid = tmp_path / "grid.toml"
    if text is not None:
        grid.write_text(text)
    code, modules = imported_modules(tmp_path, "run", grid, "--out", tmp_path / "out")
    assert code == 2
    assert "torch" not in modules
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("SGD", {"momentum": 0.9, "nesterov": True}),
        ("Adam", {"weight_decay": 1e-3}),
        ("AdamW", {"amsgrad": True}),
        ("RMSprop", {"centered": True}),
    ],
)
def test_plain_step_updates_bitwise_like_optimizer_step(name: str, kwargs: dict) -> None:
    def trained(use_plain: bool) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        opt = getattr(torch.optim, name)(model.parameters(), lr=0.01, **kwargs)
        step = plain_step(opt) if use_plain else opt.step
        x, y = torch.randn(16, 4), torch.randn(16, 1)
        for _ in range(5):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            step()
        return [p.detach().clone() for p in model.parameters()]

    for a, b in zip(trained(True), trained(False), strict=True):
        assert torch.equal(a, b)


def test_plain_step_runs_grad_free_and_keeps_step_hooks() -> None:
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([p], lr=0.1)
    seen = []
    step = plain_step(opt)
    p.grad = torch.ones(3)
    step()
    assert not p.requires_grad or p.grad_fn is None  # the update was not recorded by autograd
    handle = opt.register_step_post_hook(lambda *_: seen.append(1))
    step()  # with a hook registered it must go through optimizer.step, which calls hooks
    handle.remove()
    assert seen == [1]
    assert torch.allclose(p.detach(), torch.full((3,), 0.8))


def test_optimizer_catalog_from_source_matches_torch() -> None:
    from sgdbench import optimizer_catalog, optimizers

    static = optimizer_catalog.keyword_defaults(optimizer_catalog.RESERVED)
    assert static is not None  # this torch's source reads plainly: no torch import to list
    from_torch = {
        cls.__name__: optimizers.keyword_defaults(name)
        for name, cls in optimizers.optimizer_classes().items()
    }
    assert static == from_torch


def test_list_optimizers_does_not_import_torch(tmp_path: Path) -> None:
    code, modules = imported_modules(tmp_path, "list", "optimizers")
    assert code == 0
    assert "torch" not in modules


@pytest.mark.parametrize("engine", [pytest.param("eager", marks=pytest.mark.slow), None])
def test_dry_run_of_built_in_problems_does_not_import_torch(tmp_path: Path, engine) -> None:
    grid = tmp_path / "grid.toml"
    grid.write_text(
        GRID.replace('name = "linear"', 'name = "digits"\nmodel = "mlp"\nhidden = [8]')
        .replace("n_samples = 40\nn_features = 3\n", "")
        .replace('["sgd", "adam"]', '["sgd", "adam", "momentum", "AdamW", "rmsprop"]')
        + "weight_decay = [0, 0.01]\n"
    )
    args = ["run", grid, "--dry-run", *(["--engine", engine] if engine else [])]
    code, modules = imported_modules(tmp_path, *args)
    assert code == 0
    assert "torch" not in modules


@pytest.mark.slow  # a fresh interpreter
def test_a_bad_optimizer_value_found_without_torch_reads_as_torch_says(tmp_path: Path) -> None:
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID.replace('["sgd", "adam"]', '"sgd"') + "momentum = [0.9, -0.5]\n")
    done = subprocess.run(
        [sys.executable, "-m", "sgdbench", "run", str(grid), "--dry-run"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == f"{grid}: grid.momentum[1]: Invalid momentum value: -0.5"


def test_plain_table_is_what_rich_prints() -> None:
    import random

    from sgdbench import text_table as t

    rng, compared = random.Random(0), 0
    words = ["", "a", "sgd", "0.001", "3e-05", "adam", "1_000", "cuda:0", "x y", "longer_name"]
    for _ in range(200):
        n_cols = rng.randint(1, 6)
        header = [rng.choice(words[1:]) for _ in range(n_cols)]
        rows = [[rng.choice(words) for _ in range(n_cols)] for _ in range(rng.randint(0, 5))]
        table = t.TextTable(header, rows, n_labels=rng.randint(1, n_cols))
        width = rng.randint(20, 120)
        if t._fits(table, width):
            assert t._plain(table) == t._rich(table, [], width, False, False), (table, width)
            compared += 1
    assert compared > 50  # most random tables fit: the plain path is what is tested


def test_stacked_tables_read_from_source_equal_the_imported_ones() -> None:
    from sgdbench import stacked_catalog, stacked_optim

    static = stacked_catalog.read()
    assert static is not None  # the algorithm blocks read plainly: no torch to form groups
    assert static == (stacked_optim.ELEMENTWISE, stacked_optim.FLAGS)
    for name, flags in stacked_optim.FLAGS.items():
        kwargs = {k: not v for k, v in flags.items()}
        assert stacked_catalog.group_flags(name, kwargs) == stacked_optim.group_flags(name, kwargs)


def test_max_consecutive_failures_has_a_short_alias(tmp_path: Path) -> None:
    from tests.helpers import cli

    grid = tmp_path / "grid.toml"
    grid.write_text(GRID)
    assert cli("run", grid, "-F", "2", "--dry-run").exit_code == 0
    assert cli("run", grid, "-F", "-1", "--dry-run").exit_code == 2  # min 0, as the long name
