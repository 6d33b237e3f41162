"""The stacked engine's optimizers: torch.optim's update rules over a stacked parameter.

A stacked parameter has a leading *member* dimension: ``param[m]`` is run ``m``'s parameters
(the stacked engine keeps all of a model's parameters in one ``[members, n_parameters]`` tensor).
Every hyperparameter that may differ between members (learning rate, momentum, betas, eps, weight
decay, ...) is a tensor of shape ``[members, 1, ...]`` that broadcasts against it; flags that change
the shape of the computation (nesterov, amsgrad, centered, maximize) are shared by the group.

This module is the one home of that math: one ``Algorithm`` block per ``torch.optim`` class, each
with its defaults, its named constants, state and per-step scalars, and its update. Each update
follows the operation order of torch's single-tensor implementation (``_single_tensor_sgd`` and
friends), so a member's trajectory matches ``torch.optim`` to float32 rounding;
``tests/test_stacked.py`` checks each one against ``torch.optim`` running the members one by one.
Quantities that depend on the step count (bias corrections, scheduled and decayed learning rates)
are computed on the host in float64 for a whole window of steps at once, as torch computes them
in Python floats, and reach the device in one transfer per window.

Adding an algorithm (say NAdam) touches one place: write ``class NAdam(Algorithm)`` next to the
others, with ``elementwise`` and ``flags`` (torch's keywords and defaults), ``Constants``,
``State`` and ``Scalars`` (the named tensors its update reads), and the four methods. Defining
the class registers it; ``spec`` and the grid's checks learn of it through ``ELEMENTWISE`` and
``FLAGS``. Then add a case to ``OPTIMIZER_CASES`` in ``tests/test_stacked.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np
import torch
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


def _nonzero(values: np.ndarray) -> np.ndarray | None:
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


# ---------------------------------------------------------------------------------------------
# the algorithms


class SGD(Algorithm):
    """torch.optim.SGD. A member with momentum 0 in a momentum group runs the buffer path with
    dampening 0, which gives exactly its plain update (buf = 0 * buf + grad)."""

    elementwise: ClassVar[dict[str, Any]] = {"momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0}
    flags: ClassVar[dict[str, bool]] = {"nesterov": False, "maximize": False}

    @dataclass
    class Constants(Tensors):
        weight_decay: Tensor | None
        momentum: Tensor | None
        one_minus_dampening: Tensor | None

    @dataclass
    class State(Tensors):
        momentum_buffer: Tensor | None = None  # created from the first gradient, as torch does

    @dataclass
    class Scalars(Tensors):
        neg_lr: Tensor

    def constants(self, v: dict[str, np.ndarray]) -> Columns:
        momentum = _nonzero(v["momentum"])
        return {
            "weight_decay": _nonzero(v["weight_decay"]),
            "momentum": momentum,
            # torch ignores dampening when momentum is 0 (no buffer)
            "one_minus_dampening": None
            if momentum is None
            else 1 - np.where(v["momentum"] != 0, v["dampening"], 0.0),
        }

    def init_state(self, zeros: Callable[[], Tensor], c: Any) -> Tensors:
        return self.State()

    def scalars(self, lr: np.ndarray, t: np.ndarray, v: dict[str, np.ndarray]) -> Columns:
        return {"neg_lr": -lr}

    def update(self, param: Tensor, grad: Tensor, state: State, c: Constants, s: Scalars) -> None:
        if self.group_flags["maximize"]:
            grad = -grad
        if c.weight_decay is not None:
            grad = torch.addcmul(grad, param, c.weight_decay)
        if c.momentum is not None:
            assert c.one_minus_dampening is not None
            buf = state.momentum_buffer
            if buf is None:
                buf = state.momentum_buffer = grad.clone()
            else:
                buf.mul_(c.momentum).addcmul_(grad, c.one_minus_dampening)
            grad = torch.addcmul(grad, buf, c.momentum) if self.group_flags["nesterov"] else buf
        param.addcmul_(grad, s.neg_lr)


class Adam(Algorithm):
    """torch.optim.Adam; with ``decoupled_weight_decay`` (and always for AdamW) the weight
    decay scales the parameter instead of adding to the gradient."""

    elementwise: ClassVar[dict[str, Any]] = {
        "betas": (0.9, 0.999),
        "eps": 1e-8,
        "weight_decay": 0.0,
    }
    flags: ClassVar[dict[str, bool]] = {
        "amsgrad": False,
        "maximize": False,
        "decoupled_weight_decay": False,
    }

    @dataclass
    class Constants(Tensors):
        weight_decay: Tensor | None
        one_minus_beta1: Tensor
        beta2: Tensor
        one_minus_beta2: Tensor
        eps: Tensor

    @dataclass
    class State(Tensors):
        exp_avg: Tensor
        exp_avg_sq: Tensor
        max_exp_avg_sq: Tensor | None

    @dataclass
    class Scalars(Tensors):
        neg_step_size: Tensor
        bias_correction2_sqrt: Tensor
        decay: Tensor | None = None  # 1 - lr * weight_decay, decoupled only

    @property
    def decoupled(self) -> bool:
        return self.group_flags["decoupled_weight_decay"]

    def constants(self, v: dict[str, np.ndarray]) -> Columns:
        return {
            "weight_decay": _nonzero(v["weight_decay"]),
            "one_minus_beta1": 1 - v["beta1"],
            "beta2": v["beta2"],
            "one_minus_beta2": 1 - v["beta2"],
            "eps": v["eps"],
        }

    def init_state(self, zeros: Callable[[], Tensor], c: Any) -> Tensors:
        return self.State(zeros(), zeros(), zeros() if self.group_flags["amsgrad"] else None)

    def scalars(self, lr: np.ndarray, t: np.ndarray, v: dict[str, np.ndarray]) -> Columns:
        bias_correction1 = 1 - v["beta1"][None, :] ** t
        bias_correction2 = 1 - v["beta2"][None, :] ** t
        return {
            "neg_step_size": -(lr / bias_correction1),
            "bias_correction2_sqrt": bias_correction2**0.5,
            "decay": 1 - lr * v["weight_decay"][None, :] if self.decoupled else None,
        }

    def update(self, param: Tensor, grad: Tensor, state: State, c: Constants, s: Scalars) -> None:
        if self.group_flags["maximize"]:
            grad = -grad
        if c.weight_decay is not None:
            if self.decoupled:
                assert s.decay is not None
                param.mul_(s.decay)
            else:
                grad = torch.addcmul(grad, param, c.weight_decay)
        exp_avg, exp_avg_sq = state.exp_avg, state.exp_avg_sq
        exp_avg.lerp_(grad, c.one_minus_beta1)
        exp_avg_sq.mul_(c.beta2).addcmul_(grad * c.one_minus_beta2, grad)
        if state.max_exp_avg_sq is not None:  # amsgrad
            torch.maximum(state.max_exp_avg_sq, exp_avg_sq, out=state.max_exp_avg_sq)
            denom = (state.max_exp_avg_sq.sqrt() / s.bias_correction2_sqrt).add_(c.eps)
        else:
            denom = (exp_avg_sq.sqrt() / s.bias_correction2_sqrt).add_(c.eps)
        param.addcdiv_(exp_avg * s.neg_step_size, denom)


class AdamW(Adam):
    """torch.optim.AdamW: Adam whose weight decay is always decoupled (and 0.01 by default)."""

    elementwise: ClassVar[dict[str, Any]] = {**Adam.elementwise, "weight_decay": 0.01}
    flags: ClassVar[dict[str, bool]] = {"amsgrad": False, "maximize": False}

    @property
    def decoupled(self) -> bool:
        return True

    def constants(self, v: dict[str, np.ndarray]) -> Columns:
        # always decays (multiplies by 1 - lr * wd), even where every wd is 0, as torch does
        return {**super().constants(v), "weight_decay": v["weight_decay"]}


class RMSprop(Algorithm):
    """torch.optim.RMSprop (a member with momentum 0 in a momentum group: buf = grad / avg)."""

    elementwise: ClassVar[dict[str, Any]] = {
        "alpha": 0.99,
        "eps": 1e-8,
        "weight_decay": 0.0,
        "momentum": 0.0,
    }
    flags: ClassVar[dict[str, bool]] = {"centered": False, "maximize": False}

    @dataclass
    class Constants(Tensors):
        weight_decay: Tensor | None
        alpha: Tensor
        one_minus_alpha: Tensor
        eps: Tensor
        momentum: Tensor | None

    @dataclass
    class State(Tensors):
        square_avg: Tensor
        momentum_buffer: Tensor | None
        grad_avg: Tensor | None  # centered only

    @dataclass
    class Scalars(Tensors):
        neg_lr: Tensor

    def constants(self, v: dict[str, np.ndarray]) -> Columns:
        return {
            "weight_decay": _nonzero(v["weight_decay"]),
            "alpha": v["alpha"],
            "one_minus_alpha": 1 - v["alpha"],
            "eps": v["eps"],
            "momentum": _nonzero(v["momentum"]),
        }

    def init_state(self, zeros: Callable[[], Tensor], c: Any) -> Tensors:
        return self.State(
            square_avg=zeros(),
            momentum_buffer=zeros() if c.momentum is not None else None,
            grad_avg=zeros() if self.group_flags["centered"] else None,
        )

    def scalars(self, lr: np.ndarray, t: np.ndarray, v: dict[str, np.ndarray]) -> Columns:
        return {"neg_lr": -lr}

    def update(self, param: Tensor, grad: Tensor, state: State, c: Constants, s: Scalars) -> None:
        if self.group_flags["maximize"]:
            grad = -grad
        if c.weight_decay is not None:
            grad = torch.addcmul(grad, param, c.weight_decay)
        square_avg = state.square_avg
        square_avg.mul_(c.alpha).addcmul_(grad * c.one_minus_alpha, grad)
        if state.grad_avg is not None:  # centered
            state.grad_avg.lerp_(grad, c.one_minus_alpha)
            avg = square_avg.addcmul(state.grad_avg, state.grad_avg, value=-1).sqrt_()
        else:
            avg = square_avg.sqrt()
        avg = avg.add_(c.eps)
        if state.momentum_buffer is not None:
            assert c.momentum is not None
            state.momentum_buffer.mul_(c.momentum).addcdiv_(grad, avg)
            param.addcmul_(state.momentum_buffer, s.neg_lr)
        else:
            param.addcdiv_(grad * s.neg_lr, avg)


class Adagrad(Algorithm):
    """torch.optim.Adagrad."""

    elementwise: ClassVar[dict[str, Any]] = {
        "lr_decay": 0.0,
        "weight_decay": 0.0,
        "initial_accumulator_value": 0.0,
        "eps": 1e-10,
    }
    flags: ClassVar[dict[str, bool]] = {"maximize": False}

    @dataclass
    class Constants(Tensors):
        weight_decay: Tensor | None
        eps: Tensor
        initial_accumulator_value: Tensor

    @dataclass
    class State(Tensors):
        sum: Tensor

    @dataclass
    class Scalars(Tensors):
        neg_clr: Tensor  # -lr / (1 + (t - 1) * lr_decay)

    def constants(self, v: dict[str, np.ndarray]) -> Columns:
        return {
            "weight_decay": _nonzero(v["weight_decay"]),
            "eps": v["eps"],
            "initial_accumulator_value": v["initial_accumulator_value"],
        }

    def init_state(self, zeros: Callable[[], Tensor], c: Any) -> Tensors:
        return self.State(sum=(zeros() + c.initial_accumulator_value).contiguous())

    def scalars(self, lr: np.ndarray, t: np.ndarray, v: dict[str, np.ndarray]) -> Columns:
        return {"neg_clr": -(lr / (1 + (t - 1) * v["lr_decay"][None, :]))}

    def update(self, param: Tensor, grad: Tensor, state: State, c: Constants, s: Scalars) -> None:
        if self.group_flags["maximize"]:
            grad = -grad
        if c.weight_decay is not None:
            grad = torch.addcmul(grad, param, c.weight_decay)
        state.sum.addcmul_(grad, grad, value=1)
        std = state.sum.sqrt().add_(c.eps)
        param.addcdiv_(grad * s.neg_clr, std)


# ---------------------------------------------------------------------------------------------
# what the grid checks read (spec.py), derived from the blocks above

ELEMENTWISE: dict[str, dict[str, Any]] = {n: a.elementwise for n, a in Algorithm.registry.items()}
FLAGS: dict[str, dict[str, bool]] = {n: a.flags for n, a in Algorithm.registry.items()}
SUPPORTED = tuple(Algorithm.registry)


def unsupported_reason(class_name: str, kwargs: dict[str, Any]) -> str | None:
    """None if the stacked engine implements ``class_name`` with ``kwargs``; else why not."""
    if class_name not in ELEMENTWISE:
        return f"the stacked engine implements {', '.join(SUPPORTED)}, not {class_name}"
    known = set(ELEMENTWISE[class_name]) | set(FLAGS[class_name])
    extra = sorted(set(kwargs) - known)
    if extra:
        return f"the stacked {class_name} does not implement {', '.join(extra)}"
    return None


def group_flags(class_name: str, kwargs: dict[str, Any]) -> dict[str, bool]:
    """The flags of ``kwargs`` with defaults filled: runs of one group must agree on them."""
    return {k: bool(kwargs.get(k, default)) for k, default in FLAGS.get(class_name, {}).items()}


def _member_values(
    algorithm: Algorithm, kwargs_list: Sequence[dict[str, Any]]
) -> dict[str, np.ndarray]:
    """Each elementwise keyword as a float64 array over the members (torch's Python floats)."""
    out: dict[str, np.ndarray] = {}
    for key, default in algorithm.elementwise.items():
        values = [kw.get(key, default) for kw in kwargs_list]
        if key == "betas":
            out["beta1"] = np.array([float(b[0]) for b in values])
            out["beta2"] = np.array([float(b[1]) for b in values])
        else:
            out[key] = np.array([float(v) for v in values])
    return out


class StackedOptimizer:
    """State and hyperparameters of one optimizer over a stacked parameter ``[members, ...]``.

    ``create`` takes each member's learning rate and keyword arguments (as the run's spec has
    them). ``step(grad, scalars)`` applies one update; ``scalars`` is one entry of
    ``window_scalars``. ``select`` keeps some members (the others leave the stack).
    """

    def __init__(
        self, algorithm: Algorithm, param: Tensor, lrs: np.ndarray, values: dict[str, np.ndarray]
    ) -> None:
        self.algorithm, self.param, self.lrs, self.values = algorithm, param, lrs, values
        self.steps_done = 0
        columns = algorithm.constants(values)
        self.constants = algorithm.Constants(
            **{k: None if v is None else self._column(v) for k, v in columns.items()}
        )
        zeros = lambda: torch.zeros_like(param, memory_format=torch.preserve_format)  # noqa: E731
        self.state = algorithm.init_state(zeros, self.constants)

    @classmethod
    def create(
        cls, class_name: str, param: Tensor, lrs: Sequence[float], kwargs_list: Sequence[dict]
    ) -> StackedOptimizer:
        """The optimizer ``class_name`` over ``param``, one member per entry of ``lrs``."""
        reason = next((r for kw in kwargs_list if (r := unsupported_reason(class_name, kw))), None)
        if reason:
            raise ValueError(reason)
        flag_sets = {tuple(group_flags(class_name, kw).items()) for kw in kwargs_list}
        if len(flag_sets) != 1:
            raise ValueError(f"members disagree on {', '.join(FLAGS[class_name])}")
        algorithm = Algorithm.registry[class_name](dict(flag_sets.pop()))
        values = _member_values(algorithm, kwargs_list)
        return cls(algorithm, param, np.asarray(lrs, dtype=np.float64), values)

    def _column(self, values: np.ndarray) -> Tensor:
        """Per-member values as a float tensor that broadcasts against ``param``."""
        shape = (len(values),) + (1,) * (self.param.dim() - 1)
        return torch.tensor(values, dtype=self.param.dtype, device=self.param.device).view(shape)

    def window_scalars(self, n_steps: int, lr_factors: np.ndarray | None = None) -> list[Any]:
        """Per-step scalars for the next ``n_steps`` updates (the algorithm's ``Scalars``, one
        per step). ``lr_factors``: the schedule's factor per step."""
        factors = np.ones(n_steps) if lr_factors is None else np.asarray(lr_factors, np.float64)
        lr = factors[:, None] * self.lrs[None, :]  # [n, members]
        t = (self.steps_done + 1 + np.arange(n_steps, dtype=np.float64))[:, None]  # 1-based
        columns = {
            k: v for k, v in self.algorithm.scalars(lr, t, self.values).items() if v is not None
        }
        names = list(columns)
        table = np.stack([columns[k] for k in names], axis=0)  # [K, n, members]
        shape = table.shape + (1,) * (self.param.dim() - 1)
        tensor = torch.tensor(table, dtype=self.param.dtype).view(shape)
        tensor = tensor.to(self.param.device, non_blocking=True)  # one transfer per window
        per_name = [tensor[k].unbind(0) for k in range(len(names))]  # views, no copies
        make = self.algorithm.Scalars
        return [make(**dict(zip(names, row, strict=True))) for row in zip(*per_name, strict=True)]

    def step(self, grad: Tensor, scalars: Any) -> None:
        """One update of every member (``grad``: the stacked gradient, not requiring grad;
        ``scalars``: this step's entry of ``window_scalars``)."""
        self.algorithm.update(self.param, grad, self.state, self.constants, scalars)
        self.steps_done += 1

    def select(self, keep: Tensor, param: Tensor) -> None:
        """Keep only the members ``keep`` (indices); ``param`` is the compacted parameter."""
        self.param = param
        self.state = self.state.select(keep)
        self.constants = self.constants.select(keep)
        idx = keep.cpu().numpy()
        self.lrs = self.lrs[idx]
        self.values = {k: v[idx] for k, v in self.values.items()}
