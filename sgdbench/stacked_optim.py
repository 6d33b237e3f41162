"""The stacked engine's optimizers: torch.optim's update rules over a stacked parameter.

A stacked parameter has a leading *member* dimension: ``param[m]`` is run ``m``'s parameters
(the stacked engine keeps all of a model's parameters in one ``[members, n_parameters]`` tensor).
Every hyperparameter that may differ between members (learning rate, momentum, betas, eps, weight
decay, ...) is a tensor of shape ``[members, 1, ...]`` that broadcasts against it; flags that change
the shape of the computation (nesterov, amsgrad, centered, maximize) are shared by the group.

This module is the one home of that math. Each ``*_update`` function follows the operation order
of torch's single-tensor implementation (``torch/optim/sgd.py::_single_tensor_sgd`` and friends),
so a member's trajectory matches ``torch.optim`` to float32 rounding; ``tests/test_stacked.py``
checks each one against ``torch.optim`` running the members one by one. Quantities that depend
on the step count (bias corrections, scheduled and decayed learning rates) are computed on the
host in float64 for a whole window of steps at once, as torch computes them in Python floats,
and reach the device in one transfer per window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

# Per class: keywords that may differ between members (elementwise) with torch's defaults.
ELEMENTWISE: dict[str, dict[str, Any]] = {
    "SGD": {"momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0},
    "Adam": {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0},
    "AdamW": {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01},
    "RMSprop": {"alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0, "momentum": 0.0},
    "Adagrad": {
        "lr_decay": 0.0,
        "weight_decay": 0.0,
        "initial_accumulator_value": 0.0,
        "eps": 1e-10,
    },
}
# Per class: keywords that must be equal within a group (they change which operations run).
FLAGS: dict[str, dict[str, bool]] = {
    "SGD": {"nesterov": False, "maximize": False},
    "Adam": {"amsgrad": False, "maximize": False, "decoupled_weight_decay": False},
    "AdamW": {"amsgrad": False, "maximize": False},
    "RMSprop": {"centered": False, "maximize": False},
    "Adagrad": {"maximize": False},
}
SUPPORTED = tuple(ELEMENTWISE)


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


# ---------------------------------------------------------------------------------------------
# update rules: plain functions over one stacked tensor. ``h`` holds per-member constants
# ([members, 1, ...]); ``s`` the per-step scalars of this step (same shape).


def sgd_update(
    param: Tensor,
    grad: Tensor,
    state: dict[str, Tensor],
    h: dict[str, Tensor],
    s: dict[str, Tensor],
    flags: dict[str, bool],
) -> None:
    """torch.optim.SGD. A member with momentum 0 runs the buffer path with dampening 0, which
    gives exactly its plain update (buf = 0 * buf + grad)."""
    if flags["maximize"]:
        grad = -grad
    if "weight_decay" in h:
        grad = torch.addcmul(grad, param, h["weight_decay"])
    if "momentum" in h:
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = state["momentum_buffer"] = grad.clone()
        else:
            buf.mul_(h["momentum"]).addcmul_(grad, h["one_minus_dampening"])
        grad = torch.addcmul(grad, buf, h["momentum"]) if flags["nesterov"] else buf
    param.addcmul_(grad, s["neg_lr"])


def adam_update(
    param: Tensor,
    grad: Tensor,
    state: dict[str, Tensor],
    h: dict[str, Tensor],
    s: dict[str, Tensor],
    flags: dict[str, bool],
) -> None:
    """torch.optim.Adam and AdamW (``decoupled``: the weight decay scales the parameter)."""
    if flags["maximize"]:
        grad = -grad
    if "weight_decay" in h:
        if flags["decoupled"]:
            param.mul_(s["decay"])
        else:
            grad = torch.addcmul(grad, param, h["weight_decay"])
    exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
    exp_avg.lerp_(grad, h["one_minus_beta1"])
    exp_avg_sq.mul_(h["beta2"]).addcmul_(grad * h["one_minus_beta2"], grad)
    if flags["amsgrad"]:
        torch.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
        denom = (state["max_exp_avg_sq"].sqrt() / s["bias_correction2_sqrt"]).add_(h["eps"])
    else:
        denom = (exp_avg_sq.sqrt() / s["bias_correction2_sqrt"]).add_(h["eps"])
    param.addcdiv_(exp_avg * s["neg_step_size"], denom)


def rmsprop_update(
    param: Tensor,
    grad: Tensor,
    state: dict[str, Tensor],
    h: dict[str, Tensor],
    s: dict[str, Tensor],
    flags: dict[str, bool],
) -> None:
    """torch.optim.RMSprop (a member with momentum 0 in a momentum group: buf = grad / avg)."""
    if flags["maximize"]:
        grad = -grad
    if "weight_decay" in h:
        grad = torch.addcmul(grad, param, h["weight_decay"])
    square_avg = state["square_avg"]
    square_avg.mul_(h["alpha"]).addcmul_(grad * h["one_minus_alpha"], grad)
    if flags["centered"]:
        grad_avg = state["grad_avg"]
        grad_avg.lerp_(grad, h["one_minus_alpha"])
        avg = square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_()
    else:
        avg = square_avg.sqrt()
    avg = avg.add_(h["eps"])
    if "momentum" in h:
        buf = state["momentum_buffer"]
        buf.mul_(h["momentum"]).addcdiv_(grad, avg)
        param.addcmul_(buf, s["neg_lr"])
    else:
        param.addcdiv_(grad * s["neg_lr"], avg)


def adagrad_update(
    param: Tensor,
    grad: Tensor,
    state: dict[str, Tensor],
    h: dict[str, Tensor],
    s: dict[str, Tensor],
    flags: dict[str, bool],
) -> None:
    """torch.optim.Adagrad."""
    if flags["maximize"]:
        grad = -grad
    if "weight_decay" in h:
        grad = torch.addcmul(grad, param, h["weight_decay"])
    state_sum = state["sum"]
    state_sum.addcmul_(grad, grad, value=1)
    std = state_sum.sqrt().add_(h["eps"])
    param.addcdiv_(grad * s["neg_clr"], std)


UPDATES = {
    "SGD": sgd_update,
    "Adam": adam_update,
    "AdamW": adam_update,
    "RMSprop": rmsprop_update,
    "Adagrad": adagrad_update,
}


# ---------------------------------------------------------------------------------------------
# per-member constants and per-step scalars (float64 on the host, like torch's Python floats)


def _member_values(class_name: str, kwargs_list: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
    defaults = ELEMENTWISE[class_name]
    out: dict[str, np.ndarray] = {}
    for key, default in defaults.items():
        values = [kw.get(key, default) for kw in kwargs_list]
        if key == "betas":
            out["beta1"] = np.array([float(b[0]) for b in values])
            out["beta2"] = np.array([float(b[1]) for b in values])
        else:
            out[key] = np.array([float(v) for v in values])
    return out


def _constants(class_name: str, v: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The per-member constants the update reads (omitting terms that are zero for all)."""
    h: dict[str, np.ndarray] = {}
    if class_name != "AdamW" and np.any(v["weight_decay"] != 0):
        h["weight_decay"] = v["weight_decay"]
    if class_name == "AdamW":
        h["weight_decay"] = v["weight_decay"]  # AdamW always decays (mul by 1 - lr * wd)
    if class_name == "SGD" and np.any(v["momentum"] != 0):
        h["momentum"] = v["momentum"]
        # torch ignores dampening when momentum is 0 (no buffer)
        h["one_minus_dampening"] = 1 - np.where(v["momentum"] != 0, v["dampening"], 0.0)
    if class_name in ("Adam", "AdamW"):
        h["one_minus_beta1"] = 1 - v["beta1"]
        h["beta2"] = v["beta2"]
        h["one_minus_beta2"] = 1 - v["beta2"]
        h["eps"] = v["eps"]
    if class_name == "RMSprop":
        h["alpha"] = v["alpha"]
        h["one_minus_alpha"] = 1 - v["alpha"]
        h["eps"] = v["eps"]
        if np.any(v["momentum"] != 0):
            h["momentum"] = v["momentum"]
    if class_name == "Adagrad":
        h["eps"] = v["eps"]
    return h


@dataclass
class StackedOptimizer:
    """State and hyperparameters of one optimizer over a stacked parameter ``[members, ...]``.

    ``lrs`` and ``kwargs_list`` give each member's learning rate and keyword arguments (as the
    run's spec has them). ``step(grad, scalars)`` applies one update; ``scalars`` is one entry
    of ``window_scalars``.
    """

    class_name: str
    param: Tensor
    lrs: np.ndarray
    values: dict[str, np.ndarray]
    flags: dict[str, bool]
    constants: dict[str, Tensor] = field(default_factory=dict)
    state: dict[str, Tensor] = field(default_factory=dict)
    steps_done: int = 0

    @classmethod
    def create(
        cls, class_name: str, param: Tensor, lrs: Sequence[float], kwargs_list: Sequence[dict]
    ) -> StackedOptimizer:
        reason = next((r for kw in kwargs_list if (r := unsupported_reason(class_name, kw))), None)
        if reason:
            raise ValueError(reason)
        flag_sets = {tuple(group_flags(class_name, kw).items()) for kw in kwargs_list}
        if len(flag_sets) != 1:
            raise ValueError(f"members disagree on {', '.join(FLAGS[class_name])}")
        flags = dict(flag_sets.pop())
        flags["decoupled"] = class_name == "AdamW" or flags.pop("decoupled_weight_decay", False)
        flags.setdefault("nesterov", False)
        flags.setdefault("amsgrad", False)
        flags.setdefault("centered", False)
        values = _member_values(class_name, kwargs_list)
        opt = cls(class_name, param, np.asarray(lrs, dtype=np.float64), values, flags)
        opt.constants = {k: opt._column(v) for k, v in _constants(class_name, values).items()}
        opt._init_state()
        return opt

    def _column(self, values: np.ndarray) -> Tensor:
        """Per-member values as a float tensor that broadcasts against ``param``."""
        shape = (len(values),) + (1,) * (self.param.dim() - 1)
        return torch.tensor(values, dtype=self.param.dtype, device=self.param.device).view(shape)

    def _init_state(self) -> None:
        p, name = self.param, self.class_name
        zeros = lambda: torch.zeros_like(p, memory_format=torch.preserve_format)  # noqa: E731
        if name in ("Adam", "AdamW"):
            self.state = {"exp_avg": zeros(), "exp_avg_sq": zeros()}
            if self.flags["amsgrad"]:
                self.state["max_exp_avg_sq"] = zeros()
        elif name == "RMSprop":
            self.state = {"square_avg": zeros()}
            if "momentum" in self.constants:
                self.state["momentum_buffer"] = zeros()
            if self.flags["centered"]:
                self.state["grad_avg"] = zeros()
        elif name == "Adagrad":
            init = self._column(self.values["initial_accumulator_value"])
            self.state = {"sum": (zeros() + init).contiguous()}

    def window_scalars(
        self, n_steps: int, lr_factors: np.ndarray | None = None
    ) -> list[dict[str, Tensor]]:
        """Per-step scalars for the next ``n_steps`` updates, one dict per step of tensors
        shaped like the constants. ``lr_factors``: the schedule's factor per step."""
        factors = np.ones(n_steps) if lr_factors is None else np.asarray(lr_factors, np.float64)
        lr = factors[:, None] * self.lrs[None, :]  # [n, members]
        t = (self.steps_done + 1 + np.arange(n_steps, dtype=np.float64))[:, None]  # 1-based
        v, name = self.values, self.class_name
        columns: dict[str, np.ndarray]
        if name in ("SGD", "RMSprop"):
            columns = {"neg_lr": -lr}
        elif name in ("Adam", "AdamW"):
            bias_correction1 = 1 - v["beta1"][None, :] ** t
            bias_correction2 = 1 - v["beta2"][None, :] ** t
            columns = {
                "neg_step_size": -(lr / bias_correction1),
                "bias_correction2_sqrt": bias_correction2**0.5,
            }
            if self.flags["decoupled"]:
                columns["decay"] = 1 - lr * v["weight_decay"][None, :]
        else:  # Adagrad
            columns = {"neg_clr": -(lr / (1 + (t - 1) * v["lr_decay"][None, :]))}
        names = list(columns)
        table = np.stack([columns[k] for k in names], axis=0)  # [K, n, members]
        shape = table.shape + (1,) * (self.param.dim() - 1)
        tensor = torch.tensor(table, dtype=self.param.dtype).view(shape)
        tensor = tensor.to(self.param.device, non_blocking=True)
        per_name = [tensor[k].unbind(0) for k in range(len(names))]  # views, no copies
        return [dict(zip(names, row, strict=True)) for row in zip(*per_name, strict=True)]

    def step(self, grad: Tensor, scalars: dict[str, Tensor]) -> None:
        """One update of every member (``grad``: the stacked gradient, not requiring grad;
        ``scalars``: this step's entry of ``window_scalars``)."""
        UPDATES[self.class_name](self.param, grad, self.state, self.constants, scalars, self.flags)
        self.steps_done += 1

    def select(self, keep: Tensor, param: Tensor) -> None:
        """Keep only the members ``keep`` (indices); ``param`` is the compacted parameter."""
        self.param = param
        self.state = {k: v.index_select(0, keep) for k, v in self.state.items()}
        self.constants = {k: v.index_select(0, keep) for k, v in self.constants.items()}
        idx = keep.cpu().numpy()
        self.lrs = self.lrs[idx]
        self.values = {k: v[idx] for k, v in self.values.items()}
