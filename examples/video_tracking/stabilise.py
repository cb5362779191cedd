"""Stage ``stabilise``: track the reference points through the video and undo the camera's motion.

For every frame, a patch around each reference point of frame 0 is searched for within ``SEARCH_RADIUS`` pixels
(normalised cross-correlation of slightly blurred images, which makes the peak round enough for a parabola
to place it to a few hundredths of a pixel); the frame's shift is the median of the
points' displacements, so one occluded point does not move the camera. Writes ``shifts.csv`` (frame, dx, dy,
score), ``stabilised.avi`` (every frame moved back onto frame 0) and ``stabilise.json`` with the area that is
valid in every stabilised frame. Knobs: ``SEARCH_RADIUS`` (default 10), ``PATCH_HALF`` (default 10).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

from examples.video_tracking.common import (
    INPUT_VIDEO,
    REFERENCE_POINTS,
    SHIFTS,
    STABILISE_INFO,
    STABILISED_VIDEO,
    Frame,
    Progress,
    StageError,
    VideoOut,
    env_int,
    need,
    read_frames,
    read_json,
    run_stage,
    say,
    video_info,
    write_csv,
    write_json,
)


def parabola_peak(left: float, centre: float, right: float) -> float:
    """Offset (-0.5..0.5) of the maximum of the parabola through three samples at -1, 0, 1.

    >>> round(parabola_peak(1.0, 2.0, 1.5), 3)  # the right neighbour is higher: the peak lies right of 0
    0.167
    """
    denom = left - 2 * centre + right
    return 0.0 if denom == 0 else max(-0.5, min(0.5, 0.5 * (left - right) / denom))


def locate(scores: npt.NDArray[np.float32]) -> tuple[float, float, float]:
    """Sub-pixel (x, y) of the best score in a matchTemplate result, and the score."""
    _, best, _, (bx, by) = cv2.minMaxLoc(scores)
    h, w = scores.shape
    fx = parabola_peak(scores[by, bx - 1], scores[by, bx], scores[by, bx + 1]) if 0 < bx < w - 1 else 0.0
    fy = parabola_peak(scores[by - 1, bx], scores[by, bx], scores[by + 1, bx]) if 0 < by < h - 1 else 0.0
    return bx + fx, by + fy, float(best)


def soften(frame: Frame) -> Frame:
    # Without it a sharp-edged marker gives a pointed correlation peak and the parabola is off by up to 0.5 px.
    return np.asarray(cv2.GaussianBlur(frame, (0, 0), 1.0), dtype=np.uint8)


class PointTracker:
    """Displacement of each reference point's neighbourhood relative to frame 0."""

    def __init__(self, frame0: Frame, points: list[tuple[float, float]], half: int, radius: int) -> None:
        h, w = frame0.shape[:2]
        frame0 = soften(frame0)
        self.items: list[tuple[Frame, int, int]] = []  # (template, template x0, template y0)
        self.radius = radius
        for x, y in points:
            x0, y0 = round(x) - half, round(y) - half
            if x0 - radius < 0 or y0 - radius < 0 or x0 + 2 * half + 1 + radius > w or y0 + 2 * half + 1 + radius > h:
                raise StageError(
                    f"reference point ({x:g}, {y:g}) is closer than PATCH_HALF+SEARCH_RADIUS to the frame edge"
                )
            self.items.append((frame0[y0 : y0 + 2 * half + 1, x0 : x0 + 2 * half + 1].copy(), x0, y0))

    def shift(self, frame: Frame) -> tuple[float, float, float]:
        """Median displacement (dx, dy) of the points in ``frame``, and the weakest match score."""
        r = self.radius
        frame = soften(frame)
        dxs, dys, scores = [], [], []
        for template, x0, y0 in self.items:
            th, tw = template.shape[:2]
            window = frame[y0 - r : y0 + th + r, x0 - r : x0 + tw + r]
            scores_map = np.asarray(cv2.matchTemplate(window, template, cv2.TM_CCOEFF_NORMED), dtype=np.float32)
            bx, by, score = locate(scores_map)
            dxs.append(bx - r)
            dys.append(by - r)
            scores.append(score)
        return float(np.median(dxs)), float(np.median(dys)), min(scores)


def valid_area(shifts: list[tuple[float, float]], width: int, height: int) -> tuple[int, int, int, int]:
    """[x0, y0, x1, y1) that holds image content in every frame moved back by its shift.

    >>> valid_area([(0.0, 0.0), (2.0, -1.5), (-3.0, 1.0)], 100, 50)
    (3, 2, 98, 49)
    """
    dx = [s[0] for s in shifts]
    dy = [s[1] for s in shifts]

    def up(v: float) -> int:
        # A shift of 4.003 px is 4 px within the estimate's accuracy; don't lose a whole pixel column to it.
        return math.ceil(max(0.0, v) - 0.05)

    return up(-min(dx)), up(-min(dy)), width - up(max(dx)), height - up(max(dy))


def main() -> None:
    video = need(INPUT_VIDEO, "generate")
    ref = read_json(need(REFERENCE_POINTS, "reference_points"))
    points = [(float(p["x"]), float(p["y"])) for p in ref["points"]]
    radius = env_int("SEARCH_RADIUS", 10, minimum=1)
    half = env_int("PATCH_HALF", 10, minimum=3)
    info = video_info(video)
    progress = Progress(info.frames)
    tracker: PointTracker | None = None
    rows: list[tuple[int, float, float, float]] = []
    weak = 0
    with VideoOut(STABILISED_VIDEO, info.width, info.height, info.fps) as out:
        for i, frame in enumerate(read_frames(video)):
            if tracker is None:
                tracker = PointTracker(frame, points, half, radius)
            dx, dy, score = tracker.shift(frame)
            if score < 0.5:
                weak += 1
            rows.append((i, round(dx, 3), round(dy, 3), round(score, 3)))
            # Content sits at p + d in this frame; sampling there puts it back at p, where frame 0 has it.
            move = np.array([[1.0, 0.0, -dx], [0.0, 1.0, -dy]])
            out.write(np.asarray(cv2.warpAffine(frame, move, (info.width, info.height)), dtype=np.uint8))
            progress.tick(i + 1)
    if not rows:
        raise StageError(f"{INPUT_VIDEO} has no frames")
    write_csv(SHIFTS, ["frame", "dx", "dy", "score"], rows)
    area = valid_area([(r[1], r[2]) for r in rows], info.width, info.height)
    write_json(
        STABILISE_INFO,
        {"width": info.width, "height": info.height, "fps": info.fps, "frames": len(rows), "valid_area": area},
    )
    largest = max(max(abs(r[1]), abs(r[2])) for r in rows)
    say(f"stabilised {len(rows)} frames; largest shift {largest:.1f} px; valid area {area}")
    if weak:
        # A weak match usually means a point was covered or left the search window: worth a look, not a failure.
        say(f"warning: {weak} frame(s) matched a reference point with a correlation below 0.5")


if __name__ == "__main__":
    run_stage(main)
