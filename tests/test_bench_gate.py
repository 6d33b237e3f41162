"""The benchmark gate's statistics and verdicts, and the slowdown used to measure it.

No timing here: the gate's measurement is replaced by fixed timings; the slowdown is checked by
counting the work it adds, not by timing it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import gate, slowdown, workloads


def test_paired_rounds_cancel_a_load_spike() -> None:
    # the engine is 1.25× faster than the loop in every round; round 2 ran 4× slower for both
    engine = [1.00, 1.02, 4.00, 0.98, 1.01, 0.99]
    loop = [1.25 * t for t in engine]
    loop[1] *= 1.01  # a little noise so the bootstrap has something to resample
    median, low, high = gate.ratio_interval(loop, engine)
    assert median == pytest.approx(1.25, abs=1e-9)
    assert 1.24 < low <= median <= high < 1.27
    # unpaired (ratio of means) the spike would have moved the estimate; paired it cannot


def test_interval_holds_the_median_and_widens_with_noise() -> None:
    engine = [1.0] * 8
    quiet = [1.20, 1.21, 1.19, 1.20, 1.22, 1.18, 1.20, 1.21]
    noisy = [1.20, 1.50, 0.90, 1.20, 1.60, 0.85, 1.20, 1.55]
    q_med, q_low, q_high = gate.ratio_interval(quiet, engine)
    n_med, n_low, n_high = gate.ratio_interval(noisy, engine)
    assert q_low <= q_med <= q_high and n_low <= n_med <= n_high
    assert n_high - n_low > 5 * (q_high - q_low)


def test_ratio_interval_rejects_unpaired_rounds() -> None:
    with pytest.raises(ValueError, match="paired"):
        gate.ratio_interval([1.0, 2.0, 3.0], [1.0, 2.0])


@pytest.mark.parametrize(
    ("low", "high", "failed"),
    [
        (0.70, 0.84, True),  # whole interval below 0.85
        (0.80, 0.86, False),  # straddles: noise, not a regression
        (0.90, 1.00, False),
    ],
)
def test_fails_only_when_whole_interval_is_below(low: float, high: float, failed: bool) -> None:
    result = gate.RatioResult("linear1 bs=1", "hand_written", (low + high) / 2, low, high, 0.85)
    assert result.failed is failed


def _fake_measure(engine_factor: float):
    """Per-round timings: engine ≈ hand-written × factor, tutorial 2× hand-written."""

    def measure(case: gate.GateCase, rounds: int, folder: Path) -> dict[str, list[float]]:
        hand = [1.0 + 0.01 * (r % 3) for r in range(rounds)]
        return {
            "hand_written": hand,
            "engine": [t * engine_factor * (1 + 0.005 * (r % 2)) for r, t in enumerate(hand)],
            "tutorial": [2.0 * t for t in hand],
        }

    return measure


def test_gate_passes_and_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert gate.main(["--rounds", "5"], measure_case=_fake_measure(1.0)) == 0
    out, err = capsys.readouterr()
    assert err == ""
    for case in gate.GATE_CASES:
        assert case.name in out
    assert "Range (min … max)" in out and "95% interval [" in out and "FAIL" not in out


def test_gate_fails_with_one_line_per_failed_ratio(capsys: pytest.CaptureFixture[str]) -> None:
    # engine 1.5× slower than the hand-written loop: 0.67 < 0.85 everywhere; vs the tutorial
    # loop 2 / 1.5 = 1.33: above linear1's 1.1, below the MLP's 1.6
    assert gate.main(["--rounds", "5"], measure_case=_fake_measure(1.5)) == 1
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert len(lines) == 3
    assert all(line.startswith("bench-gate: ") and "is below" in line for line in lines)
    assert sum("hand-written" in line for line in lines) == 2
    assert any("mlp4k bs=100" in line and "tutorial" in line for line in lines)
    assert "FAIL" in out


def test_gate_rejects_too_few_rounds(capsys: pytest.CaptureFixture[str]) -> None:
    assert gate.main(["--rounds", "2"], measure_case=_fake_measure(1.0)) == 2
    assert capsys.readouterr().err == "bench-gate: --rounds: must be >= 3, got 2\n"


@pytest.mark.parametrize("value", ["fast", "0.5", "nan"])
def test_gate_rejects_a_bad_slowdown(
    value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(slowdown.ENV, value)
    assert gate.main([], measure_case=_fake_measure(1.0)) == 2
    err = capsys.readouterr().err
    assert err == f"bench-gate: {slowdown.ENV}: must be a number >= 1, got {value!r}\n"


@pytest.mark.slow  # trains the gate's mlp4k workload twice
def test_slowdown_adds_half_a_step_per_step_and_keeps_the_losses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = workloads.load_spec(workloads.write_grid(tmp_path, "mlp4k", "momentum", 10, 200))
    monkeypatch.delenv(slowdown.ENV, raising=False)
    plain = workloads.engine_epoch(spec)

    shadow_steps = []
    real_step = slowdown.SlowerForward._shadow_step

    def counted(self, x):
        shadow_steps.append(x.shape)
        real_step(self, x)

    monkeypatch.setattr(slowdown.SlowerForward, "_shadow_step", counted)
    monkeypatch.setenv(slowdown.ENV, "1.5")
    slowed = workloads.engine_epoch(spec)
    assert slowed.status == "ok" and spec.steps == 20
    assert len(shadow_steps) == spec.steps // 2  # half a step of extra work per step
    assert (slowed.losses == plain.losses).all()  # the run itself is untouched
