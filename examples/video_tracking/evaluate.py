"""Compare trajectories and lanes with the ground truth of the synthetic video. Pure functions, no files.

A ground-truth vehicle is *matched* when a track covers at least ``min_coverage`` of the frames in which the
vehicle is fully visible and stays within ``max_distance`` pixels of it on average over those shared frames. Among
such candidate pairs the assignment is one-to-one and greedy, closest mean distance first (no scipy here for the
Hungarian method; with candidates restricted to covering pairs, greedy and optimal agree unless two tracks both
cover one vehicle). A vehicle split into two tracks that each cover less than ``min_coverage`` is not matched.

Lanes: each true lane marking is compared with the nearest detected one (row within a tolerance, same kind and
colour), and the tracks' lanes with the vehicles' (per-lane counts, and the lane of each matched vehicle's track).

Example:
    >>> gt = {1: {0: (0.0, 0.0), 1: (1.0, 0.0)}}
    >>> ev = evaluate(gt, {7: {0: (0.0, 1.0), 1: (1.0, 1.0)}})
    >>> ev.match_rate, ev.mean_error, ev.matches
    (1.0, 1.0, {1: 7})
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

Path2D = Mapping[int, tuple[float, float]]  # frame -> (x, y)


@dataclass(frozen=True)
class PairScore:
    vehicle_id: int
    track_id: int
    shared_frames: int
    coverage: float  # shared frames / the vehicle's ground-truth frames
    mean_distance: float
    total_distance: float


@dataclass(frozen=True)
class Evaluation:
    match_rate: float  # matched vehicles / vehicles
    mean_error: float | None  # pixels, over every shared frame of every matched pair; None without matches
    matches: dict[int, int]  # vehicle_id -> track_id
    unmatched_vehicles: list[int]
    unmatched_tracks: list[int]  # tracks that follow no vehicle (false or fragment tracks)


def score_pair(vehicle_id: int, truth: Path2D, track_id: int, track: Path2D) -> PairScore | None:
    """Distance statistics over the frames both have; None when they share none.

    >>> score_pair(1, {0: (0.0, 0.0), 1: (0.0, 0.0)}, 2, {1: (3.0, 4.0)})
    PairScore(vehicle_id=1, track_id=2, shared_frames=1, coverage=0.5, mean_distance=5.0, total_distance=5.0)
    """
    shared = truth.keys() & track.keys()
    if not shared:
        return None
    total = sum(math.dist(truth[f], track[f]) for f in shared)
    return PairScore(vehicle_id, track_id, len(shared), len(shared) / len(truth), total / len(shared), total)


def evaluate(
    truth: Mapping[int, Path2D],
    tracks: Mapping[int, Path2D],
    max_distance: float = 10.0,
    min_coverage: float = 0.8,
) -> Evaluation:
    """Match vehicles to tracks (see the module docstring) and measure the position error of the matches."""
    candidates = sorted(
        (
            s
            for vid, path in truth.items()
            if path
            for tid, tpath in tracks.items()
            if (s := score_pair(vid, path, tid, tpath)) is not None
            and s.coverage >= min_coverage
            and s.mean_distance <= max_distance
        ),
        key=lambda s: (s.mean_distance, s.vehicle_id, s.track_id),
    )
    matched: dict[int, PairScore] = {}
    taken: set[int] = set()
    for s in candidates:
        if s.vehicle_id not in matched and s.track_id not in taken:
            matched[s.vehicle_id] = s
            taken.add(s.track_id)
    frames = sum(s.shared_frames for s in matched.values())
    return Evaluation(
        match_rate=len(matched) / len(truth) if truth else 0.0,
        mean_error=sum(s.total_distance for s in matched.values()) / frames if frames else None,
        matches={v: s.track_id for v, s in sorted(matched.items())},
        unmatched_vehicles=sorted(set(truth) - set(matched)),
        unmatched_tracks=sorted(set(tracks) - taken),
    )


def paths(
    rows: Iterable[Mapping[str, str]], id_field: str, x_field: str, y_field: str
) -> dict[int, dict[int, tuple[float, float]]]:
    """Group CSV rows (as read by csv.DictReader) into id -> frame -> (x, y).

    >>> paths([{"id": "3", "frame": "0", "x": "1", "y": "2"}], "id", "x", "y")
    {3: {0: (1.0, 2.0)}}
    """
    out: dict[int, dict[int, tuple[float, float]]] = {}
    for r in rows:
        out.setdefault(int(r[id_field]), {})[int(r["frame"])] = (float(r[x_field]), float(r[y_field]))
    return out


# --- lanes ---------------------------------------------------------------------------------------------------------

Mark = tuple[float, str, str]  # row, kind ("solid" | "dashed"), colour ("white" | "yellow")


@dataclass(frozen=True)
class MarkingEvaluation:
    ok: bool  # as many markings as the truth, each within the tolerance and of the true kind and colour
    expected: int
    found: int
    within: int  # true markings with a detected one within the tolerance
    offsets: list[float | None]  # per true marking: distance to the nearest detected row; None without any
    max_offset: float | None
    kinds_agree: bool  # the nearest detected marking of each true one has its kind and colour


def evaluate_markings(
    truth: Sequence[Mark], found: Sequence[Mark], tolerance: float = 1.0, check_kinds: bool = True
) -> MarkingEvaluation:
    """Compare detected lane markings with the true ones, each true marking with its nearest detected one
    (``check_kinds=False`` for rows given by hand, which have no kind or colour).

    >>> truth = [(60.0, "solid", "white"), (92.0, "dashed", "white")]
    >>> evaluate_markings(truth, [(60.0, "solid", "white"), (92.5, "dashed", "white")]).ok
    True
    >>> ev = evaluate_markings(truth, [(60.0, "solid", "white"), (95.0, "dashed", "white")])
    >>> ev.ok, ev.within, ev.offsets
    (False, 1, [0.0, 3.0])
    """
    offsets: list[float | None] = []
    kinds = True
    for y, kind, colour in truth:
        nearest = min(found, key=lambda m: abs(m[0] - y), default=None)
        offsets.append(None if nearest is None else round(abs(nearest[0] - y), 3))
        kinds &= nearest is not None and (not check_kinds or (nearest[1], nearest[2]) == (kind, colour))
    within = sum(1 for o in offsets if o is not None and o <= tolerance)
    known = [o for o in offsets if o is not None]
    return MarkingEvaluation(
        ok=len(found) == len(truth) and within == len(truth) and kinds,
        expected=len(truth),
        found=len(found),
        within=within,
        offsets=offsets,
        max_offset=max(known) if known else None,
        kinds_agree=kinds,
    )


@dataclass(frozen=True)
class LaneAssignment:
    ok: bool  # per-lane counts equal the truth's and every matched vehicle's track is in the vehicle's lane
    counts: list[int]  # tracks per lane
    true_counts: list[int]  # vehicles per lane
    matched: int  # vehicles with a matched track
    agree: int  # of those, tracks in the vehicle's true lane
    wrong: dict[int, int | None]  # vehicle_id -> lane its track was put in, where that is not its lane


def evaluate_lane_assignment(
    vehicle_lanes: Mapping[int, int],
    track_lanes: Mapping[int, int | None],
    matches: Mapping[int, int],
    n_lanes: int,
) -> LaneAssignment:
    """Per-lane counts of the tracks against the vehicles', and the lane of each matched vehicle's track.

    >>> a = evaluate_lane_assignment({1: 0, 2: 1}, {7: 0, 8: 0}, {1: 7, 2: 8}, 2)
    >>> a.ok, a.counts, a.true_counts, a.agree, a.wrong
    (False, [2, 0], [1, 1], 1, {2: 0})
    """
    counts = [sum(1 for lane in track_lanes.values() if lane == i) for i in range(n_lanes)]
    true_counts = [sum(1 for lane in vehicle_lanes.values() if lane == i) for i in range(n_lanes)]
    wrong = {v: track_lanes.get(t) for v, t in sorted(matches.items()) if track_lanes.get(t) != vehicle_lanes.get(v)}
    return LaneAssignment(
        ok=counts == true_counts and not wrong,
        counts=counts,
        true_counts=true_counts,
        matched=len(matches),
        agree=len(matches) - len(wrong),
        wrong=wrong,
    )
