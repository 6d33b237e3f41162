"""Bad input: exit 2 (1 for runtime failures), one line naming file and key, no traceback, and
an existing results folder left byte-for-byte unchanged."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest

from tests.conftest import cli, cli_subprocess

LINEAR = """
name = "bad"
[problem]
name = "linear"
n_samples = 32
n_features = 2
[train]
steps = 5
[grid]
lr = 0.1
batch_size = 4
"""
FILE = """
name = "bad"
[problem]
name = "file"
path = "data.csv"
target = "y"
[train]
steps = 5
[grid]
lr = 0.1
batch_size = 2
"""


def edit(base: str, old: str, new: str) -> str:
    assert old in base, old
    return base.replace(old, new, 1)


# (id, grid text or None for a missing file, files to write {name: text}, expected message part)
CASES = [
    ("missing-file", None, {}, "grid.toml: no such file"),
    ("toml-syntax", "name = \n[problem", {}, "grid.toml: TOML syntax error"),
    ("unknown-section", LINEAR + "[bogus]\nx = 1\n", {}, "grid.toml: bogus: unknown key"),
    (
        "unknown-train-key",
        edit(LINEAR, "steps = 5", "steps = 5\nepochz = 3"),
        {},
        "grid.toml: train.epochz: unknown key",
    ),
    (
        "unknown-problem-key",
        edit(LINEAR, "n_features = 2", "n_feature = 2"),
        {},
        "grid.toml: problem.n_feature: unknown key",
    ),
    (
        "unknown-problem",
        edit(LINEAR, 'name = "linear"', 'name = "lineer"'),
        {},
        "grid.toml: problem.name: unknown problem 'lineer'",
    ),
    (
        "problem-wrong-type",
        edit(LINEAR, "n_samples = 32", 'n_samples = "many"'),
        {},
        "grid.toml: problem.n_samples: must be an integer",
    ),
    (
        "lr-wrong-type",
        edit(LINEAR, "lr = 0.1", 'lr = "fast"'),
        {},
        "grid.toml: grid.lr: must be a number",
    ),
    ("empty-axis", edit(LINEAR, "lr = 0.1", "lr = []"), {}, "grid.toml: grid.lr: empty axis"),
    (
        "lr-negative",
        edit(LINEAR, "lr = 0.1", "lr = [0.1, 0.01, -0.1]"),
        {},
        "grid.toml: grid.lr[2]: must be > 0, got -0.1",
    ),
    ("lr-missing", edit(LINEAR, "lr = 0.1", ""), {}, "grid.toml: grid.lr: required"),
    (
        "batch-zero",
        edit(LINEAR, "batch_size = 4", "batch_size = [4, 0]"),
        {},
        "grid.toml: grid.batch_size[1]: must be >= 1",
    ),
    (
        "batch-too-large",
        edit(LINEAR, "batch_size = 4", "batch_size = 33"),
        {},
        "grid.toml: grid.batch_size: 33 is larger than the 32 training samples",
    ),
    (
        "batch-word",
        edit(LINEAR, "batch_size = 4", 'batch_size = "all"'),
        {},
        'grid.toml: grid.batch_size: must be an integer >= 1 or "full"',
    ),
    (
        "unknown-optimizer",
        LINEAR + 'optimizer = ["sgd", "adamm"]\n',
        {},
        "grid.toml: grid.optimizer[1]: unknown optimizer 'adamm'",
    ),
    (
        "unknown-keyword",
        LINEAR + '[optimizers.m]\ntype = "SGD"\nmomentom = 0.9\n',
        {},
        "grid.toml: optimizers.m.momentom: not a keyword of torch.optim.SGD",
    ),
    (
        "keyword-wrong-type",
        LINEAR + 'nesterov = "yes"\n',
        {},
        "grid.toml: grid.nesterov: must be true or false",
    ),
    (
        "keyword-bad-value",
        LINEAR + "momentum = -1.0\n",
        {},
        "grid.toml: grid.optimizer: Invalid momentum value",
    ),
    (
        "unsupported-optimizer",
        LINEAR + 'optimizer = "SparseAdam"\n',
        {},
        "grid.toml: grid.optimizer: needs sparse gradients",
    ),
    (
        "both-budgets",
        edit(LINEAR, "steps = 5", "steps = 5\nepochs = 2"),
        {},
        "grid.toml: train: give exactly one of epochs or steps, got both",
    ),
    (
        "no-budget",
        edit(LINEAR, "steps = 5", ""),
        {},
        "grid.toml: train: give exactly one of epochs or steps, got neither",
    ),
    (
        "negative-seconds",
        edit(LINEAR, "steps = 5", "steps = 5\nmax_seconds = -1"),
        {},
        "grid.toml: train.max_seconds: must be > 0",
    ),
    (
        "init-length",
        edit(LINEAR, "steps = 5", "steps = 5\ninit = [1.0]"),
        {},
        "grid.toml: train.init: has 1 values, the model has 3 parameters",
    ),
    (
        "init-word",
        edit(LINEAR, "steps = 5", 'steps = 5\ninit = "ones"'),
        {},
        "grid.toml: train.init: must be",
    ),
    (
        "schedule-unknown",
        edit(LINEAR, "steps = 5", 'steps = 5\nschedule = "linear"'),
        {},
        "grid.toml: train.schedule.name: unknown schedule 'linear'",
    ),
    (
        "impl-unknown",
        edit(LINEAR, "steps = 5", 'steps = 5\noptimizer_impl = "cuda"'),
        {},
        "grid.toml: train.optimizer_impl: must be one of",
    ),
    (
        "engine-unknown",
        edit(LINEAR, "steps = 5", 'steps = 5\nengine = "turbo"'),
        {},
        "grid.toml: train.engine: must be one of auto, eager, stacked",
    ),
    ("device-unknown", LINEAR + 'device = "tpu"\n', {}, "grid.toml: grid.device: must be"),
    ("seed-negative", LINEAR + "seed = [-1]\n", {}, "grid.toml: grid.seed[0]: must be >= 0"),
    ("bad-name", edit(LINEAR, 'name = "bad"', 'name = "../up"'), {}, "grid.toml: name: must be"),
    (
        "exclude-unknown-key",
        LINEAR + "[[exclude]]\nfoo = 1\n",
        {},
        "grid.toml: exclude[0].foo: not a [grid] key",
    ),
    (
        "exclude-everything",
        LINEAR + "[[exclude]]\nlr = 0.1\n",
        {},
        "grid.toml: exclude: excludes every run",
    ),
    (
        "function-minibatch",
        """
[problem]
name = "quadratic"
[train]
steps = 3
[grid]
lr = 0.1
batch_size = 4
""",
        {},
        'grid.toml: grid.batch_size: function problems take only batch_size = "full"',
    ),
    (
        "csv-no-target",
        FILE,
        {"data.csv": "a,b\n1,2\n3,4\n"},
        "grid.toml: problem.target: no column 'y' in data.csv",
    ),
    ("csv-missing", FILE, {}, "grid.toml: problem.path: no such file: data.csv"),
    (
        "csv-nan",
        FILE,
        {"data.csv": "a,y\n1,2\n,4\n"},
        "grid.toml: problem.path: column 'a' in data.csv has 1 missing values",
    ),
    ("csv-empty", FILE, {"data.csv": "a,y\n"}, "grid.toml: problem.path: data.csv has no rows"),
    (
        "csv-text-feature",
        FILE,
        {"data.csv": "a,y\nx,2\nz,4\n"},
        "grid.toml: problem.features: column 'a' in data.csv is not numeric",
    ),
    (
        "plugin-missing",
        edit(
            LINEAR,
            'name = "linear"\nn_samples = 32\nn_features = 2',
            'name = "no_such_module_xyz:make"',
        ),
        {},
        "grid.toml: problem.name: cannot import plug-in 'no_such_module_xyz:make'",
    ),
    (
        "plugin-raises-on-import",
        edit(LINEAR, 'name = "linear"\nn_samples = 32\nn_features = 2', 'name = "PLUGIN:make"'),
        {"PLUGIN.py": "raise RuntimeError('broken plug-in')\n"},
        "grid.toml: problem.name: cannot import plug-in 'PLUGIN:make': broken plug-in",
    ),
]


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def existing_results(tmp_path: Path) -> Path:
    """A results folder with content that no failing command may touch."""
    out = tmp_path / "results" / "bad"
    (out / "steps").mkdir(parents=True)
    (out / "runs.parquet").write_bytes(b"not really parquet, but precious")
    (out / "steps" / "abc.parquet").write_bytes(b"precious steps")
    (out / "grid.toml").write_text("# the grid that made these results\n")
    return out


@pytest.mark.parametrize(
    ("grid_text", "files", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_grid_is_one_line_exit_2_and_touches_nothing(
    tmp_path, existing_results, grid_text, files, expected
):
    module = f"plugin_{uuid.uuid4().hex[:8]}"  # fresh module name: no import cache between tests
    for name, text in files.items():
        (tmp_path / name.replace("PLUGIN", module)).write_text(text)
    if grid_text is not None:
        (tmp_path / "grid.toml").write_text(grid_text.replace("PLUGIN", module))
    expected = expected.replace("PLUGIN", module)
    before = tree_digest(existing_results)
    result = cli("run", "grid.toml", "--out", existing_results, cwd=tmp_path)
    assert result.exit_code == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(expected), lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert tree_digest(existing_results) == before


def test_verbose_shows_the_traceback(tmp_path):
    (tmp_path / "grid.toml").write_text(edit(LINEAR, "lr = 0.1", "lr = -1"))
    result = cli("run", "grid.toml", "-v", cwd=tmp_path)
    assert result.exit_code == 2
    assert "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "grid.toml: grid.lr: must be > 0, got -1"


def test_results_folder_that_is_a_file(tmp_path):
    (tmp_path / "grid.toml").write_text(LINEAR)
    (tmp_path / "out").write_text("a file")
    result = cli("run", "grid.toml", "--out", "out", cwd=tmp_path)
    assert result.exit_code == 2
    assert result.stderr.strip() == "out: results folder is a file, not a folder"
    assert (tmp_path / "out").read_text() == "a file"


def test_dry_run_of_a_bad_grid_is_the_same_error(tmp_path):
    (tmp_path / "grid.toml").write_text(edit(LINEAR, "batch_size = 4", "batch_size = 0"))
    result = cli("run", "grid.toml", "--dry-run", cwd=tmp_path)
    assert result.exit_code == 2
    assert "grid.batch_size: must be >= 1" in result.stderr


def test_file_problem_prints_no_torch_warning(tmp_path):
    """A float32 Parquet column and a one-feature CSV both came back from pandas as read-only
    views, and torch warned "NumPy array is not writable" on stderr. Torch warns once per
    process, so this runs in a fresh interpreter."""
    import numpy as np
    import pandas as pd

    column = np.arange(6, dtype=np.float32)
    pd.DataFrame({"a": column, "y": column}).to_parquet(tmp_path / "data.parquet")
    (tmp_path / "one.csv").write_text("a,y\n1.5,3.5\n4,6\n7,9\n1,1\n")
    for data in ("data.parquet", "one.csv"):
        (tmp_path / "grid.toml").write_text(edit(FILE, "data.csv", data))
        result = cli_subprocess("run", "grid.toml", "-q", "--out", f"out-{data}", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "Warning" not in result.stderr, result.stderr
