"""A run's batches by step index: which samples step ``k`` trains on (both engines follow it)."""

from __future__ import annotations

import torch
from torch import Tensor

from sgdbench.engine import seeding
from sgdbench.problems.base import Problem
from sgdbench.spec import RunSpec


class Batches:
    """Batches by step index. In-memory data sits on the device; a shuffled epoch's order is a
    ``randperm`` from a generator seeded by (run seed, epoch), so any step's batch can be
    recomputed without replaying earlier ones (which is what resuming needs).

    A shuffled epoch gathers the data into that order once (a second copy of the training data
    on the device) and its batches are slices of the copy: the same values as indexing with
    ``order[start:stop]`` every step, at the price of a view instead of a gather per step.
    """

    def __init__(self, problem: Problem, spec: RunSpec, device: torch.device) -> None:
        self.X, self.y = problem.X, problem.y
        self.n = problem.n_samples
        self.batch_size = spec.batch_size
        self.steps_per_epoch = spec.steps_per_epoch
        self.shuffle = spec.shuffle and not spec.full_batch and problem.X is not None
        self.seed = spec.seed
        self.device = device
        self._epoch = -1
        self._X_epoch, self._y_epoch = self.X, self.y

    def order(self, epoch: int) -> Tensor:
        """The sample order of shuffled epoch ``epoch``."""
        g = torch.Generator(device=self.device)
        g.manual_seed(seeding.derive_seed(self.seed, seeding.DATA_ORDER, epoch))
        return torch.randperm(self.n, generator=g, device=self.device)

    def _shuffle_to(self, epoch: int) -> None:
        assert self.X is not None
        order = self.order(epoch)
        self._X_epoch = self.X[order]
        self._y_epoch = None if self.y is None else self.y[order]
        self._epoch = epoch

    def __call__(self, step: int) -> tuple[Tensor | None, Tensor | None]:
        if self.X is None or self.batch_size >= self.n:
            return self.X, self.y
        epoch, i = divmod(step, self.steps_per_epoch)
        if self.shuffle and epoch != self._epoch:
            self._shuffle_to(epoch)
        start = i * self.batch_size
        stop = start + self.batch_size  # slicing clips the last, short batch of an epoch
        X, y = self._X_epoch, self._y_epoch
        assert X is not None
        return X[start:stop], None if y is None else y[start:stop]
