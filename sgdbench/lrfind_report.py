"""``sgdbench lr-find``: check the options, run the range test or the sweep, draw it, and render
the answer as a table or JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from sgdbench.errors import SgdbenchError, UsageError


def main(
    grid_path: Path,
    *,
    start: float = 1e-7,
    end: float = 10.0,
    steps: int = 100,
    stop_factor: float = 4.0,
    beta: float | None = None,
    sweep: bool = False,
    k: int = 64,
    out: Path | None = None,
    fmt: str = "table",
) -> str:
    """Run ``lr-find`` on the first configuration of ``grid_path``; returns the text for stdout.
    Options are checked before anything trains or is written."""
    from sgdbench import lrfind, plot
    from sgdbench.plan import load_grid
    from sgdbench.plot import SUFFIXES

    if not 0 < start < end or not math.isfinite(end):
        raise UsageError(f"sgdbench: lr-find needs 0 < --start < --end, got {start} and {end}")
    if stop_factor <= 1:
        raise UsageError(f"sgdbench: --stop-factor must be > 1, got {stop_factor}")
    if beta is not None and not 0 <= beta < 1:
        raise UsageError(f"sgdbench: --beta must be in [0, 1), got {beta}")
    if out is not None and out.suffix.lower() not in SUFFIXES:
        raise UsageError(f"{out}: unknown picture type {out.suffix!r} (use .png, .svg or .pdf)")
    grid = load_grid(grid_path)
    spec = grid.runs[0]
    picture = out or Path("results") / grid.name / "plots" / (
        "lr_sweep.png" if sweep else "lr_find.png"
    )
    if sweep:
        from sgdbench.stacked_optim import unsupported_reason

        why = unsupported_reason(spec.optimizer_class, spec.optimizer_kwargs)
        if why:
            raise UsageError(f"{grid_path}: lr-find --sweep runs on the stacked engine: {why}")
        try:
            result = lrfind.lr_sweep(spec, start=start, end=end, k=k, steps=steps)
        except RuntimeError as e:  # the stacked group failed: its message, exit 1
            raise SgdbenchError(f"sgdbench: lr-find --sweep failed: {e}") from None
        plot.draw_lr_find(
            picture,
            f"{grid.name}: final full-data loss after {steps} steps, {k} lrs (stacked)",
            result.lrs,
            result.final_losses,
            ylabel="final full-data loss (diverged: missing)",
        )
        return _render_sweep(result, grid.name, picture, fmt)
    try:
        test = lrfind.range_test(
            spec, start=start, end=end, steps=steps, stop_factor=stop_factor, beta=beta
        )
    except ValueError as e:  # e.g. the grid asks for a device this machine lacks
        raise UsageError(f"{grid_path}: {e}") from None
    plot.draw_lr_find(
        picture,
        f"{grid.name}: lr range test ({len(test.losses)} steps)",
        test.lrs,
        test.losses,
        test.smoothed,
        test.suggestions,
    )
    return _render_test(test, grid.name, picture, stop_factor, fmt)


def _floats(values: np.ndarray) -> list[float | None]:
    return [float(v) if math.isfinite(v) else None for v in values]


def _render_test(test: object, name: str, picture: Path, stop_factor: float, fmt: str) -> str:
    from sgdbench.lrfind import RangeTest

    assert isinstance(test, RangeTest)
    if fmt == "json":
        return (
            json.dumps(
                {
                    "grid": name,
                    "lr": test.lrs.tolist(),
                    "loss": _floats(test.losses),
                    "smoothed_loss": _floats(test.smoothed),
                    "stopped_at_lr": test.stopped_at_lr,
                    "suggestions": test.suggestions,
                    "plot": str(picture),
                },
                indent=2,
            )
            + "\n"
        )
    how = (
        f"stopped at lr {test.stopped_at_lr:.3g}: smoothed loss above {stop_factor:g} x its minimum"
        if test.stopped_at_lr is not None
        else "ran to the end lr without blowing up (try a larger --end)"
    )
    lines = [
        f"{name}: {len(test.losses)} steps, lr {test.lrs[0]:.3g} to {test.lrs[-1]:.3g}; {how}",
        f"lowest smoothed loss at lr {test.min_loss_lr:.3g}",
        "suggestion   lr",
        *(f"{rule:<12} {lr:.3g}" for rule, lr in test.suggestions.items()),
        f"plot: {picture}",
    ]
    return "\n".join(lines) + "\n"


def _render_sweep(result: object, name: str, picture: Path, fmt: str) -> str:
    from sgdbench.lrfind import SweepResult

    assert isinstance(result, SweepResult)
    ok = np.isfinite(result.final_losses)
    best = result.best_lr if ok.any() else None
    if fmt == "json":
        return (
            json.dumps(
                {
                    "grid": name,
                    "steps": result.steps,
                    "lr": result.lrs.tolist(),
                    "final_loss": _floats(result.final_losses),
                    "status": result.statuses,
                    "best_lr": best,
                    "plot": str(picture),
                },
                indent=2,
            )
            + "\n"
        )
    lines = ["lr          final_loss  status"]
    for lr, loss, status in zip(result.lrs, result.final_losses, result.statuses, strict=True):
        lines.append(f"{lr:<11.4g} {loss:<11.4g} {status}")
    summary = (
        f"best lr {best:.3g} after {result.steps} steps"
        if best is not None
        else "every lr diverged"
    )
    lines += [f"{name}: {summary} ({int(ok.sum())} of {len(ok)} lrs finite)", f"plot: {picture}"]
    return "\n".join(lines) + "\n"
