"""The picture of ``sgdbench lr-find``: loss against a growing learning rate."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sgdbench.plot.style import PALETTE, RC, check_suffix, legend_outside


def draw_lr_find(
    out: Path,
    title: str,
    lrs: np.ndarray,
    losses: np.ndarray,
    smoothed: np.ndarray | None = None,
    suggestions: dict[str, float] | None = None,
    ylabel: str = "minibatch loss",
) -> Path:
    """Loss against lr on a log axis (``sgdbench lr-find``): the raw loss, the smoothed one if
    given, and a vertical line per suggested lr."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    check_suffix(out)
    with plt.rc_context(RC):
        fig, ax = plt.subplots(figsize=(9, 5))
        try:
            raw_style = {"alpha": 0.4} if smoothed is not None else {"marker": "o", "ms": 3}
            ax.plot(lrs, losses, color=PALETTE[0], label="raw", **raw_style)
            if smoothed is not None:
                ax.plot(lrs, smoothed, color=PALETTE[0], label="smoothed")
            for i, (rule, lr) in enumerate((suggestions or {}).items()):
                ax.axvline(lr, color=PALETTE[1 + i], ls="--", label=f"{rule}: {lr:.3g}")
            ax.set_xscale("log")
            finite = losses[np.isfinite(losses)]
            if len(finite) and finite.min() > 0 and finite.max() / finite.min() > 100:
                ax.set_yscale("log")
            ax.set_xlabel("learning rate")
            ax.set_ylabel(ylabel)
            ax.set_title(title, loc="left")
            legend_outside(ax)
            out.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(out, dpi=110, bbox_inches="tight")
        finally:
            plt.close(fig)
    return out
