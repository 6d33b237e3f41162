"""The end-of-run summary says why runs were skipped, once per reason."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import cli

GRID = """
name = "gpu-only"
[problem]
name = "linear"
n_samples = 16
n_features = 2
[train]
steps = 2
[grid]
optimizer = "sgd"
lr = 0.1
batch_size = 4
device = "cuda"
seed = [0, 1, 2]
"""


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu_skips_and_says_why_once(tmp_path):
    (tmp_path / "grid.toml").write_text(GRID)
    result = cli("run", "grid.toml", "--out", tmp_path / "out", "-q", cwd=tmp_path)
    assert result.exit_code == 0, result
    lines = result.stderr.strip().splitlines()
    assert lines[0].endswith(": 3 skipped"), result.stderr
    reasons = [line for line in lines if "CUDA is not available" in line]
    assert reasons == ["  skipped 3 run(s): device 'cuda' requested but CUDA is not available here"]


def test_help_shows_flags_without_a_value_type() -> None:
    """typer's rich help printed on/off options as ``--force <bool>``, as if they took a value;
    its own ``--help`` option too, on the top-level help and on every command's."""
    import typer

    from sgdbench.cli import app

    commands = list(typer.main.get_group(app).commands)
    assert len(commands) >= 7, commands
    for args in [[], *([c] for c in commands)]:
        result = cli(*args, "--help")
        assert result.exit_code == 0, (args, result)
        assert "--help" in result.stdout, args
        assert "<bool>" not in result.stdout, (args, result.stdout)
