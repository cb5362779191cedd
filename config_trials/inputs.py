"""The trial's input: seeded vehicle records with the paper's rising and falling load (pure).

Rules (seed 001 L50-51: vehicles in a 1 km radius send {id, type, location, speed, direction} every second; the
vehicle count follows the time of day; D2 of :mod:`config_trials.definition`):

- I1 the number of vehicles at second ``t`` of a round is ``min + (max - min) * (1 - cos(2 pi t / period)) / 2``:
  it starts at ``min``, peaks at ``max`` half a period in, and falls back.
- I2 the records of second ``t`` of round ``r`` are a function of ``(seed, r, t)`` alone (their own random
  stream), so every variant and every rerun reads exactly the same records, whatever order it reads them in.
- I3 a round's input hash is the SHA-256 of its records in order, the same for every variant of the round.

Example:
    >>> from config_trials.definition import VehicleProfile
    >>> p = VehicleProfile(min=10, max=30, period_s=60)
    >>> vehicles_at(p, 0), vehicles_at(p, 30), vehicles_at(p, 60)
    (10, 30, 10)
    >>> records(7, 0, 5, p) == records(7, 0, 5, p), records(7, 0, 5, p) == records(7, 1, 5, p)
    (True, False)
    >>> records(7, 0, 5, p)[0]
    {'id': 0, 'type': 'car', 'x': ..., 'y': ..., 'speed': ..., 'direction': ..., 'offset': 5.0}
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from typing import Any

from config_trials.definition import VehicleProfile

#: The vehicle types the pipeline counts, with their share of the traffic.
TYPES = (("car", 0.7), ("truck", 0.1), ("bus", 0.05), ("bike", 0.15))
RADIUS_M = 1000.0


def vehicles_at(profile: VehicleProfile, second: float) -> int:
    """I1: how many vehicles send in second ``second`` of a round."""
    phase = (1 - math.cos(2 * math.pi * second / profile.period_s)) / 2
    return round(profile.min + (profile.max - profile.min) * phase)


def records(seed: int, round_index: int, second: int, profile: VehicleProfile) -> list[dict[str, Any]]:
    """I2: the records of second ``second`` of round ``round_index``: one per vehicle (``offset``: that second)."""
    rng = random.Random(f"{seed}:{round_index}:{second}")
    out = []
    names = [name for name, _ in TYPES]
    shares = [share for _, share in TYPES]
    for vehicle in range(vehicles_at(profile, second)):
        angle, distance = rng.uniform(0, 2 * math.pi), RADIUS_M * math.sqrt(rng.random())
        out.append(
            {
                "id": vehicle,
                "type": rng.choices(names, shares)[0],
                "x": round(distance * math.cos(angle), 1),
                "y": round(distance * math.sin(angle), 1),
                "speed": round(rng.uniform(0, 60), 1),
                "direction": round(rng.uniform(0, 360), 1),
                "offset": float(second),
            }
        )
    return out


def round_hash(seed: int, round_index: int, seconds: int, profile: VehicleProfile) -> str:
    """I3: the SHA-256 of a round's records, second by second, as the stream source emits them.

    >>> p = VehicleProfile(min=2, max=4, period_s=10)
    >>> round_hash(1, 0, 10, p) == round_hash(1, 0, 10, p) != round_hash(2, 0, 10, p)
    True
    """
    digest = hashlib.sha256()
    for second in range(seconds):
        for record in records(seed, round_index, second, profile):
            digest.update(json.dumps(record, sort_keys=True).encode())
    return digest.hexdigest()
