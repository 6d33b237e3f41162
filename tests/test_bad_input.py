"""Bad input: exit 2 (1 for runtime failures), one line naming file and key, no traceback, and
an existing results folder left byte-for-byte unchanged."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.helpers import REPO, cli

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
        "grid.toml: train.epochz: unknown key; did you mean epochs?",
    ),
    (
        "unknown-problem-key",
        edit(LINEAR, "n_features = 2", "n_feature = 2"),
        {},
        "grid.toml: problem.n_feature: unknown key for problem 'linear'; did you mean n_features?",
    ),
    (
        "unknown-problem",
        edit(LINEAR, 'name = "linear"', 'name = "lineer"'),
        {},
        "grid.toml: problem.name: unknown problem 'lineer'; did you mean linear?",
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
        "grid.toml: grid.optimizer[1]: unknown optimizer 'adamm'; did you mean adam?",
    ),
    (
        "unknown-keyword",
        LINEAR + '[optimizers.m]\ntype = "SGD"\nmomentom = 0.9\n',
        {},
        "grid.toml: optimizers.m.momentom: not a keyword of torch.optim.SGD; did you mean "
        "momentum?",
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
        "grid.toml: grid.momentum: Invalid momentum value",
    ),
    (
        "preset-bad-value",
        edit(LINEAR, "lr = 0.1", 'lr = 0.1\noptimizer = "m"')
        + '[optimizers.m]\ntype = "SGD"\nmomentum = -1.0\n',
        {},
        "grid.toml: optimizers.m.momentum: Invalid momentum value",
    ),
    (
        "keyword-needs-another",
        LINEAR + "nesterov = true\n",
        {},
        "grid.toml: grid.nesterov: Nesterov momentum requires a momentum",
    ),
    (
        "misspelled-grid-key",
        edit(LINEAR, "batch_size = 4", "batchsize = 4"),
        {},
        "grid.toml: grid.batchsize: unknown key; did you mean batch_size?",
    ),
    (
        "misspelled-lr",
        edit(LINEAR, "lr = 0.1", "lrr = 0.1"),
        {},
        "grid.toml: grid.lrr: unknown key; did you mean lr?",
    ),
    (
        "misspelled-section",
        edit(LINEAR, "[train]", "[trian]"),
        {},
        "grid.toml: trian: unknown key; did you mean train?",
    ),
    (
        "misspelled-include-key",
        LINEAR + "[[include]]\nbatchsize = 1\n",
        {},
        "grid.toml: include[0].batchsize: unknown key; did you mean batch_size?",
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
        "name-too-long",
        edit(LINEAR, 'name = "bad"', f'name = "{"a" * 300}"'),
        {},
        "grid.toml: name: must be at most 100 characters, got 300",
    ),
    (
        "name-trailing-newline",
        edit(LINEAR, 'name = "bad"', 'name = "bad\\n"'),
        {},
        "grid.toml: name: must be letters, digits, '_', '-' or '.', got 'bad\\n'",
    ),
    (
        "toml-too-deep-to-parse",
        "x = " + "[" * 1000 + "]" * 1000 + "\n" + LINEAR,
        {},
        "grid.toml: nested too deeply to parse",
    ),
    (
        "toml-nested-array",
        edit(LINEAR, "n_features = 2", "n_features = 2\nx = " + "[" * 300 + "]" * 300),
        {},
        "grid.toml: problem.x: nested more than 16 levels deep",
    ),
    (
        "toml-nested-table",
        LINEAR + ".".join(["a"] * 300) + " = 1\n",
        {},
        "grid.toml: grid.a: nested more than 16 levels deep",
    ),
    (
        "grid-too-large",
        LINEAR
        + "".join(f"{key} = {list(range(100))}\n" for key in ("seed", "weight_decay"))
        + "".join(
            f"{key} = {[i / 100 for i in range(100)]}\n" for key in ("momentum", "dampening")
        ),
        {},
        "grid.toml: grid: 100_000_000 combinations, more than the limit of 100_000",
    ),
    (
        "lr-beyond-float32",
        edit(LINEAR, "lr = 0.1", "lr = 1e39"),
        {},
        "grid.toml: grid.lr: must be <= 3.4e+38 (the float32 range), got 1e+39",
    ),
    (
        "keyword-beyond-float32",
        LINEAR + "weight_decay = 1e39\n",
        {},
        "grid.toml: grid.weight_decay: must be a finite number within float32 range",
    ),
    (
        "steps-2-to-63",
        edit(LINEAR, "steps = 5", "steps = 9223372036854775808"),
        {},
        "grid.toml: train.steps: must be <= 100_000_000, got 9_223_372_036_854_775_808",
    ),
    (
        "epochs-beyond-steps-limit",
        edit(LINEAR, "steps = 5", "epochs = 100000000"),
        {},
        "grid.toml: train.epochs: 100_000_000 epochs of 8 steps are 800_000_000 steps",
    ),
    (
        "eval-every-2-to-63",
        edit(LINEAR, "steps = 5", "steps = 5\neval_every = 9223372036854775807"),
        {},
        "grid.toml: train.eval_every: must be <= 100_000_000",
    ),
    (
        "checkpoint-every-huge",
        edit(LINEAR, "steps = 5", "steps = 5\ncheckpoint_every = 9223372036854775807"),
        {},
        "grid.toml: train.checkpoint_every: must be <= 100_000_000",
    ),
    (
        "threads-huge",
        edit(LINEAR, "steps = 5", "steps = 5\nthreads = 100000"),
        {},
        "grid.toml: train.threads: must be <= 1_024",
    ),
    (
        "max-seconds-huge",
        edit(LINEAR, "steps = 5", "steps = 5\nmax_seconds = 1e300"),
        {},
        "grid.toml: train.max_seconds: must be <= 1e+07",
    ),
    (
        "target-loss-inf",
        edit(LINEAR, "steps = 5", "steps = 5\ntarget_loss = inf"),
        {},
        "grid.toml: train.target_loss: must be a finite number",
    ),
    (
        "divergence-factor-inf",
        edit(LINEAR, "steps = 5", "steps = 5\ndivergence_factor = inf"),
        {},
        "grid.toml: train.divergence_factor: must be a number > 1 within float32 range",
    ),
    (
        "seed-beyond-int64",
        LINEAR + "seed = 18446744073709551616\n",
        {},
        "grid.toml: grid.seed: must be <= 4_294_967_295",
    ),
    (
        "n-samples-huge",
        edit(LINEAR, "n_samples = 32", "n_samples = 1000000000000"),
        {},
        "grid.toml: problem.n_samples: must be <= 1e+08",
    ),
    (
        "hidden-huge",
        """
[problem]
name = "digits"
model = "mlp"
hidden = [10000000]
[train]
steps = 3
[grid]
lr = 0.1
batch_size = 4
""",
        {},
        "grid.toml: problem.hidden[0]: must be <= 100000",
    ),
    (
        "problem-noise-nan",
        edit(LINEAR, "n_samples = 32", "n_samples = 32\nnoise = nan"),
        {},
        "grid.toml: problem.noise: must be a finite number within float32 range",
    ),
    (
        "problem-out-of-memory",
        edit(
            LINEAR, "n_samples = 32\nn_features = 2", "n_samples = 100000000\nn_features = 1000000"
        ),
        {},
        "grid.toml: problem.n_samples: out of memory building the problem",
    ),
    (
        "exclude-unknown-key",
        LINEAR + "[[exclude]]\nfoo = 1\n",
        {},
        "grid.toml: exclude[0].foo: unknown key",
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


@pytest.mark.slow  # a fresh interpreter
def test_file_problem_prints_no_torch_warning(tmp_path):
    """A float32 Parquet column and a one-feature CSV both came back from pandas as read-only
    views, and torch warned "NumPy array is not writable" on stderr. Torch warns once per
    process, so this runs in a fresh interpreter (one for both files: whichever warns first,
    the warning shows)."""
    import numpy as np
    import pandas as pd

    column = np.arange(6, dtype=np.float32)
    pd.DataFrame({"a": column, "y": column}).to_parquet(tmp_path / "data.parquet")
    (tmp_path / "one.csv").write_text("a,y\n1.5,3.5\n4,6\n7,9\n1,1\n")
    script = ["from sgdbench.cli import app", "def run(args):", "    try:", "        app(args)"]
    script += ["    except SystemExit as e:", "        assert not e.code, args"]
    for data in ("data.parquet", "one.csv"):
        (tmp_path / f"grid-{data}.toml").write_text(edit(FILE, "data.csv", data))
        args = ["run", f"grid-{data}.toml", "-q", "--out", f"out-{data}"]
        script.append(f"run({args!r})")
    result = subprocess.run(
        [sys.executable, "-c", "\n".join(script)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr
    for data in ("data.parquet", "one.csv"):
        assert len(pd.read_parquet(tmp_path / f"out-{data}" / "runs.parquet")) >= 1


def test_grid_with_a_byte_order_mark_is_read(tmp_path):
    """Windows editors start UTF-8 files with a byte-order mark; TOML itself rejects it."""
    (tmp_path / "grid.toml").write_bytes(b"\xef\xbb\xbf" + LINEAR.encode())
    result = cli("run", "grid.toml", "--dry-run", cwd=tmp_path)
    assert result.exit_code == 0, result
    assert not (tmp_path / "results").exists()
