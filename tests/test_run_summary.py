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
    """typer's rich help printed on/off options as ``--force <bool>``, as if they took a value."""
    for command in ("run", "report", "plot", "compare"):
        result = cli(command, "--help")
        assert result.exit_code == 0
        assert "<bool>" not in "".join(
            line for line in result.stdout.splitlines() if "--help" not in line
        ), command
