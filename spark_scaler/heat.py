"""Scaling Heat (seed §4.8, Algorithm 1) and the KHPA formula (seed §4.9, eq. 4.1; Listing 6.7). Pure.

Example:
    >>> scaling_heat(0.9, lower=0.2, upper=0.6, heat=2, n=3)
    (0, <Action.SCALE_OUT: 'scale_out'>)
    >>> hpa_target(active=2, utilization=0.95, target=0.5)
    4
"""

from __future__ import annotations

import math

from spark_scaler.models import Action

#: Digits the KHPA ratio is rounded to before ceil(), so that float noise (3 * 0.6 / 0.2 = 9.000000000000002)
#: does not add a worker.
_ROUND_DIGITS = 9


def scaling_heat(utilization: float, lower: float, upper: float, heat: int, n: int) -> tuple[int, Action]:
    """Algorithm 1 (Scaling Heat, Barna et al., seed §4.8.2): one step for one metric.

    Returns the heat for the next iteration and the action of this one. Line by line:

    1-4   utilization >= upper: a negative heat is reset to 0, then heat + 1 (overload);
    5-8   utilization <= lower: a positive heat is reset to 0, then heat - 1 (underload);
    9-13  otherwise the heat moves one step towards 0;
    15-20 heat = +n → SCALE_OUT, heat = -n → SCALE_IN, and the heat is reset to 0 after either.

    For a heat within the algorithm's domain (-n, n) this is exactly Algorithm 1. A stored heat outside it (n was
    lowered since it was saved) fires at once instead of counting past n forever (``>=`` where the seed has ``=``).

    >>> heat, out = 0, []
    >>> for u in [0.7, 0.7, 0.4, 0.7, 0.7, 0.1]:
    ...     heat, action = scaling_heat(u, 0.2, 0.6, heat, 3)
    ...     out.append((heat, action.value))
    >>> out
    [(1, 'hold'), (2, 'hold'), (1, 'hold'), (2, 'hold'), (0, 'scale_out'), (-1, 'hold')]
    """
    if n < 1:
        raise ValueError(f"recurrence factor n must be >= 1, got {n}")
    if not lower < upper:
        raise ValueError(f"lower threshold {lower} must be below upper threshold {upper}")
    if utilization >= upper:  # cluster overload
        if heat < 0:
            heat = 0  # reset heat for removal
        heat += 1
    elif utilization <= lower:  # cluster underload
        if heat > 0:
            heat = 0  # reset heat for adding
        heat -= 1
    elif heat > 0:  # within the thresholds: move heat towards 0
        heat -= 1
    elif heat < 0:
        heat += 1
    if heat >= n:
        return 0, Action.SCALE_OUT
    if heat <= -n:
        return 0, Action.SCALE_IN
    return heat, Action.HOLD


def hpa_ratio(active: int, utilization: float, target: float) -> float:
    """The KHPA formula's argument of ceil(): ``max(active, 1) * utilization / target`` (see :func:`hpa_target`).

    >>> hpa_ratio(2, 0.95, 0.5)
    3.8
    """
    if not target > 0:
        raise ValueError(f"target utilization must be > 0, got {target}")
    if active < 0:
        raise ValueError(f"active workers must be >= 0, got {active}")
    return round(max(active, 1) * max(utilization, 0.0) / target, _ROUND_DIGITS)


def hpa_target(active: int, utilization: float, target: float) -> int:
    """KHPA formula (seed eq. 4.1, Listing 6.7): ``ceil(active * utilization / target)`` workers.

    ``active = 0``: the formula would always answer 0 and a cluster without workers could never grow from its
    metric. We compute it as if one worker carried the load: ``ceil(utilization / target)`` — 0 for an idle
    metric, at least 1 once there is any load. (The worker bounds and the demand signals still apply on top.)
    A negative utilization counts as 0. The ratio is rounded to 9 digits before ceil() against float noise.

    >>> hpa_target(2, 0.95, 0.5), hpa_target(4, 0.1, 0.5), hpa_target(0, 0.0, 0.5), hpa_target(0, 0.3, 0.5)
    (4, 1, 0, 1)
    """
    return math.ceil(hpa_ratio(active, utilization, target))
