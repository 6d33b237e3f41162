"""Many copies of one problem's model as one batched function of stacked parameters.

All of a group's parameters live in one ``[members, n_parameters]`` tensor (``StackedModel.flat``);
the model reads them through per-parameter leaf views ``[members, *shape]`` that share its
storage, so the optimizer updates one tensor and the next forward sees the result.

Forward passes: ``nn.Linear`` and ``nn.Sequential`` of ``Linear``/``ReLU`` (the built-in linear,
logistic and MLP models) run as hand-written batched matmuls (``baddbmm``), measured 2-3x faster
than ``vmap`` for small models; anything else (function problems, plug-ins) runs through
``torch.func.functional_call`` under ``torch.vmap``. The built-in losses have batched forms;
other losses are vmapped. A problem that cannot be vmapped (in-place buffer updates, dropout,
data-dependent control flow) is not stackable: ``problem_reason`` says why, at grid load time.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sgdbench.engine.batches import Batches
from sgdbench.engine.evaluation import EVAL_BATCH
from sgdbench.problems import builtin
from sgdbench.problems.base import Problem
from sgdbench.spec import RunSpec

# Per-epoch permuted copies of the data ([members, n, ...]) are kept below this many bytes;
# above it each step gathers its batch with a [members, batch] index instead.
PERMUTED_DATA_BYTES = 256 * 2**20


def _layers(model: nn.Module) -> list[nn.Linear] | None:
    """The Linear layers of a plain Linear or Linear/ReLU MLP (ReLU between each), else None."""
    if type(model) is nn.Linear:
        return [model] if model.bias is not None else None
    if type(model) is not nn.Sequential:
        return None
    mods = list(model)
    linears = mods[0::2]
    relus = mods[1::2]
    if len(mods) % 2 == 0 or any(type(m) is not nn.Linear or m.bias is None for m in linears):
        return None
    if any(type(m) is not nn.ReLU for m in relus):
        return None
    return linears  # type: ignore[return-value]


def _batched_loss(loss_fn: Callable[..., Tensor]) -> Callable[[Tensor, Tensor | None], Tensor]:
    """Per-member mean loss ``[members]`` of outputs ``[members, batch, ...]`` (or ``[members]``
    for function problems) against targets ``[members, batch]`` or shared ``[batch]``."""
    if loss_fn is builtin.mse_loss:
        return lambda out, y: (out.squeeze(-1) - y).square().mean(-1)  # type: ignore[operator]
    if loss_fn is builtin.bce_loss:

        def bce(out: Tensor, y: Tensor | None) -> Tensor:
            assert y is not None
            logits = out.squeeze(-1)
            return F.binary_cross_entropy_with_logits(
                logits, y.expand_as(logits), reduction="none"
            ).mean(-1)

        return bce
    if loss_fn is builtin.cross_entropy_loss:

        def cross_entropy(out: Tensor, y: Tensor | None) -> Tensor:
            assert y is not None
            members, batch, classes = out.shape
            target = y.expand(members, batch).reshape(-1)
            flat = F.cross_entropy(out.reshape(-1, classes), target, reduction="none")
            return flat.view(members, batch).mean(-1)

        return cross_entropy
    if loss_fn is builtin.identity_loss:
        return lambda out, y: out
    if loss_fn is builtin.mean_loss:
        return lambda out, y: out.mean(-1)
    return lambda out, y: torch.vmap(
        loss_fn, in_dims=(0, None if y is None or y.dim() <= 1 else 0)
    )(out, y)


def _analytic_loss(
    loss_fn: Callable[..., Tensor],
) -> Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None:
    """For the built-in data losses: ``(out, y) -> (per-member loss, d loss / d out)``, the
    gradient written out (the matmul path then needs no autograd graph); else None."""

    def mse(out: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        residual = out.squeeze(-1) - y
        return residual.square().mean(-1), (residual * (2.0 / residual.shape[-1])).unsqueeze(-1)

    def bce(out: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        logits = out.squeeze(-1)
        target = y.expand_as(logits)
        loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(-1)
        grad = (torch.sigmoid(logits) - target) * (1.0 / logits.shape[-1])
        return loss, grad.unsqueeze(-1)

    def cross_entropy(out: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        members, batch, _ = out.shape
        log_p = torch.log_softmax(out, dim=-1)
        index = y.expand(members, batch).unsqueeze(-1)
        loss = -log_p.gather(-1, index).squeeze(-1).mean(-1)
        grad = log_p.exp_().scatter_add_(-1, index, torch.full_like(index, -1, dtype=out.dtype))
        return loss, grad.mul_(1.0 / batch)

    return {
        builtin.mse_loss: mse,
        builtin.bce_loss: bce,
        builtin.cross_entropy_loss: cross_entropy,
    }.get(loss_fn)


class StackedModel:
    """The stacked parameters of a group and the batched forward, loss, gradient and evaluation.

    ``template`` provides the model structure, loss and data (on ``device``); ``member_params``
    each member's initial parameters in ``template.trainable_parameters()`` order. On the matmul
    path each layer is stored as its transposed weight ``[in, out]`` then its bias, so the
    forward is one ``baddbmm`` per layer without reshaping; the layout is internal (parameters
    never go back into the ``nn.Module``).
    """

    def __init__(
        self, template: Problem, member_params: list[list[Tensor]], device: torch.device
    ) -> None:
        self.problem = template
        model = template.model
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        self.buffers = dict(model.named_buffers())
        self.layers = _layers(model)
        self.kind = "matmul" if self.layers is not None else "vmap"
        self.loss = _batched_loss(template.loss_fn)
        self.analytic = _analytic_loss(template.loss_fn) if self.layers is not None else None
        shapes = [tuple(p.shape) for p in template.trainable_parameters()]
        if self.layers is not None:  # weight [out, in] stored transposed; bias as [1, out]
            shapes = [(s[1], s[0]) if len(s) == 2 else (1, s[0]) for s in shapes]
            member_params = [
                [p.t() if p.dim() == 2 else p for p in params] for params in member_params
            ]
        self.shapes = shapes
        self.sizes = [math.prod(s) for s in shapes]
        flat = torch.stack(
            [torch.cat([p.detach().reshape(-1) for p in params]) for params in member_params]
        )
        self._bind(flat.to(device))

    def _bind(self, flat: Tensor) -> None:
        self.flat = flat.contiguous()
        members = self.flat.shape[0]
        self.leaves: list[Tensor] = []
        offset = 0
        for shape, size in zip(self.shapes, self.sizes, strict=True):
            view = self.flat[:, offset : offset + size].view(members, *shape)
            self.leaves.append(view.detach().requires_grad_(self.analytic is None))
            offset += size

    @property
    def members(self) -> int:
        return self.flat.shape[0]

    def select(self, keep: Tensor) -> None:
        """Keep only the members at indices ``keep`` (the others leave the stack)."""
        self._bind(self.flat.index_select(0, keep))

    def members_at(self, rows: Tensor) -> StackedModel:
        """A copy of the members at indices ``rows`` (their parameters copied, the rest
        shared): evaluating a few members costs only theirs."""
        other = copy.copy(self)
        other._bind(self.flat.index_select(0, rows))
        return other

    def _activations(self, x: Tensor, shared: bool) -> list[Tensor]:
        """Matmul path: each layer's input, then the output."""
        assert self.layers is not None
        hs = [x.expand(self.members, *x.shape) if shared else x]
        n_layers = len(self.layers)
        for k in range(n_layers):
            h = torch.baddbmm(self.leaves[2 * k + 1], hs[-1], self.leaves[2 * k])
            # in place: ``h`` is a fresh tensor (an evaluation's is [members, 8192, hidden])
            hs.append(torch.relu_(h) if k < n_layers - 1 else h)
        return hs

    def forward(self, x: Tensor | None, shared: bool) -> Tensor:
        """Outputs of every member: ``x`` is ``[batch, ...]`` for all members when ``shared``,
        else ``[members, batch, ...]``; ``None`` for function problems."""
        if self.layers is not None:
            assert x is not None
            return self._activations(x, shared)[-1]
        model, buffers, names = self.problem.model, self.buffers, self.names

        def one(params: tuple[Tensor, ...], xb: Tensor | None) -> Tensor:
            state = {**dict(zip(names, params, strict=True)), **buffers}
            return torch.func.functional_call(model, state, (xb,))

        in_x = None if shared or x is None else 0
        return torch.vmap(one, in_dims=(0, in_x))(tuple(self.leaves), x)

    def losses(self, x: Tensor | None, y: Tensor | None, shared: bool) -> Tensor:
        """Each member's mean loss on its batch: ``[members]``."""
        return self.loss(self.forward(x, shared), y)

    def loss_and_gradient(
        self, x: Tensor | None, y: Tensor | None, shared: bool
    ) -> tuple[Tensor, Tensor]:
        """Each member's loss ``[members]`` and the stacked gradient ``[members, n_parameters]``
        of each member's loss: written out on the matmul path with a built-in loss, else by
        autograd of the summed losses (members are independent, so each gets its own)."""
        if self.analytic is None:
            losses = self.losses(x, y, shared)
            return losses.detach(), self._flatten(torch.autograd.grad(losses.sum(), self.leaves))
        assert x is not None and y is not None and self.layers is not None
        hs = self._activations(x, shared)
        losses, g = self.analytic(hs[-1], y)
        grads: list[Tensor] = []
        for k in range(len(self.layers) - 1, -1, -1):
            grads.append(g.sum(1, keepdim=True))  # bias
            grads.append(torch.bmm(hs[k].transpose(1, 2), g))  # transposed weight
            if k > 0:
                g = torch.bmm(g, self.leaves[2 * k].transpose(1, 2))
                g = torch.ops.aten.threshold_backward(g, hs[k], 0)  # ReLU's backward
        return losses, self._flatten(grads[::-1])

    def _flatten(self, grads: list[Tensor] | tuple[Tensor, ...]) -> Tensor:
        if len(grads) == 1:
            return grads[0].reshape(self.members, -1)
        return torch.cat([g.reshape(self.members, -1) for g in grads], dim=1)

    @torch.no_grad()
    def evaluate(self) -> dict[str, np.ndarray]:
        """Full-data training loss (and accuracy), and validation loss/accuracy where present,
        per member; the batched form of ``eager.evaluate``."""
        problem = self.problem
        was_training = problem.model.training
        problem.model.eval()
        try:
            out: dict[str, np.ndarray] = {}
            if problem.X is None:
                out["train_loss"] = self.losses(None, None, shared=True).double().cpu().numpy()
                return out
            out["train_loss"], acc = self._loss_and_accuracy(problem.X, problem.y)
            if acc is not None:
                out["train_accuracy"] = acc
            if problem.X_val is not None and len(problem.X_val):
                out["val_loss"], acc = self._loss_and_accuracy(problem.X_val, problem.y_val)
                if acc is not None:
                    out["val_accuracy"] = acc
            return out
        finally:
            problem.model.train(was_training)

    def _loss_and_accuracy(
        self, X: Tensor, y: Tensor | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        n = len(X)
        total = torch.zeros(self.members, dtype=torch.float64, device=X.device)
        correct = torch.zeros(self.members, dtype=torch.int64, device=X.device)
        classify = self.problem.task == "classification" and y is not None
        for start in range(0, n, EVAL_BATCH):
            xb = X[start : start + EVAL_BATCH]
            yb = None if y is None else y[start : start + EVAL_BATCH]
            out = self.forward(xb, shared=True)
            total += self.loss(out, yb).double() * len(xb)
            if classify:
                assert yb is not None
                pred = (
                    out.argmax(dim=-1)
                    if out.ndim == 3 and out.shape[-1] > 1
                    else (out.reshape(self.members, -1) > 0).to(yb.dtype)
                )
                correct += (pred == yb).sum(dim=-1)
        loss = (total / n).cpu().numpy()
        return loss, ((correct.double() / n).cpu().numpy() if classify else None)


class StackedBatches:
    """Each member's batch by step index, in exactly the eager engine's order for its seed
    (``Batches`` owns the rule): shared by all members when they see the same data (no shuffle,
    full batch, or one seed), else gathered with a ``[members, batch]`` index.

    ``__call__`` returns ``(x, y, shared)``.
    """

    def __init__(self, problem: Problem, specs: list[RunSpec], device: torch.device) -> None:
        self.by_seed = {s.seed: Batches(problem, s, device) for s in specs}
        first = self.by_seed[specs[0].seed]
        self.first = first
        self.seeds = [s.seed for s in specs]
        self.X, self.y = problem.X, problem.y
        self._epoch = -1
        self._X_epoch: Tensor | None = None
        self._y_epoch: Tensor | None = None
        self._order: Tensor | None = None
        self.shared = self._all_see_the_same()

    def _all_see_the_same(self) -> bool:
        b = self.first
        return self.X is None or b.batch_size >= b.n or not b.shuffle or len(set(self.seeds)) == 1

    def __call__(self, step: int) -> tuple[Tensor | None, Tensor | None, bool]:
        b = self.first
        if self.X is None or b.batch_size >= b.n or not b.shuffle:
            x, y = b(step)
            return x, y, True
        epoch, i = divmod(step, b.steps_per_epoch)
        start, stop = i * b.batch_size, min((i + 1) * b.batch_size, b.n)
        if epoch != self._epoch:
            self._new_epoch(epoch)
        shared = self.shared
        if self._X_epoch is not None:  # slices of this epoch's permuted copy: no gather
            if shared:
                y = None if self._y_epoch is None else self._y_epoch[start:stop]
                return self._X_epoch[start:stop], y, True
            y = None if self._y_epoch is None else self._y_epoch[:, start:stop]
            return self._X_epoch[:, start:stop], y, False
        assert self._order is not None
        idx = self._order[start:stop] if shared else self._order[:, start:stop]
        return self.X[idx], None if self.y is None else self.y[idx], shared

    def _new_epoch(self, epoch: int) -> None:
        """This epoch's order (``Batches.order`` per seed) and, if small enough, the data in
        that order."""
        assert self.X is not None
        if self.shared:
            self._order = self.first.order(epoch)
        else:
            orders = {s: b.order(epoch) for s, b in self.by_seed.items() if s in self.seeds}
            self._order = torch.stack([orders[s] for s in self.seeds])
        self._epoch = epoch
        row_bytes = self.X[0].numel() * self.X.element_size()
        if self._order.numel() * row_bytes <= PERMUTED_DATA_BYTES:
            self._X_epoch = self.X[self._order]
            self._y_epoch = None if self.y is None else self.y[self._order]
        else:
            self._X_epoch = self._y_epoch = None

    def select(self, keep: list[int]) -> None:
        """Keep only the members at positions ``keep``."""
        self.seeds = [self.seeds[k] for k in keep]
        if self.shared != self._all_see_the_same():
            self.first = self.by_seed[self.seeds[0]]
            self.shared = True
        self._epoch = -1  # rebuilt for the remaining members at the next step


def problem_reason(
    problem: Problem,
    rebuild: Callable[[int], Problem] | None = None,
) -> str | None:
    """None if ``problem`` can be stacked; else why not (for the fall-back-to-eager message).

    Tries one stacked step of two copies (per-member and shared batches) and an evaluation.
    ``rebuild(init_seed)`` builds the problem again: a plug-in whose *data* depends on the run
    seed cannot share one copy of the data between members.
    """
    model = problem.model
    if problem.params is not None:
        model_params = {id(p) for p in model.parameters() if p.requires_grad}
        if {id(p) for p in problem.trainable_parameters()} != model_params:
            return "its optimizer parameters are not exactly its model's trainable parameters"
    try:
        params = [p.detach().clone() for p in problem.trainable_parameters()]
        stacked = StackedModel(problem, [params, params], torch.device("cpu"))
        X, y = problem.X, problem.y
        if X is None:
            batches: list[tuple[Any, Any, bool]] = [(None, None, True)]
        else:
            xb, yb = X[:2], None if y is None else y[:2]
            both = (xb.unsqueeze(0).expand(2, *xb.shape), None if yb is None else yb.expand(2, 2))
            batches = [(xb, yb, True), (*both, False)]
        for xb, yb, shared in batches:
            losses, _ = stacked.loss_and_gradient(xb, yb, shared)
            if losses.shape != (2,):
                return f"its loss is not a scalar per member (got shape {tuple(losses.shape)})"
        stacked.evaluate()
    except Exception as e:  # any failure means: run it on the eager engine
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        return f"cannot stack {type(model).__name__} with torch.vmap: {detail}"
    if rebuild is not None and X is not None:
        other = rebuild(1)
        same = other.X is not None and torch.equal(other.X, X)
        if same and y is not None:
            same = other.y is not None and torch.equal(other.y, y)
        if not same:
            return "its data depends on the run seed, so members cannot share one copy"
    return None
