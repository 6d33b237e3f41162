"""The CUDA path: no host sync inside the step loop, bitwise reproducible, equal to a plain loop.

Skipped without a GPU (``-m cuda`` selects only these).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sgdbench.engine import eager
from sgdbench.metrics import loss_digest
from tests._reference import reference_losses
from tests.test_engine_reference import make_spec

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

ALL = ["sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad"]


@pytest.mark.parametrize("shuffle", [True, False], ids=["shuffle", "in-order"])
@pytest.mark.parametrize("optimizer", ALL)
def test_step_loop_never_syncs(write_grid, monkeypatch, optimizer, shuffle):
    """``set_sync_debug_mode("error")`` over the step loop: a sync would fail the run."""
    monkeypatch.setenv(eager.SYNC_DEBUG_ENV, "1")
    spec = make_spec(write_grid, optimizer, shuffle=shuffle, device="cuda", schedule="cosine")
    traj = eager.run(spec)
    assert traj.status == "ok", f"{traj.message}\n{traj.traceback}"
    assert len(traj.losses) == spec.steps
    assert torch.cuda.get_sync_debug_mode() == 0  # restored after the loop


def test_sync_guard_catches_a_sync():
    """The guard itself works: ``.item()`` inside it raises."""
    x = torch.ones(2, device="cuda")
    with pytest.raises(RuntimeError), eager._sync_debug_guard():
        x.sum().item()


def test_randperm_and_indexing_do_not_sync():
    g = torch.Generator(device="cuda")
    g.manual_seed(1)
    X = torch.randn(1000, 3, device="cuda")
    with eager._sync_debug_guard():
        order = torch.randperm(1000, generator=g, device="cuda")
        xb = X[order][:32]
        xb.sum()
    torch.cuda.synchronize()


@pytest.mark.parametrize("optimizer", ALL)
def test_reproducible_run_to_run(write_grid, optimizer):
    spec = make_spec(write_grid, optimizer, device="cuda")
    first, second = eager.run(spec), eager.run(spec)
    assert first.status == second.status == "ok"
    assert loss_digest(first.losses) == loss_digest(second.losses)


@pytest.mark.parametrize("shuffle", [True, False], ids=["shuffle", "in-order"])
@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_losses_bitwise_equal_to_plain_loop(write_grid, optimizer, shuffle):
    spec = make_spec(write_grid, optimizer, shuffle=shuffle, device="cuda")
    traj = eager.run(spec)
    assert traj.status == "ok", traj.message
    expected = reference_losses(spec, traj.info["optimizer_impl"], device="cuda")
    np.testing.assert_array_equal(traj.losses, expected)
