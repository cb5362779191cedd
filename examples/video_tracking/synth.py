"""A synthetic traffic video with known truth: a textured four-lane road seen by a shaking camera.

Road coordinates are the pixel coordinates of frame 0 (the camera's offset is zero there). Four magenta markers on
the verges are the stationary reference points; five painted lane markings (solid white road edges, dashed white
lane lines, a solid yellow centre line) bound the four lanes; vehicles are coloured rectangles driving along lanes
at constant speeds, entering and leaving the view. Everything follows from one seed.

Example:
    >>> scene = make_scene(seed=1, n_frames=30)
    >>> scene.shake[0], len(scene.markers), scene.marking_y
    ((0, 0), 4, (60, 92, 125, 157, 190))
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from examples.video_tracking.common import (
    CAMERA_SHAKE,
    GROUND_TRUTH,
    INPUT_VIDEO,
    LANE_TRUTH,
    REFERENCE_TRUTH,
    Frame,
    StageError,
    VideoOut,
    video_info,
    write_csv,
    write_json,
)

# Lane centre lines (y, for a 240-pixel-high frame, scaled for other heights); lanes 0-1 drive right, 2-3 left.
LANE_Y = (0.32, 0.45, 0.59, 0.72)
PALETTE: tuple[tuple[int, int, int], ...] = (  # BGR, all far from the grey road and from the magenta markers
    (40, 40, 210),
    (210, 90, 30),
    (235, 235, 235),
    (40, 210, 230),
    (25, 25, 25),
    (50, 180, 60),
)
MARKER_BGR = (255, 0, 255)


@dataclass(frozen=True)
class Marking:
    """A painted line across the road: ``y`` is its centre row as a fraction of the height (cv2 paints a line of
    thickness 1 or 2 on rows round(y*h) +- (thickness - 1), so that row is its exact centre)."""

    y: float
    kind: str  # "solid" | "dashed" (12 px painted in every 24)
    colour: str  # "white" | "yellow"
    bgr: tuple[int, int, int]
    thickness: int


# Top to bottom; lane i (centre LANE_Y[i]) lies between markings i and i + 1.
MARKINGS = (
    Marking(0.25, "solid", "white", (220, 220, 220), 2),
    Marking(0.385, "dashed", "white", (230, 230, 230), 1),
    Marking(0.52, "solid", "yellow", (40, 200, 220), 2),
    Marking(0.655, "dashed", "white", (230, 230, 230), 1),
    Marking(0.79, "solid", "white", (220, 220, 220), 2),
)
MARKER_HALF = 5  # markers are 11x11 squares: large enough to survive MJPG's chroma subsampling


@dataclass(frozen=True)
class Vehicle:
    """One vehicle; ``left(frame)`` is the drawn rectangle's left pixel column in road coordinates."""

    vehicle_id: int
    lane: int
    start_frame: int
    x0: float
    speed: float  # pixels per frame, negative = leftwards
    length: int
    height: int
    color: tuple[int, int, int]
    y_center: int

    def left(self, frame: int) -> int:
        return round(self.x0 + self.speed * (frame - self.start_frame) - self.length / 2)

    def center(self, frame: int) -> tuple[float, float]:
        """Centre of the drawn pixels (pixel-index convention: (first + last) / 2)."""
        top = self.y_center - self.height // 2
        return self.left(frame) + (self.length - 1) / 2, top + (self.height - 1) / 2


@dataclass(frozen=True)
class Scene:
    width: int
    height: int
    fps: float
    n_frames: int
    margin: int  # canvas border beyond the view, at least the shake amplitude
    vehicles: tuple[Vehicle, ...]
    markers: tuple[tuple[int, int], ...]  # road coordinates of the marker centres
    shake: tuple[tuple[int, int], ...]  # camera offset per frame; scene content moves by minus this
    seed: int
    marking_y: tuple[int, ...]  # road-coordinate centre row of each of MARKINGS (the true lane boundaries)

    def fully_visible(self, v: Vehicle, frame: int, border: int) -> bool:
        """Whole rectangle inside the view shrunk by ``border`` (the part every stabilised frame shows)."""
        left, top = v.left(frame), v.y_center - v.height // 2
        return (
            left >= border
            and left + v.length - 1 < self.width - border
            and top >= border
            and top + v.height - 1 < self.height - border
        )


def _shake(rng: np.random.Generator, n: int, amplitude: int) -> tuple[tuple[int, int], ...]:
    # A clipped random walk: jittery like a hand-held or wind-shaken mast camera, zero at frame 0.
    out = [(0, 0)]
    for _ in range(1, n):
        x, y = out[-1]
        dx, dy = rng.integers(-2, 3, size=2)
        out.append((int(np.clip(x + dx, -amplitude, amplitude)), int(np.clip(y + dy, -amplitude, amplitude))))
    return tuple(out)


def _conflicts(a: Vehicle, b: Vehicle, n_frames: int, gap: int) -> bool:
    if a.lane != b.lane:
        return False
    return any(abs(a.left(f) - b.left(f)) < (a.length + b.length) / 2 + gap for f in range(n_frames))


def make_scene(
    seed: int = 7,
    width: int = 320,
    height: int = 240,
    fps: float = 15.0,
    n_frames: int = 120,
    n_vehicles: int = 5,
    shake_px: int = 4,
) -> Scene:
    """Draw vehicles until ``n_vehicles`` fit: no two in a lane closer than 14 px, each fully seen >= 20 frames."""
    rng = np.random.default_rng(seed)
    margin = shake_px + 2
    vehicles: list[Vehicle] = []
    for _ in range(2000):
        if len(vehicles) == n_vehicles:
            break
        lane = int(rng.integers(0, len(LANE_Y)))
        length, vh = int(rng.integers(20, 37)), int(rng.integers(10, 15))
        speed = float(rng.uniform(1.8, 4.2)) * (1 if lane < 2 else -1)
        start = int(rng.integers(-40, n_frames // 2))
        x0 = -margin - length / 2 if speed > 0 else width + margin + length / 2
        colour = PALETTE[len(vehicles) % len(PALETTE)]
        v = Vehicle(len(vehicles) + 1, lane, start, x0, speed, length, vh, colour, round(LANE_Y[lane] * height))
        seen = sum(1 for f in range(n_frames) if _fully_inside(v, f, width, margin))
        if seen >= 20 and not any(_conflicts(v, o, n_frames, 14) for o in vehicles):
            vehicles.append(v)
    if len(vehicles) < n_vehicles:
        raise ValueError(f"could not place {n_vehicles} vehicles in {n_frames} frames")
    m = 24  # far enough from the edge for stabilise's template patch plus its search window
    markers = ((m + 8, m), (width - m - 4, m + 4), (m, height - m - 2), (width - m - 10, height - m))
    shake = _shake(rng, n_frames, shake_px)
    marking_y = tuple(round(mk.y * height) for mk in MARKINGS)
    return Scene(width, height, fps, n_frames, margin, tuple(vehicles), markers, shake, seed, marking_y)


def _fully_inside(v: Vehicle, frame: int, width: int, border: int) -> bool:
    left = v.left(frame)
    return left >= border and left + v.length - 1 < width - border


def _background(scene: Scene, rng: np.random.Generator) -> Frame:
    """Static world: grass verges with bushes, a textured asphalt road, lane markings, the four markers."""
    m, w, h = scene.margin, scene.width, scene.height
    cw, ch = w + 2 * m, h + 2 * m
    texture = cv2.GaussianBlur(rng.normal(0.0, 14.0, (ch, cw)).astype(np.float32), (0, 0), 1.5)
    grass = np.stack([60 + texture, 125 + texture, 65 + texture], axis=-1)
    road = np.stack([95 + texture * 0.7] * 3, axis=-1)
    img = grass
    rows = [y + m for y in scene.marking_y]
    top, bottom = rows[0], rows[-1]
    img[top:bottom] = road[top:bottom]
    canvas = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(14):  # bushes: fixed texture that stabilisation can lock onto besides the markers
        cx, cy = int(rng.integers(0, cw)), int(rng.choice([rng.integers(0, top - 6), rng.integers(bottom + 6, ch)]))
        cv2.circle(canvas, (cx, cy), int(rng.integers(3, 8)), (30, 80, 35), -1)
    for y, mk in zip(rows, MARKINGS, strict=True):
        if mk.kind == "dashed":
            for x in range(0, cw, 24):
                cv2.line(canvas, (x, y), (x + 11, y), mk.bgr, mk.thickness)
        else:
            cv2.line(canvas, (0, y), (cw, y), mk.bgr, mk.thickness)
    r = MARKER_HALF
    for mx, my in scene.markers:
        cv2.rectangle(canvas, (mx + m - r, my + m - r), (mx + m + r, my + m + r), MARKER_BGR, -1)
    return canvas


def render(scene: Scene) -> Iterator[Frame]:
    """The frames as the shaking camera sees them, with a little sensor noise."""
    rng = np.random.default_rng(scene.seed + 1)
    world = _background(scene, rng)
    m = scene.margin
    for f in range(scene.n_frames):
        canvas = world.copy()
        for v in scene.vehicles:
            left, top = v.left(f) + m, v.y_center - v.height // 2 + m
            cv2.rectangle(canvas, (left, top), (left + v.length - 1, top + v.height - 1), v.color, -1)
            # A windscreen, so a vehicle is not a flat blob; it sits at the front in the driving direction.
            wx = left + v.length - 9 if v.speed > 0 else left + 3
            cv2.rectangle(canvas, (wx, top + 2), (wx + 5, top + v.height - 3), (200, 180, 150), -1)
        ox, oy = scene.shake[f]
        view = canvas[m + oy : m + oy + scene.height, m + ox : m + ox + scene.width].astype(np.int16)
        noise = rng.normal(0.0, 2.0, view.shape).astype(np.int16)
        yield np.clip(view + noise, 0, 255).astype(np.uint8)


def ground_truth(scene: Scene, border: int) -> list[tuple[int, int, float, float]]:
    """(frame, vehicle_id, cx, cy) for every frame in which the vehicle is fully inside the view less ``border``."""
    return [
        (f, v.vehicle_id, *v.center(f))
        for f in range(scene.n_frames)
        for v in scene.vehicles
        if scene.fully_visible(v, f, border)
    ]


def lane_truth(scene: Scene) -> dict[str, Any]:
    """The true lane markings, lanes (top to bottom, with their driving direction) and each vehicle's lane.

    >>> t = lane_truth(make_scene(seed=1, n_frames=30))
    >>> [m["y"] for m in t["markings"]], t["lanes"][0]
    ([60, 92, 125, 157, 190], {'lane': 0, 'top': 60, 'bottom': 92, 'direction': 'right'})
    """
    ys = scene.marking_y
    return {
        "markings": [
            {"name": f"M{i}", "y": y, "kind": mk.kind, "colour": mk.colour}
            for i, (y, mk) in enumerate(zip(ys, MARKINGS, strict=True), start=1)
        ],
        "lanes": [
            {"lane": i, "top": ys[i], "bottom": ys[i + 1], "direction": "right" if i < 2 else "left"}
            for i in range(len(ys) - 1)
        ],
        "vehicles": [{"vehicle_id": v.vehicle_id, "lane": v.lane} for v in scene.vehicles],
    }


def write_scene(scene: Scene, on_frame: Callable[[int], None] | None = None) -> None:
    """Write the video, ground truth, true marker positions, true lanes and camera shake into the current
    directory.

    The video is read back to check that this OpenCV build really wrote every frame.
    """
    with VideoOut(INPUT_VIDEO, scene.width, scene.height, scene.fps) as out:
        for i, frame in enumerate(render(scene), start=1):
            out.write(frame)
            if on_frame:
                on_frame(i)
    info = video_info(Path.cwd() / INPUT_VIDEO)
    if (info.width, info.height, info.frames) != (scene.width, scene.height, scene.n_frames):
        raise StageError(
            f"{INPUT_VIDEO} reads back as {info.width}x{info.height}, {info.frames} frames; "
            f"wrote {scene.width}x{scene.height}, {scene.n_frames}"
        )
    border = scene.margin - 1  # the shake amplitude + 1: inside every stabilised frame's valid area
    write_csv(GROUND_TRUTH, ["frame", "vehicle_id", "cx", "cy"], ground_truth(scene, border))
    write_csv(CAMERA_SHAKE, ["frame", "dx", "dy"], [(f, -ox, -oy) for f, (ox, oy) in enumerate(scene.shake)])
    write_json(
        REFERENCE_TRUTH,
        {"points": [{"name": f"P{i}", "x": x, "y": y} for i, (x, y) in enumerate(scene.markers, start=1)]},
    )
    write_json(LANE_TRUTH, lane_truth(scene))
