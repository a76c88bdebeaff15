"""The load sweep's verdict and parsing (bench/sweep.py); the smoke test runs it whole."""

import pytest

from bench.sweep import highest_within_goal, rates_of


def _point(rate: float, *p99s: float | None, ok: bool = True) -> dict:
    names = ("won→queue", "receipt→ready", "receipt→ready (quotes)")
    return {
        "rate": rate,
        "ok": ok,
        "stages": {n: {"p99_ms": v} for n, v in zip(names, p99s, strict=True)},
    }


def test_the_verdict_is_the_last_rate_before_the_first_miss() -> None:
    points = [
        _point(100, 260, 60, 120),  # won→queue over 250 ms
        _point(25, 90, 40, 60),
        _point(50, 120, 45, 70),
        _point(125, 240, 60, 120),  # under again after a miss: not counted
    ]
    assert highest_within_goal(points) == 50


def test_a_stage_at_the_goal_a_missing_stage_or_an_incomplete_run_is_a_miss() -> None:
    assert highest_within_goal([_point(25, 100, 40, 60), _point(50, 250, 40, 60)]) == 25
    assert highest_within_goal([_point(25, 100, None, 60)]) is None
    assert highest_within_goal([_point(25, 100, 40, 60, ok=False)]) is None
    assert highest_within_goal([]) is None


def test_rates_are_parsed_sorted_and_positive() -> None:
    assert rates_of("100, 25,50,25") == [25.0, 50.0, 100.0]
    for bad in ("", "0,50", "-5", "fast"):
        with pytest.raises(ValueError):
            rates_of(bad)
