"""Stage ``generate``: the input video of the pipeline.

Without ``INPUT_VIDEO`` it renders the synthetic traffic scene (knobs ``SEED``, ``WIDTH``, ``HEIGHT``, ``FPS``,
``DURATION_S``, ``VEHICLES``, ``SHAKE_PX``) with its ground truth. With ``INPUT_VIDEO`` (a path, e.g. in the
resource pool) it re-encodes that video to ``input.avi`` so later stages read one known format.
"""

from __future__ import annotations

import os
from pathlib import Path

from examples.video_tracking.common import (
    INPUT_VIDEO,
    Progress,
    StageError,
    VideoOut,
    env_float,
    env_int,
    read_frames,
    run_stage,
    say,
    video_info,
)
from examples.video_tracking.synth import make_scene, write_scene


def convert(source: Path) -> None:
    if not source.is_file():
        raise StageError(f"INPUT_VIDEO {source} is not a file")
    info = video_info(source)
    progress = Progress(info.frames)
    done = 0
    with VideoOut(INPUT_VIDEO, info.width, info.height, info.fps) as out:
        for done, frame in enumerate(read_frames(source), start=1):
            out.write(frame)
            progress.tick(done)
    say(f"converted {source} ({info.width}x{info.height}, {done} frames at {info.fps:g} fps) to {INPUT_VIDEO}")


def main() -> None:
    source = os.environ.get("INPUT_VIDEO", "").strip()
    if source:
        convert(Path(source))
        return
    fps = env_float("FPS", 15.0, minimum=1.0)
    try:
        scene = make_scene(
            seed=env_int("SEED", 7),
            width=env_int("WIDTH", 320, minimum=160),
            height=env_int("HEIGHT", 240, minimum=120),
            fps=fps,
            n_frames=max(30, round(env_float("DURATION_S", 8.0, minimum=2.0) * fps)),
            n_vehicles=env_int("VEHICLES", 5, minimum=1),
            shake_px=env_int("SHAKE_PX", 4, minimum=0),
        )
    except ValueError as exc:
        raise StageError(str(exc)) from None
    say(f"synthetic scene: {scene.width}x{scene.height}, {scene.n_frames} frames, {len(scene.vehicles)} vehicles")
    write_scene(scene, Progress(scene.n_frames).tick)
    say(f"wrote {INPUT_VIDEO} and the ground truth")


if __name__ == "__main__":
    run_stage(main)
