"""Stage ``detect``: vehicles as foreground blobs of the stabilised video.

The background is the per-pixel median of ``BACKGROUND_SAMPLES`` frames spread over the video (a moving vehicle
covers a pixel in only a few of them). A pixel is foreground where any colour channel differs from the background
by more than ``DIFF_THRESHOLD``; after an opening (noise) and a closing (holes, e.g. windscreens) every external
contour of at least ``MIN_AREA`` pixels inside the stabilised valid area is a detection. Writes
``detections.csv``: frame, x, y, w, h (bounding box), cx, cy (its centre), area.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from examples.video_tracking.common import (
    DETECTIONS,
    STABILISE_INFO,
    STABILISED_VIDEO,
    Frame,
    Progress,
    StageError,
    env_int,
    need,
    read_frames,
    read_json,
    run_stage,
    say,
    video_info,
    write_csv,
)

Mask = npt.NDArray[np.uint8]
Detection = tuple[int, int, int, int, float, float, float]  # x, y, w, h, cx, cy, area


def median_background(samples: list[Frame]) -> Frame:
    """Per-pixel median of the sample frames."""
    return np.median(np.stack(samples), axis=0).astype(np.uint8)


def foreground(frame: Frame, background: Frame, threshold: int, valid: tuple[int, int, int, int]) -> Mask:
    """Binary foreground mask, cleaned, zero outside the valid area (stabilisation fills the border with black)."""
    diff = cv2.absdiff(frame, background).max(axis=2)
    mask = np.where(diff > threshold, 255, 0).astype(np.uint8)
    x0, y0, x1, y1 = valid
    mask[:y0], mask[y1:], mask[:, :x0], mask[:, x1:] = 0, 0, 0, 0
    opened = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    return np.asarray(cv2.morphologyEx(opened, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8)), dtype=np.uint8)


def blobs(mask: Mask, min_area: int) -> list[Detection]:
    """Bounding boxes of the external contours with at least ``min_area`` pixels, centre in pixel-index terms.

    >>> m = np.zeros((20, 30), np.uint8); m[5:9, 10:20] = 255
    >>> blobs(m, 10)
    [(10, 5, 10, 4, 14.5, 6.5, 40.0)]
    """
    found: list[Detection] = []
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    for c in contours:
        x, y, w, h = cv2.boundingRect(c)
        area = float(cv2.countNonZero(mask[y : y + h, x : x + w]))
        if area >= min_area:
            found.append((x, y, w, h, x + (w - 1) / 2, y + (h - 1) / 2, area))
    return sorted(found)


def main() -> None:
    video = need(STABILISED_VIDEO, "stabilise")
    valid_raw = read_json(need(STABILISE_INFO, "stabilise"))["valid_area"]
    valid = (int(valid_raw[0]), int(valid_raw[1]), int(valid_raw[2]), int(valid_raw[3]))
    min_area = env_int("MIN_AREA", 60, minimum=1)
    threshold = env_int("DIFF_THRESHOLD", 35, minimum=1)
    n_samples = env_int("BACKGROUND_SAMPLES", 31, minimum=3)
    info = video_info(video)
    step = max(1, info.frames // n_samples)
    samples = [f for i, f in enumerate(read_frames(video)) if i % step == 0]
    if len(samples) < 3:
        raise StageError(f"{STABILISED_VIDEO} has too few frames ({info.frames}) for a background model")
    background = median_background(samples)
    say(f"background from {len(samples)} frames; threshold {threshold}, min area {min_area}")
    progress = Progress(info.frames)
    rows: list[tuple[int, int, int, int, int, float, float, float]] = []
    for i, frame in enumerate(read_frames(video)):
        rows.extend((i, *d) for d in blobs(foreground(frame, background, threshold, valid), min_area))
        progress.tick(i + 1)
    write_csv(DETECTIONS, ["frame", "x", "y", "w", "h", "cx", "cy", "area"], rows)
    say(f"{len(rows)} detections in {info.frames} frames ({len(rows) / max(info.frames, 1):.2f} per frame)")


if __name__ == "__main__":
    run_stage(main)
