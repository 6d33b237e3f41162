"""``sgdbench plot``: every kind draws a real, non-trivial picture; diverged runs stay visible."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sgdbench import plot, report
from tests.helpers import cli
from tests.report_results import results


@pytest.fixture(scope="module")
def quad(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return results("quad", tmp_path_factory)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return results("seeds", tmp_path_factory)


def assert_real_png(path: Path) -> None:
    import matplotlib.image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 15_000
    pixels = matplotlib.image.imread(path)[..., :3]
    assert pixels.shape[0] > 300 and pixels.shape[1] > 600
    inked = (pixels.mean(axis=2) < 0.9).mean()
    assert 0.02 < inked < 0.6, f"{path.name}: {inked:.1%} of pixels drawn"
    coloured = (pixels.max(axis=2) - pixels.min(axis=2) > 0.2).mean()
    assert coloured > 0.003, f"{path.name}: hardly any colour"


@pytest.mark.parametrize(
    "args",
    [
        ("--kind", "curves"),
        ("--kind", "curves", "--x", "time"),
        ("--kind", "curves", "--x", "samples"),
        ("--kind", "speed", "--x", "samples"),
        ("--kind", "lr"),
        ("--kind", "speed"),
        ("--kind", "speed", "--x", "time"),
    ],
)
def test_each_kind_draws_a_png(seeds: Path, tmp_path: Path, args: tuple[str, ...]) -> None:
    out = tmp_path / "picture.png"
    r = cli("plot", seeds, *args, "--out", out)
    assert r.exit_code == 0, r
    assert str(out) in r.stderr
    assert_real_png(out)


@pytest.mark.slow  # renders SVG and PDF
def test_default_path_and_vector_formats(quad: Path, tmp_path: Path) -> None:
    r = cli("plot", quad, "--kind", "lr")
    assert r.exit_code == 0, r
    assert_real_png(quad / "plots" / "lr.png")
    assert cli("plot", quad, "--out", tmp_path / "c.svg").exit_code == 0
    assert "<svg" in (tmp_path / "c.svg").read_text()[:2000]
    assert cli("plot", quad, "--kind", "speed", "--out", tmp_path / "s.pdf").exit_code == 0
    assert (tmp_path / "s.pdf").read_bytes()[:5] == b"%PDF-"


def test_bad_arguments_exit_2(quad: Path, tmp_path: Path) -> None:
    r = cli("plot", quad, "--out", tmp_path / "x.jpg")
    assert r.exit_code == 2 and ".jpg" in r.stderr
    assert cli("plot", tmp_path / "missing").exit_code == 2


def _axes() -> tuple[object, object]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots()


def test_lr_plot_marks_diverged_configuration(seeds: Path) -> None:
    runs = report.load_runs(seeds)
    table = report.summarize_runs(runs)
    fig, ax = _axes()
    plot.draw_lr(ax, runs, table, metric="final")
    crosses = [line for line in ax.lines if line.get_marker() == "X" and len(line.get_xdata())]
    assert [list(c.get_xdata()) for c in crosses] == [[0.5]]
    n_div = table.loc[table["lr"] == 0.5, "n_diverged"].item()
    assert f"{n_div}/4 div" in [t.get_text() for t in ax.texts]
    fig.clf()


def test_curves_median_is_the_raw_loss_without_smoothing(quad: Path) -> None:
    runs = report.load_runs(quad)
    table = report.summarize_runs(runs)
    fig, ax = _axes()
    plot.draw_curves(ax, quad, runs, table, x="step", smooth=1)
    steps = pd.read_parquet(quad / "steps")
    rid = runs.loc[runs["lr"] == 0.1, "run_id"].item()
    expected = steps[steps["run_id"] == rid].sort_values("step")["loss"].to_numpy()
    line = next(line for line in ax.lines if line.get_label() == "lr=0.1")
    np.testing.assert_allclose(line.get_ydata(), expected, rtol=1e-6)
    # the diverged run is marked where it stopped
    crosses = [line for line in ax.lines if line.get_marker() == "X" and len(line.get_xdata())]
    stopped = steps[steps["run_id"] == runs.loc[runs["lr"] == 1.5, "run_id"].item()]
    assert [c.get_xdata()[0] for c in crosses] == [stopped["step"].max()]
    fig.clf()


def test_ema_is_bias_corrected() -> None:
    x = np.array([4.0, 4.0, 4.0, 1.0])
    y = plot.ema(x, span=3)  # alpha = 0.5
    assert y[:3].tolist() == [4.0, 4.0, 4.0]  # no pull towards 0 at the start
    assert y[3] == pytest.approx((1.0 + 0.5 * 4 + 0.25 * 4 + 0.125 * 4) / 1.875)


def test_speed_plot_says_not_reached(seeds: Path) -> None:
    table = report.summarize_runs(report.load_runs(seeds))
    fig, ax = _axes()
    plot.draw_speed(ax, table, x="step")
    texts = [t.get_text() for t in ax.texts]
    assert any(t.startswith("not reached") for t in texts)
    assert any("4/4 reached" in t for t in texts)
    fig.clf()


def test_smoothing_never_draws_a_drop_as_a_decline(quad: Path) -> None:
    """x² at lr 0.5 jumps to loss 0 after one full-batch step: a smoothed line would draw a
    gradual decline over the span. Full-batch runs are drawn raw, the zero on the bottom edge."""
    runs = report.load_runs(quad)
    table = report.summarize_runs(runs)
    fig, ax = _axes()
    plot.draw_curves(ax, quad, runs, table, x="step", smooth=20)
    line = next(line for line in ax.lines if line.get_label() == "lr=0.5")
    y = np.asarray(line.get_ydata(), dtype=float)
    assert y[0] == pytest.approx(2.25)
    floor = ax.get_ylim()[0]
    assert (y[1:] <= floor).all(), y[:5]  # at the bottom from step 1 on, not on the way down
    assert any("loss of 0" in t.get_text() for t in ax.texts)
    fig.clf()


def test_smoothed_minibatch_line_has_its_raw_median_under_it(seeds: Path) -> None:
    runs = report.load_runs(seeds)
    table = report.summarize_runs(runs)
    fig, ax = _axes()
    plot.draw_curves(ax, seeds, runs, table, x="step", smooth=10)
    steps = pd.read_parquet(seeds / "steps")
    ids = runs.loc[runs["lr"] == 0.05, "run_id"]
    raw = steps[steps["run_id"].isin(ids)].groupby("step")["loss"].median().to_numpy()
    smoothed = next(line for line in ax.lines if line.get_label().startswith("lr=0.05"))
    faint = [
        line
        for line in ax.lines
        if line.get_color() == smoothed.get_color() and line is not smoothed and line.get_alpha()
    ]
    assert len(faint) == 1
    np.testing.assert_allclose(faint[0].get_ydata(), raw, rtol=1e-6)
    assert not np.allclose(smoothed.get_ydata(), raw)  # the other line really is smoothed
    fig.clf()


@pytest.mark.parametrize(("x", "per_step"), [("samples", 4.0), ("epoch", 4.0 / 100)])
def test_curves_against_samples_and_epochs(seeds: Path, x: str, per_step: float) -> None:
    """Batch size 4 of 100 samples: the loss of step t is computed after t updates, i.e. after
    4t samples, t/25 epochs; the evaluations sit on the same scale."""
    runs = report.load_runs(seeds)
    table = report.summarize_runs(runs)
    fig, ax = _axes()
    plot.draw_curves(ax, seeds, runs, table, x=x, smooth=1)
    line = next(line for line in ax.lines if line.get_label().startswith("lr=0.05"))
    xs = np.asarray(line.get_xdata(), dtype=float)
    np.testing.assert_allclose(xs, np.arange(len(xs)) * per_step)
    dots = [line for line in ax.lines if line.get_marker() == "o"]
    evals = pd.read_parquet(seeds / "evals")
    last = evals["step"].max() * per_step
    assert max(float(np.max(d.get_xdata())) for d in dots) == pytest.approx(last)
    assert ax.get_xlabel() == {"samples": "training samples seen", "epoch": "epoch"}[x]
    fig.clf()


def test_nanquantiles_match_numpy() -> None:
    rng = np.random.default_rng(0)
    stack = rng.standard_normal((5, 300))
    stack[rng.random(stack.shape) < 0.3] = np.nan
    stack[:, 7] = np.nan
    stack[2, 9] = np.inf
    ours = plot.nanquantiles(stack)
    with pytest.warns(RuntimeWarning):
        theirs = np.nanpercentile(stack, [25, 50, 75], axis=0)
    for a, b in zip(ours, theirs, strict=True):
        finite = np.isfinite(b)
        np.testing.assert_allclose(a[finite], b[finite])
        assert np.isnan(a[7])
    # numpy interpolates towards inf as NaN; an infinite (diverged) loss is simply the largest
    assert ours[2][9] == np.inf


def _grid(tmp_path: Path, lrs: str, batch_size: str = '"full"') -> Path:
    grid = tmp_path / "g.toml"
    grid.write_text(
        f'name = "g"\n[problem]\nname = "quadratic"\n[train]\nsteps = 5\ninit = [-1.5]\n'
        f"[grid]\nlr = [{lrs}]\nbatch_size = {batch_size}\n"
    )
    out = tmp_path / "g"
    assert cli("run", grid, "--out", out, "-q").exit_code == 0
    return out


def test_lr_plot_tick_labels_do_not_overlap(tmp_path: Path) -> None:
    out = _grid(tmp_path, "0.001, 0.01, 0.1, 1.0, 1.1")
    runs = report.load_runs(out)
    table = report.summarize_runs(runs)
    fig, ax = _axes()
    fig.set_size_inches(9, 5)
    plot.draw_lr(ax, runs, table, metric="final")
    fig.canvas.draw()
    shown = [t for t in ax.get_xticklabels() if t.get_text()]
    # the range is always labelled; "1" gives way to "1.1"
    assert [t.get_text() for t in shown] == ["0.001", "0.01", "0.1", "1.1"]
    boxes = [t.get_window_extent() for t in shown]
    for a, b in itertools.pairwise(boxes):
        assert a.x1 < b.x0, [t.get_text() for t in shown]
    fig.clf()


def test_lr_plot_diverged_label_stays_inside_the_axes(quad: Path) -> None:
    runs = report.load_runs(quad)
    table = report.summarize_runs(runs)
    fig, ax = _axes()
    plot.draw_lr(ax, runs, table, metric="final")
    ax.set_title("title", loc="left")
    fig.canvas.draw()
    label = next(t for t in ax.texts if t.get_text() == "median diverged")
    line = next(line for line in ax.lines if line.get_linestyle() == ":")
    line_y = ax.transData.transform((1.0, line.get_ydata()[0]))[1]
    # under its line, away from the title above the axes
    assert label.get_window_extent().y1 <= line_y <= ax.get_window_extent().y1
    fig.clf()


def test_lr_plot_with_one_learning_rate_says_so(tmp_path: Path) -> None:
    out = _grid(tmp_path, "0.1")
    r = cli("plot", out, "--kind", "lr", "--out", tmp_path / "lr.png")
    assert r.exit_code == 2
    assert "needs two learning rates or more" in r.stderr and "lr=0.1" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "lr.png").exists()
