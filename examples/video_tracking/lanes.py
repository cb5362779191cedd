"""Stage ``lanes``: the road's lane markings, the lanes between them and the vehicles in each lane (seed 003:
"perform lane detection").

The empty road is the per-pixel median of ``BACKGROUND_SAMPLES`` stabilised frames (as in ``detect``: a moving
vehicle covers a pixel in only a few of them). Paint is white (bright, unsaturated) or yellow. For a road that runs
across the view, as in the synthetic scene, a marking is a band of rows in each of which at least
``MIN_COVERAGE`` of the valid area's columns are painted: its centre is the band's coverage-weighted mean row, it
is *solid* when its densest row is painted over at least 80% of the width (dashed lane lines reach about half) and
*yellow* when most of its paint is. The lanes lie between neighbouring markings, numbered 0.. top to bottom, in
stabilised road coordinates (frame-0 pixels). ``LANES="y;y;..."`` gives the marking rows by hand instead.

When the workspace holds ``trajectories.csv``, each trajectory is put in the lane that holds its median row and
drives in the direction of its net horizontal motion, which gives per-lane counts. Writes ``lanes.json`` and
``lanes.png`` (the empty road with the markings, lane numbers and trajectories drawn in); with ``lane_truth.json``
(synthetic input) also ``lane_evaluation.json``, the comparison with the true lanes (see ``evaluate``).
Knobs: ``MIN_COVERAGE`` (default 0.2), ``BACKGROUND_SAMPLES`` (default 31), ``LANE_TOLERANCE`` (px, default 1.0).
"""

from __future__ import annotations

import bisect
import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from examples.video_tracking.common import (
    GROUND_TRUTH,
    LANE_EVALUATION,
    LANE_TRUTH,
    LANES,
    STABILISE_INFO,
    STABILISED_VIDEO,
    TRAJECTORIES,
    Frame,
    Progress,
    StageError,
    env_float,
    env_int,
    need,
    read_csv,
    read_frames,
    read_json,
    run_stage,
    say,
    video_info,
    write_json,
    write_png,
)
from examples.video_tracking.detect import median_background
from examples.video_tracking.evaluate import evaluate, evaluate_lane_assignment, evaluate_markings, paths

Mask = npt.NDArray[np.uint8]
Valid = tuple[int, int, int, int]


@dataclass(frozen=True)
class Marking:
    """A detected lane marking: centre row ``y`` (road coordinates), the share of columns painted in its densest
    row, and what it looks like."""

    y: float
    coverage: float
    kind: str  # "solid" | "dashed"
    colour: str  # "white" | "yellow"


def paint_masks(background: Frame) -> tuple[Mask, Mask]:
    """(white, yellow) paint masks of a BGR image: white is bright and unsaturated, yellow is a saturated hue 15-40.

    >>> img = np.array([[[230, 230, 230], [40, 200, 220], [95, 95, 95], [65, 125, 60]]], np.uint8)
    >>> [m.tolist() for m in paint_masks(img)]  # paint, yellow paint, asphalt, grass
    [[[1, 0, 0, 0]], [[0, 1, 0, 0]]]
    """
    hsv = cv2.cvtColor(background, cv2.COLOR_BGR2HSV)
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    white = (s < 60) & (v >= 160)
    yellow = (h >= 15) & (h <= 40) & (s >= 100) & (v >= 120)
    return white.astype(np.uint8), yellow.astype(np.uint8)


def row_coverage(mask: Mask, valid: Valid) -> npt.NDArray[np.float64]:
    """Share of the valid area's columns that ``mask`` marks, per row (0 outside the valid rows).

    >>> m = np.zeros((4, 10), np.uint8); m[1, 2:7] = 1
    >>> row_coverage(m, (2, 0, 8, 3)).tolist()
    [0.0, 0.8333333333333334, 0.0, 0.0]
    """
    x0, y0, x1, y1 = valid
    out = np.zeros(mask.shape[0])
    out[y0:y1] = mask[y0:y1, x0:x1].astype(np.float64).mean(axis=1)
    return out


def find_markings(
    white: Sequence[float], yellow: Sequence[float], min_coverage: float, solid: float = 0.8
) -> list[Marking]:
    """Markings from the per-row coverage of white and yellow paint: each run of rows whose paint coverage is at
    least half of ``min_coverage`` and somewhere reaches it.

    >>> w = [0, 0, 1, 1, 1, 0, 0, 0, 0.5, 0, 0]
    >>> y = [0] * 11
    >>> for m in find_markings(w, y, 0.2):
    ...     print(m)
    Marking(y=3.0, coverage=1.0, kind='solid', colour='white')
    Marking(y=8.0, coverage=0.5, kind='dashed', colour='white')
    """
    total = [a + b for a, b in zip(white, yellow, strict=True)]
    found: list[Marking] = []
    row = 0
    while row < len(total):
        if total[row] < min_coverage / 2:
            row += 1
            continue
        end = row
        while end < len(total) and total[end] >= min_coverage / 2:
            end += 1
        band = range(row, end)
        peak = max(total[r] for r in band)
        if peak >= min_coverage:
            weight = sum(total[r] for r in band)
            centre = sum(r * total[r] for r in band) / weight
            colour = "yellow" if sum(yellow[r] for r in band) > sum(white[r] for r in band) else "white"
            kind = "solid" if peak >= solid else "dashed"
            found.append(Marking(round(float(centre), 2), round(float(peak), 3), kind, colour))
        row = end
    return found


def parse_rows(text: str) -> list[float]:
    """Marking rows from ``"y;y;..."``, sorted.

    >>> parse_rows("125; 60;92.5")
    [60.0, 92.5, 125.0]
    """
    try:
        return sorted(float(part) for part in text.split(";"))
    except ValueError:
        raise ValueError(f"{text!r} is not 'y;y;...'") from None


def lane_of(y: float, rows: Sequence[float]) -> int | None:
    """Lane (0 = between the first two markings) holding row ``y``; None off the road.

    >>> [lane_of(y, [60, 92, 125]) for y in (59.0, 60.0, 91.9, 92.0, 124.0, 125.0)]
    [None, 0, 0, 1, 1, None]
    """
    i = bisect.bisect_right(rows, y) - 1
    return i if 0 <= i < len(rows) - 1 else None


def assign_tracks(
    tracks: Mapping[int, Mapping[int, tuple[float, float]]], rows: Sequence[float]
) -> dict[int, tuple[int | None, str]]:
    """Track id -> (lane of its median row, "right" | "left" by its net horizontal motion).

    >>> assign_tracks({4: {0: (10.0, 70.0), 5: (30.0, 71.0)}, 5: {0: (90.0, 100.0), 1: (80.0, 99.0)}}, [60, 92, 125])
    {4: (0, 'right'), 5: (1, 'left')}
    """
    out: dict[int, tuple[int | None, str]] = {}
    for tid, path in sorted(tracks.items()):
        frames = sorted(path)
        y = statistics.median(path[f][1] for f in frames)
        out[tid] = (lane_of(y, rows), "right" if path[frames[-1]][0] >= path[frames[0]][0] else "left")
    return out


def lane_summary(rows: Sequence[float], assigned: Mapping[int, tuple[int | None, str]]) -> list[dict[str, object]]:
    """One entry per lane: its bounds, its tracks, their count and the direction most of them drive.

    >>> lane_summary([60, 92, 125], {4: (0, "right"), 5: (0, "right"), 6: (None, "left")})[0]
    {'lane': 0, 'top': 60, 'bottom': 92, 'tracks': [4, 5], 'count': 2, 'direction': 'right'}
    """
    out: list[dict[str, object]] = []
    for lane in range(len(rows) - 1):
        tids = [t for t, (lane_t, _) in sorted(assigned.items()) if lane_t == lane]
        ways = [assigned[t][1] for t in tids]
        direction = max(("right", "left"), key=ways.count) if ways else None
        out.append(
            {
                "lane": lane,
                "top": rows[lane],
                "bottom": rows[lane + 1],
                "tracks": tids,
                "count": len(tids),
                "direction": direction,
            }
        )
    return out


LANE_BGR = ((0, 255, 255), (255, 128, 0), (255, 0, 255), (0, 128, 255), (128, 255, 0), (255, 255, 0))


def overlay(
    background: Frame,
    rows: Sequence[float],
    valid: Valid,
    tracks: Mapping[int, Mapping[int, tuple[float, float]]],
    assigned: Mapping[int, tuple[int | None, str]],
) -> Frame:
    """The empty road with each marking (red), each lane's number and each trajectory in its lane's colour."""
    out = background.copy()
    x0, _, x1, _ = valid
    for y in rows:
        cv2.line(out, (x0, round(y)), (x1 - 1, round(y)), (0, 0, 255), 1)
    for lane in range(len(rows) - 1):
        mid = round((rows[lane] + rows[lane + 1]) / 2)
        cv2.putText(out, f"L{lane}", (x0 + 2, mid + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, LANE_BGR[lane % 6], 1)
    for tid, path in tracks.items():
        in_lane = assigned[tid][0]
        colour = (128, 128, 128) if in_lane is None else LANE_BGR[in_lane % len(LANE_BGR)]
        pts = np.array([[round(path[f][0]), round(path[f][1])] for f in sorted(path)], np.int32)
        cv2.polylines(out, [pts], False, colour, 1, cv2.LINE_AA)
    return out


def main() -> None:
    video = need(STABILISED_VIDEO, "stabilise")
    raw_valid = read_json(need(STABILISE_INFO, "stabilise"))["valid_area"]
    valid = (int(raw_valid[0]), int(raw_valid[1]), int(raw_valid[2]), int(raw_valid[3]))
    n_samples = env_int("BACKGROUND_SAMPLES", 31, minimum=3)
    min_coverage = env_float("MIN_COVERAGE", 0.2, minimum=0.01)
    tolerance = env_float("LANE_TOLERANCE", 1.0, minimum=0.0)
    info = video_info(video)
    progress = Progress(info.frames)
    step = max(1, info.frames // n_samples)
    samples: list[Frame] = []
    for i, frame in enumerate(read_frames(video)):
        if i % step == 0:
            samples.append(frame)
        progress.tick(i + 1)
    if len(samples) < 3:
        raise StageError(f"{STABILISED_VIDEO} has too few frames ({info.frames}) for a background model")
    background = median_background(samples)
    manual = os.environ.get("LANES", "").strip()
    if manual:
        try:
            rows, source = parse_rows(manual), "LANES"
        except ValueError as exc:
            raise StageError(f"env LANES: {exc}") from None
        markings = [Marking(y, 0.0, "given", "given") for y in rows]
    else:
        white, yellow = paint_masks(background)
        markings = find_markings(
            row_coverage(white, valid).tolist(), row_coverage(yellow, valid).tolist(), min_coverage
        )
        rows, source = [m.y for m in markings], "detected"
    if len(rows) < 2:
        raise StageError(
            f"found {len(rows)} lane marking(s) across the road, need at least 2; "
            "set LANES='y;y;...' (marking rows in stabilised pixels) to give them by hand"
        )
    tracks: dict[int, dict[int, tuple[float, float]]] = {}
    trajectories_file = Path.cwd() / TRAJECTORIES
    if trajectories_file.is_file():
        tracks = paths(read_csv(trajectories_file), "track_id", "x", "y")
    assigned = assign_tracks(tracks, rows)
    lanes = lane_summary(rows, assigned)
    write_json(
        LANES,
        {
            "source": source,
            "coordinates": "stabilised road pixels (frame 0)",
            "markings": [{"name": f"M{i}", **asdict(m)} for i, m in enumerate(markings, start=1)],
            "lanes": lanes,
            "tracks": {str(t): {"lane": lane, "direction": way} for t, (lane, way) in assigned.items()},
        },
    )
    write_png("lanes.png", overlay(background, rows, valid, tracks, assigned))
    for m in markings:
        say(f"lane marking at y={m.y:g} ({m.kind}, {m.colour}, {source})")
    counts = ", ".join(f"lane {ln['lane']}: {ln['count']} {ln['direction'] or ''}".rstrip() for ln in lanes)
    say(f"{len(lanes)} lanes; {counts}" if tracks else f"{len(lanes)} lanes (no trajectories to count)")
    truth_file = Path.cwd() / LANE_TRUTH
    if truth_file.is_file():
        truth = read_json(truth_file)
        marks = evaluate_markings(
            [(float(m["y"]), str(m["kind"]), str(m["colour"])) for m in truth["markings"]],
            [(m.y, m.kind, m.colour) for m in markings],
            tolerance,
            check_kinds=source == "detected",
        )
        result: dict[str, object] = {"markings": asdict(marks)}
        line = (
            f"ground truth: {marks.within}/{marks.expected} lane markings within {tolerance:g} px "
            f"(largest offset {'n/a' if marks.max_offset is None else f'{marks.max_offset:.2f} px'})"
        )
        vehicle_truth = Path.cwd() / GROUND_TRUTH
        if tracks and vehicle_truth.is_file():
            matches = evaluate(paths(read_csv(vehicle_truth), "vehicle_id", "cx", "cy"), tracks).matches
            lanes_of_vehicles = {int(v["vehicle_id"]): int(v["lane"]) for v in truth["vehicles"]}
            per_lane = evaluate_lane_assignment(
                lanes_of_vehicles, {t: lane for t, (lane, _) in assigned.items()}, matches, len(rows) - 1
            )
            result["assignment"] = asdict(per_lane)
            line += (
                f"; per-lane counts {per_lane.counts} (true {per_lane.true_counts}), "
                f"{per_lane.agree}/{per_lane.matched} matched vehicles in their true lane"
            )
        write_json(LANE_EVALUATION, result)
        say(line)  # worded without "error": a result, and the log scanner flags that word


if __name__ == "__main__":
    run_stage(main)
