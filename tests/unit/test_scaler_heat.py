"""Algorithm 1 (Scaling Heat) against sequences worked out by hand from its definition; the KHPA formula."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spark_scaler.heat import hpa_target, scaling_heat
from spark_scaler.models import Action

LOW, HIGH = 0.2, 0.6
HOLD, OUT, IN = Action.HOLD, Action.SCALE_OUT, Action.SCALE_IN


def run(utilizations: list[float], n: int, heat: int = 0) -> list[tuple[int, Action]]:
    out = []
    for u in utilizations:
        heat, action = scaling_heat(u, LOW, HIGH, heat, n)
        out.append((heat, action))
    return out


def test_hand_worked_sequence_n3() -> None:
    # u      line of Algorithm 1                                  heat after
    steps = [
        (0.7, 1, HOLD),  # >= upper: 0 + 1
        (0.7, 2, HOLD),  # >= upper: 1 + 1
        (0.1, -1, HOLD),  # <= lower: heat > 0 reset to 0 (line 7), then - 1
        (0.4, 0, HOLD),  # inside the band: -1 moves towards 0
        (0.4, 0, HOLD),  # inside, already 0: stays
        (0.8, 1, HOLD),
        (0.8, 2, HOLD),
        (0.8, 0, OUT),  # reaches +3 = n: scale out, reset to 0 (lines 15-17)
        (0.8, 1, HOLD),  # counts again from 0
        (0.6, 2, HOLD),  # exactly the upper threshold counts as overload (>=)
        (0.3, 1, HOLD),  # inside: decays
        (0.2, -1, HOLD),  # exactly the lower threshold (<=): reset 1 → 0, then - 1
        (0.1, -2, HOLD),
        (0.1, 0, IN),  # reaches -3 = -n: scale in, reset to 0 (lines 18-20)
        (0.5, 0, HOLD),
        (0.05, -1, HOLD),
        (0.05, -2, HOLD),
        (0.9, 1, HOLD),  # >= upper with heat < 0: reset to 0 (line 3), then + 1
        (0.45, 0, HOLD),
    ]
    assert run([u for u, _, _ in steps], n=3) == [(h, a) for _, h, a in steps]


def test_decay_inside_the_band_one_step_per_tick() -> None:
    assert run([0.7, 0.7, 0.4, 0.4, 0.4], n=5) == [(1, HOLD), (2, HOLD), (1, HOLD), (0, HOLD), (0, HOLD)]
    assert run([0.1, 0.1, 0.1, 0.4, 0.4, 0.4, 0.4], n=5) == [
        (-1, HOLD),
        (-2, HOLD),
        (-3, HOLD),
        (-2, HOLD),
        (-1, HOLD),
        (0, HOLD),
        (0, HOLD),
    ]


def test_alternating_spikes_never_scale() -> None:
    # The reset on crossing sides: a recurrence factor that only counted violations would fire here.
    assert all(a is HOLD for _, a in run([0.9, 0.1] * 10, n=2))


def test_recurrence_factor_one_fires_on_every_violation() -> None:
    # Table 7.2 of the seed runs with n = 1.
    assert run([0.7, 0.1, 0.4, 0.6, 0.2], n=1) == [(0, OUT), (0, IN), (0, HOLD), (0, OUT), (0, IN)]


def test_stored_heat_outside_the_domain_fires() -> None:
    # n lowered from 5 to 3 while heat +4 was stored: fires instead of counting past n forever.
    assert scaling_heat(0.9, LOW, HIGH, heat=4, n=3) == (0, OUT)
    assert scaling_heat(0.1, LOW, HIGH, heat=-7, n=3) == (0, IN)


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError, match="recurrence factor"):
        scaling_heat(0.5, LOW, HIGH, 0, 0)
    with pytest.raises(ValueError, match="below upper"):
        scaling_heat(0.5, 0.6, 0.6, 0, 3)


@given(st.lists(st.floats(-1, 2, allow_nan=False), max_size=60), st.integers(1, 6))
def test_heat_stays_inside_the_domain(utilizations: list[float], n: int) -> None:
    heat = 0
    for u in utilizations:
        new, action = scaling_heat(u, LOW, HIGH, heat, n)
        assert -n < new < n
        if action is not HOLD:
            assert new == 0
        assert abs(new - heat) <= 1 or action is not HOLD or heat * new <= 0
        heat = new


@pytest.mark.parametrize(
    ("active", "util", "target", "expected"),
    [
        (2, 0.95, 0.5, 4),  # ceil(3.8)
        (2, 0.5, 0.5, 2),  # on target: no change
        (4, 0.1, 0.5, 1),  # ceil(0.8)
        (3, 0.6, 0.2, 9),  # 9.000000000000002 in floats: still 9
        (10, 0.25, 0.10, 25),  # seed Table 7.2 classification: max CPU 25 %, target 10 %
        (2, 0.0, 0.5, 0),  # idle: the bounds raise it to the minimum
        (0, 0.0, 0.5, 0),  # no workers, no load
        (0, 0.3, 0.5, 1),  # no workers but load: computed as if one worker carried it
        (2, -0.1, 0.5, 0),  # a negative reading counts as 0
    ],
)
def test_khpa_formula(active: int, util: float, target: float, expected: int) -> None:
    assert hpa_target(active, util, target) == expected


def test_khpa_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="target utilization"):
        hpa_target(2, 0.5, 0)
    with pytest.raises(ValueError, match="active workers"):
        hpa_target(-1, 0.5, 0.5)
