"""I/O shared by the stage programs: env knobs, progress lines, failures, CSV/JSON/video files in the workspace.

Every write replaces the target (temporary file + rename): an input may be a read-only hard link to an earlier
stage's output, and writing into it would change that stage's sealed result.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from opsflow.files import atomic_write_bytes, atomic_write_text

Frame = npt.NDArray[np.uint8]

# File names passed between stages (the contract of pipeline.yaml).
INPUT_VIDEO = "input.avi"
GROUND_TRUTH = "ground_truth.csv"
REFERENCE_TRUTH = "reference_truth.json"
LANE_TRUTH = "lane_truth.json"
CAMERA_SHAKE = "camera_shake.csv"
REFERENCE_POINTS = "reference_points.json"
SHIFTS = "shifts.csv"
STABILISED_VIDEO = "stabilised.avi"
STABILISE_INFO = "stabilise.json"
DETECTIONS = "detections.csv"
TRACKS = "tracks.csv"
TRAJECTORIES = "trajectories.csv"
EVALUATION = "evaluation.json"
LANES = "lanes.json"
LANE_EVALUATION = "lane_evaluation.json"


class StageError(Exception):
    """A failure the user can act on; printed as one ``error: ...`` line, exit status 1."""


def env_int(name: str, default: int, minimum: int | None = None) -> int:
    """Integer knob from the environment (stage ``env`` in pipeline.yaml)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise StageError(f"env {name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise StageError(f"env {name}={value} must be at least {minimum}")
    return value


def env_float(name: str, default: float, minimum: float | None = None) -> float:
    """Float knob from the environment."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise StageError(f"env {name}={raw!r} is not a number") from None
    if minimum is not None and value < minimum:
        raise StageError(f"env {name}={value} must be at least {minimum}")
    return value


def say(message: str) -> None:
    """One log line, flushed at once so the runner streams it while the stage works."""
    print(message, flush=True)


class Progress:
    """Prints ``frame N/TOTAL`` about 40 times per run (and always the last frame), for the progress regex."""

    def __init__(self, total: int, updates: int = 40) -> None:
        self.total = max(total, 1)
        self.every = max(1, self.total // updates)

    def tick(self, done: int) -> None:
        if done % self.every == 0 or done == self.total:
            say(f"frame {done}/{self.total}")


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's ``main``; on failure print one ``error:`` line and exit non-zero."""
    try:
        main()
    except StageError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
    except Exception as exc:
        traceback.print_exc()
        print(f"error: unexpected {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)


def need(name: str, produced_by: str) -> Path:
    """Path of an input file in the workspace; a clear failure when the earlier stage did not leave it."""
    path = Path.cwd() / name
    if not path.is_file():
        raise StageError(f"missing input {name} in {Path.cwd()} (made by the {produced_by} stage)")
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def write_csv(name: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(Path.cwd() / name, buf.getvalue())


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def write_json(name: str, data: Mapping[str, Any]) -> None:
    atomic_write_text(Path.cwd() / name, json.dumps(data, indent=2) + "\n")


def write_png(name: str, image: Frame) -> None:
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise StageError(f"could not encode {name}")
    atomic_write_bytes(Path.cwd() / name, buf.tobytes())


class VideoInfo:
    """Size, rate and frame count of a video file."""

    def __init__(self, width: int, height: int, fps: float, frames: int) -> None:
        self.width, self.height, self.fps, self.frames = width, height, fps, frames


def video_info(path: Path) -> VideoInfo:
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise StageError(f"cannot open video {path}")
        info = VideoInfo(
            int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            float(cap.get(cv2.CAP_PROP_FPS)) or 15.0,
            int(cap.get(cv2.CAP_PROP_FRAME_COUNT)),
        )
    finally:
        cap.release()
    if info.frames <= 0 or info.width <= 0:
        raise StageError(f"video {path} has no frames")
    return info


def read_frames(path: Path) -> Iterator[Frame]:
    """Decoded BGR frames, streamed (a real input video does not fit in memory)."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise StageError(f"cannot open video {path}")
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                return
            yield np.asarray(frame, dtype=np.uint8)
    finally:
        cap.release()


class VideoOut:
    """MJPG .avi writer that renames its temporary file over ``name`` only when closed without failure."""

    def __init__(self, name: str, width: int, height: int, fps: float) -> None:
        self.target = Path.cwd() / name
        # The temporary name keeps the .avi suffix: OpenCV picks the container from it.
        self.tmp = self.target.with_name(f".{self.target.stem}.partial.avi")
        self.tmp.unlink(missing_ok=True)
        self.size = (width, height)
        self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter.fourcc(*"MJPG"), fps, self.size)
        if not self.writer.isOpened():
            raise StageError(f"cannot write video {name} (MJPG codec unavailable?)")

    def write(self, frame: Frame) -> None:
        if (frame.shape[1], frame.shape[0]) != self.size:
            raise StageError(f"frame size {frame.shape[1]}x{frame.shape[0]} differs from {self.size}")
        self.writer.write(frame)

    def __enter__(self) -> VideoOut:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self.writer.release()
        if exc_type is None:
            fd = os.open(self.tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(self.tmp, self.target)
        else:
            self.tmp.unlink(missing_ok=True)
