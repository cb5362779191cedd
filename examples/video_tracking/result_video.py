"""Stage ``result_video``: the original (shaking) video with each trajectory drawn on it as ``result.avi``.

Trajectories are in stabilised road coordinates; adding the frame's shift from ``shifts.csv`` puts them back onto
the moving camera image, so the overlay following the scene shows the stabilisation at work. ``TRAIL`` (default
15) is the length of the drawn tail in frames.
"""

from __future__ import annotations

import itertools

import cv2

from examples.video_tracking.common import (
    INPUT_VIDEO,
    SHIFTS,
    TRAJECTORIES,
    Frame,
    Progress,
    VideoOut,
    env_int,
    need,
    read_csv,
    read_frames,
    run_stage,
    say,
    video_info,
)

COLOURS = ((0, 255, 255), (255, 0, 255), (255, 255, 0), (0, 128, 255), (255, 128, 0), (128, 255, 0), (0, 0, 255))


def draw(frame: Frame, tails: dict[int, list[tuple[float, float]]], shift: tuple[float, float]) -> Frame:
    """Tails and current positions (with ids) of the trajectories present, moved by ``shift``."""
    out = frame.copy()
    dx, dy = shift
    for tid, tail in tails.items():
        colour = COLOURS[tid % len(COLOURS)]
        pts = [(round(x + dx), round(y + dy)) for x, y in tail]
        for a, b in itertools.pairwise(pts):
            cv2.line(out, a, b, colour, 1, cv2.LINE_AA)
        cv2.circle(out, pts[-1], 3, colour, -1)
        cv2.putText(out, str(tid), (pts[-1][0] + 4, pts[-1][1] - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1)
    return out


def main() -> None:
    video = need(INPUT_VIDEO, "generate")
    shifts = {int(r["frame"]): (float(r["dx"]), float(r["dy"])) for r in read_csv(need(SHIFTS, "stabilise"))}
    by_track: dict[int, dict[int, tuple[float, float]]] = {}
    for r in read_csv(need(TRAJECTORIES, "trajectories")):
        by_track.setdefault(int(r["track_id"]), {})[int(r["frame"])] = (float(r["x"]), float(r["y"]))
    trail = env_int("TRAIL", 15, minimum=1)
    info = video_info(video)
    progress = Progress(info.frames)
    with VideoOut("result.avi", info.width, info.height, info.fps) as out:
        for i, frame in enumerate(read_frames(video)):
            tails = {
                tid: [path[f] for f in range(i - trail + 1, i + 1) if f in path]
                for tid, path in by_track.items()
                if i in path
            }
            out.write(draw(frame, tails, shifts.get(i, (0.0, 0.0))))
            progress.tick(i + 1)
    say(f"wrote result.avi with {len(by_track)} trajectories")


if __name__ == "__main__":
    run_stage(main)
