"""``sgdbench plot SUITE_DIR --kind profile|tuneability``: pictures of a suite's summaries.

The numbers come from ``suite_report.load`` (hence ``sgdbench.profiles``); this module only
draws them, with the same style and backend as ``sgdbench.plot``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from sgdbench import profiles
from sgdbench.errors import UsageError

KINDS = ("profile", "tuneability")


def plot(
    results: Path,
    *,
    kind: str = "profile",
    out: Path | None = None,
    target_loss: float | None = None,
    all_versions: bool = False,
) -> Path:
    """Draw a suite folder's performance profiles or tuneability into ``out``; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from sgdbench.plot.style import RC, SUFFIXES, style
    from sgdbench.suite_report import TAU_MAX, load

    if kind not in KINDS:
        raise UsageError(
            f"--kind {kind}: a suite folder draws {' or '.join(KINDS)}; "
            "other kinds draw one member folder (DIR/<problem>)"
        )
    results = Path(results)
    out = Path(out) if out is not None else results / "plots" / f"{kind}.png"
    if out.suffix.lower() not in SUFFIXES:
        raise UsageError(f"--out: unknown picture type {out.suffix!r} (use .png, .svg or .pdf)")
    res = load(results, target_loss=target_loss, all_versions=all_versions)
    with plt.rc_context(RC):
        if kind == "profile":
            fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
            taus = np.linspace(1.0, TAU_MAX, 601)
            for ax, metric in zip(axes, profiles.METRICS, strict=True):
                rho = profiles.profile(res.ratios[metric], taus)
                for i, name in enumerate(rho.columns):
                    scores = f"{res.scores['steps'][name]:.2f} / {res.scores['time'][name]:.2f}"
                    ax.step(taus, rho[name], where="post", label=f"{name} ({scores})", **style(i))
                what = "steps" if metric == "steps" else "seconds"
                ax.set_xlabel(f"τ: {what} to target over the best optimizer's")
                ax.set_title(f"{what} to target", loc="left")
                ax.set_xlim(1.0, TAU_MAX)
                ax.set_ylim(-0.02, 1.02)
            # one legend, beside the panels: inside, it would hide the profiles' low steps
            axes[1].legend(
                loc="upper left",
                bbox_to_anchor=(1.02, 1.0),
                borderaxespad=0.0,
                title="score: steps / time",
            )
            axes[0].set_ylabel(f"fraction of {len(res.problems)} problems within τ")
            fig.suptitle(f"{res.name}: performance profiles", x=0.01, ha="left")
        else:
            t = res.tuneability
            labels = list(dict.fromkeys(t["problem"]))
            cols = min(4, len(labels))
            rows = math.ceil(len(labels) / cols)
            fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
            names = list(dict.fromkeys(t["optimizer"]))
            for ax, label in zip(axes.flat, labels, strict=False):
                g = t[t["problem"] == label]
                for i, name in enumerate(names):
                    line = g[g["optimizer"] == name]
                    ax.plot(
                        line["k"],
                        line["expected_final_loss"],
                        marker="o",
                        ms=3,
                        label=name,
                        **style(i),
                    )
                ax.set_title(label, loc="left")
                ax.set_xlabel("k random lr trials")
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                if (g["expected_final_loss"] > 0).all():
                    ax.set_yscale("log")
            for ax in list(axes.flat)[len(labels) :]:
                ax.set_visible(False)
            axes[0][0].set_ylabel("expected best final loss")
            handles, names_ = axes[0][0].get_legend_handles_labels()
            fig.legend(handles, names_, loc="upper right")
            fig.suptitle(f"{res.name}: tuneability", x=0.01, ha="left")
        fig.tight_layout()
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=110, bbox_inches="tight")
        plt.close(fig)
    return out
