"""``sgdbench plot``: every kind draws a real, non-trivial picture; diverged runs stay visible."""

from __future__ import annotations

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
    plot._lr(ax, runs, table, metric="final")
    crosses = [line for line in ax.lines if line.get_marker() == "X" and len(line.get_xdata())]
    assert [list(c.get_xdata()) for c in crosses] == [[0.5]]
    n_div = table.loc[table["lr"] == 0.5, "n_diverged"].item()
    assert f"{n_div}/4 div" in [t.get_text() for t in ax.texts]
    fig.clf()


def test_curves_median_is_the_raw_loss_without_smoothing(quad: Path) -> None:
    runs = report.load_runs(quad)
    table = report.summarize_runs(runs)
    fig, ax = _axes()
    plot._curves(ax, quad, runs, table, x="step", smooth=1)
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
    plot._speed(ax, table, x="step")
    texts = [t.get_text() for t in ax.texts]
    assert any(t.startswith("not reached") for t in texts)
    assert any("4/4 reached" in t for t in texts)
    fig.clf()
