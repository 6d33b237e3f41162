"""The algorithms, one block per ``torch.optim`` class: defaults, named constants, state and
per-step scalars, and the update in the operation order of torch's single-tensor implementation.
Defining a class here registers it (``Algorithm.registry``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from sgdbench.stacked_optim.base import Algorithm, Columns, Tensors, nonzero


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
        momentum = nonzero(v["momentum"])
        return {
            "weight_decay": nonzero(v["weight_decay"]),
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
            "weight_decay": nonzero(v["weight_decay"]),
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
            "weight_decay": nonzero(v["weight_decay"]),
            "alpha": v["alpha"],
            "one_minus_alpha": 1 - v["alpha"],
            "eps": v["eps"],
            "momentum": nonzero(v["momentum"]),
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
            "weight_decay": nonzero(v["weight_decay"]),
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
