"""Stage ``reference_points``: the stationary points in frame 0 that stabilisation tracks (seed: "define reference
points in one single frame through a user input").

The four magenta road markers are found automatically and shown for approval (printed, and drawn into
``reference_points.png``); a user who disagrees redoes the stage with ``REFERENCE_POINTS="x,y;x,y;x,y;x,y"``.
Knobs: ``MARKER_HUE`` (OpenCV hue 0-179 of the markers, default 150 = magenta), ``MARKER_MIN_AREA``.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from examples.video_tracking.common import (
    INPUT_VIDEO,
    REFERENCE_POINTS,
    Frame,
    Progress,
    StageError,
    env_int,
    need,
    read_frames,
    run_stage,
    say,
    write_json,
    write_png,
)

Point = tuple[float, float]


def parse_points(text: str) -> list[Point]:
    """Points from ``"x,y;x,y;..."``.

    >>> parse_points("10,20; 30.5,40")
    [(10.0, 20.0), (30.5, 40.0)]
    """
    points: list[Point] = []
    for part in text.split(";"):
        xs = part.split(",")
        if len(xs) != 2:
            raise ValueError(f"{part.strip()!r} is not 'x,y'")
        points.append((float(xs[0]), float(xs[1])))
    return points


def order_points(points: list[Point]) -> list[Point]:
    """Top row left to right, then bottom row left to right, so names stay stable between runs.

    >>> order_points([(300, 220), (20, 20), (20, 220), (300, 20)])
    [(20, 20), (300, 20), (20, 220), (300, 220)]
    """
    by_y = sorted(points, key=lambda p: p[1])
    half = len(by_y) // 2
    return sorted(by_y[:half], key=lambda p: p[0]) + sorted(by_y[half:], key=lambda p: p[0])


def find_markers(frame: Frame, hue: int, min_area: int, count: int = 4) -> list[Point]:
    """Centroids of the ``count`` largest saturated blobs of ``hue`` (sub-pixel, from image moments)."""
    hsv = cv2.cvtColor(frame, cv2.COLOR_BGR2HSV)
    lo, hi = np.array([max(hue - 12, 0), 120, 120]), np.array([min(hue + 12, 179), 255, 255])
    mask = cv2.inRange(hsv, lo, hi)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    blobs = sorted((c for c in contours if cv2.contourArea(c) >= min_area), key=cv2.contourArea, reverse=True)
    if len(blobs) < count:
        raise StageError(
            f"found {len(blobs)} marker(s) of hue {hue} in frame 0, need {count}; "
            "set REFERENCE_POINTS='x,y;x,y;x,y;x,y' to give them by hand"
        )
    points: list[Point] = []
    for c in blobs[:count]:
        # Moments of the blob's pixels, not of its outline polygon: the outline is biased by half a pixel.
        x, y, w, h = cv2.boundingRect(c)
        mom = cv2.moments(mask[y : y + h, x : x + w], binaryImage=True)
        points.append((x + mom["m10"] / mom["m00"], y + mom["m01"] / mom["m00"]))
    return order_points(points)


def main() -> None:
    frame0 = next(read_frames(need(INPUT_VIDEO, "generate")), None)
    if frame0 is None:
        raise StageError(f"{INPUT_VIDEO} has no frames")
    Progress(1).tick(0)
    manual = os.environ.get("REFERENCE_POINTS", "").strip()
    if manual:
        try:
            points, source = parse_points(manual), "REFERENCE_POINTS"
        except ValueError as exc:
            raise StageError(f"env REFERENCE_POINTS: {exc}") from None
        if len(points) < 2:
            raise StageError("env REFERENCE_POINTS needs at least 2 points")
    else:
        points = find_markers(frame0, env_int("MARKER_HUE", 150), env_int("MARKER_MIN_AREA", 30, minimum=1))
        source = "detected"
    h, w = frame0.shape[:2]
    for x, y in points:
        if not (0 <= x < w and 0 <= y < h):
            raise StageError(f"reference point ({x:g}, {y:g}) lies outside the {w}x{h} frame")
    named = [{"name": f"P{i}", "x": round(x, 2), "y": round(y, 2)} for i, (x, y) in enumerate(points, start=1)]
    write_json(REFERENCE_POINTS, {"frame": 0, "source": source, "points": named})
    preview = frame0.copy()
    for i, (x, y) in enumerate(points, start=1):
        centre = (round(x), round(y))
        cv2.circle(preview, centre, 9, (255, 255, 255), 1)
        cv2.putText(
            preview, f"P{i}", (centre[0] + 10, centre[1] + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1
        )
    write_png("reference_points.png", preview)
    for p in named:
        say(f"reference point {p['name']}: x={p['x']} y={p['y']} ({source})")
    Progress(1).tick(1)


if __name__ == "__main__":
    run_stage(main)
