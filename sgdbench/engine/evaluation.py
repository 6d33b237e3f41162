"""Full-data evaluation of one model: training loss and accuracy, validation where present."""

from __future__ import annotations

import torch
from torch import Tensor

from sgdbench.problems.base import Problem

EVAL_BATCH = 8192  # rows per forward pass when evaluating on the full data


@torch.no_grad()
def evaluate(problem: Problem) -> dict[str, float]:
    """Full-data training loss (and accuracy), and validation loss/accuracy where present."""
    model = problem.model
    was_training = model.training
    model.eval()
    try:
        out: dict[str, float] = {}
        if problem.X is None:
            out["train_loss"] = float(problem.loss_fn(model(None), None))
            return out
        out["train_loss"], acc = _loss_and_accuracy(problem, problem.X, problem.y)
        if acc is not None:
            out["train_accuracy"] = acc
        if problem.X_val is not None and len(problem.X_val):
            out["val_loss"], acc = _loss_and_accuracy(problem, problem.X_val, problem.y_val)
            if acc is not None:
                out["val_accuracy"] = acc
        return out
    finally:
        model.train(was_training)


def _loss_and_accuracy(problem: Problem, X: Tensor, y: Tensor | None) -> tuple[float, float | None]:
    total, correct, n = 0.0, 0, len(X)
    classify = problem.task == "classification" and y is not None
    for start in range(0, n, EVAL_BATCH):
        xb = X[start : start + EVAL_BATCH]
        yb = None if y is None else y[start : start + EVAL_BATCH]
        out = problem.model(xb)
        total += float(problem.loss_fn(out, yb)) * len(xb)
        if classify:
            assert yb is not None
            pred = (
                out.argmax(dim=1)
                if out.ndim == 2 and out.shape[1] > 1
                else (out.reshape(-1) > 0).to(yb.dtype)
            )
            correct += int((pred == yb).sum())
    return total / n, (correct / n if classify else None)
