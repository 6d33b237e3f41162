"""Benchmarks run on one intra-op thread (the engine's specs say threads = 1 too)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def devices() -> list[object]:
    """CPU always; CUDA as a parameter that skips where there is no GPU."""
    skip = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
    return ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, skip])]


@pytest.fixture
def rounds(request: pytest.FixtureRequest) -> int:
    """Rounds for the ``benchmark.pedantic`` benchmarks: ``--benchmark-min-rounds`` (which
    pytest-benchmark applies to the others), at least 3. More rounds steady the min that
    ``make bench-compare`` gates on."""
    return max(3, int(request.config.getoption("benchmark_min_rounds")))
