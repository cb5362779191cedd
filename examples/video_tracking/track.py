"""Stage ``track``: link detections frame to frame into tracks with stable ids.

Each live track predicts its centre from its last position and velocity; detections are assigned greedily,
closest pair first, within ``MAX_DISTANCE`` pixels (a centroid association: vehicles here are small and fast
compared with their size, so box overlap between frames is often zero). An unassigned detection starts a track;
a track unseen for more than ``MAX_MISSES`` frames ends. Writes ``tracks.csv``: track_id, frame, x, y, w, h, cx, cy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from examples.video_tracking.common import (
    DETECTIONS,
    TRACKS,
    Progress,
    env_float,
    env_int,
    need,
    read_csv,
    run_stage,
    say,
    write_csv,
)

Box = tuple[int, int, int, int, float, float]  # x, y, w, h, cx, cy


@dataclass
class Track:
    track_id: int
    frame: int
    cx: float
    cy: float
    vx: float = 0.0
    vy: float = 0.0
    length: int = 1

    def predict(self, frame: int) -> tuple[float, float]:
        dt = frame - self.frame
        return self.cx + self.vx * dt, self.cy + self.vy * dt

    def update(self, frame: int, cx: float, cy: float) -> None:
        dt = frame - self.frame
        vx, vy = (cx - self.cx) / dt, (cy - self.cy) / dt
        # The first step sets the velocity; later ones blend, so one ragged box does not swing the prediction.
        weight = 1.0 if self.length == 1 else 0.5
        self.vx += weight * (vx - self.vx)
        self.vy += weight * (vy - self.vy)
        self.frame, self.cx, self.cy, self.length = frame, cx, cy, self.length + 1


@dataclass
class Tracker:
    """Greedy nearest-prediction association.

    >>> t = Tracker(max_distance=10, max_misses=2)
    >>> t.step(0, [(0, 0, 4, 4, 1.5, 1.5)]), t.step(1, [(3, 0, 4, 4, 4.5, 1.5), (50, 50, 4, 4, 51.5, 51.5)])
    ([1], [1, 2])
    """

    max_distance: float
    max_misses: int
    live: list[Track] = field(default_factory=list)
    next_id: int = 1

    def step(self, frame: int, boxes: list[Box]) -> list[int]:
        """Track id of each box of ``frame`` (same order)."""
        self.live = [t for t in self.live if frame - t.frame <= self.max_misses + 1]
        pairs = sorted(
            (math.dist(t.predict(frame), (b[4], b[5])), ti, bi)
            for ti, t in enumerate(self.live)
            for bi, b in enumerate(boxes)
        )
        ids: list[int | None] = [None] * len(boxes)
        used: set[int] = set()
        for dist, ti, bi in pairs:
            if dist > self.max_distance:
                break
            if ti in used or ids[bi] is not None:
                continue
            used.add(ti)
            self.live[ti].update(frame, boxes[bi][4], boxes[bi][5])
            ids[bi] = self.live[ti].track_id
        for bi, b in enumerate(boxes):
            if ids[bi] is None:
                track = Track(self.next_id, frame, b[4], b[5])
                self.next_id += 1
                self.live.append(track)
                ids[bi] = track.track_id
        return [i for i in ids if i is not None]


def main() -> None:
    rows = read_csv(need(DETECTIONS, "detect"))
    by_frame: dict[int, list[Box]] = {}
    for r in rows:
        box = (int(r["x"]), int(r["y"]), int(r["w"]), int(r["h"]), float(r["cx"]), float(r["cy"]))
        by_frame.setdefault(int(r["frame"]), []).append(box)
    tracker = Tracker(env_float("MAX_DISTANCE", 20.0, minimum=1.0), env_int("MAX_MISSES", 3, minimum=0))
    last = max(by_frame, default=-1)
    progress = Progress(last + 1)
    out: list[tuple[int, int, int, int, int, int, float, float]] = []
    for frame in range(last + 1):
        boxes = by_frame.get(frame, [])
        for tid, b in zip(tracker.step(frame, boxes), boxes, strict=True):
            out.append((tid, frame, *b))
        progress.tick(frame + 1)
    out.sort()
    write_csv(TRACKS, ["track_id", "frame", "x", "y", "w", "h", "cx", "cy"], out)
    say(f"{tracker.next_id - 1} tracks from {len(rows)} detections")


if __name__ == "__main__":
    run_stage(main)
