"""The frame of a stacked optimizer algorithm: named per-member tensors and the ``Algorithm``
interface every block in ``algorithms`` fills in (see the package docstring)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np
from torch import Tensor

Columns = dict[str, np.ndarray | None]  # per-member values by name; None: a term no member uses


@dataclass
class Tensors:
    """Named per-member tensors (leading member dimension); None marks a term nobody uses."""

    def select(self, keep: Tensor) -> Self:
        """Only the members at indices ``keep``."""
        kept = {
            f.name: v.index_select(0, keep)
            for f in dataclasses.fields(self)
            if (v := getattr(self, f.name)) is not None
        }
        return dataclasses.replace(self, **kept)


def nonzero(values: np.ndarray) -> np.ndarray | None:
    """``values``, or None when every member's is zero (the update then skips the term)."""
    return values if np.any(values != 0) else None


class Algorithm:
    """One ``torch.optim`` class over a stacked parameter; subclasses register themselves.

    ``elementwise``: keywords that may differ between members, with torch's defaults
    (``betas`` arrives split as ``beta1`` / ``beta2``). ``flags``: keywords the group must agree
    on (they change which operations run).
    """

    name: ClassVar[str]
    elementwise: ClassVar[dict[str, Any]]
    flags: ClassVar[dict[str, bool]]
    Constants: ClassVar[type[Tensors]]
    State: ClassVar[type[Tensors]]
    Scalars: ClassVar[type[Tensors]]
    registry: ClassVar[dict[str, type[Algorithm]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.name = cls.__name__
        Algorithm.registry[cls.name] = cls

    def __init__(self, group_flags: dict[str, bool]) -> None:
        self.group_flags = group_flags  # this group's values of ``flags``

    def constants(self, v: dict[str, np.ndarray]) -> Columns:
        """The per-member constants the update reads."""
        raise NotImplementedError

    def init_state(self, zeros: Callable[[], Tensor], c: Any) -> Tensors:
        """The optimizer state before the first step."""
        raise NotImplementedError

    def scalars(self, lr: np.ndarray, t: np.ndarray, v: dict[str, np.ndarray]) -> Columns:
        """Per-step values ``[steps, members]`` from the scheduled ``lr`` and 1-based ``t``."""
        raise NotImplementedError

    def update(self, param: Tensor, grad: Tensor, state: Any, c: Any, s: Any) -> None:
        """One update of every member, in place."""
        raise NotImplementedError
