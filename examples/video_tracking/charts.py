"""Stage ``charts``: ``trajectories.png`` (every trajectory over the stabilised first frame) and ``counts.png``
(vehicles per frame, with the ground truth's count when the workspace has one). Matplotlib, Agg backend.
"""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: stages run headless

import cv2
import matplotlib.pyplot as plt

from examples.video_tracking.common import (
    GROUND_TRUTH,
    STABILISE_INFO,
    STABILISED_VIDEO,
    TRAJECTORIES,
    Progress,
    need,
    read_csv,
    read_frames,
    read_json,
    run_stage,
    say,
)
from opsflow.files import atomic_write_bytes


def counts_per_frame(frames: list[int], n_frames: int) -> list[int]:
    """How many rows fall on each frame 0..n_frames-1.

    >>> counts_per_frame([0, 0, 2], 4)
    [2, 0, 1, 0]
    """
    c = Counter(frames)
    return [c.get(f, 0) for f in range(n_frames)]


def save(fig: plt.Figure, name: str) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(Path.cwd() / name, buf.getvalue())


def main() -> None:
    rows = read_csv(need(TRAJECTORIES, "trajectories"))
    n_frames = int(read_json(need(STABILISE_INFO, "stabilise"))["frames"])
    first = next(read_frames(need(STABILISED_VIDEO, "stabilise")), None)
    tracks: dict[int, list[tuple[float, float]]] = {}
    for r in rows:
        tracks.setdefault(int(r["track_id"]), []).append((float(r["x"]), float(r["y"])))

    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    if first is not None:
        ax.imshow(cv2.cvtColor(first, cv2.COLOR_BGR2RGB), alpha=0.6)
    for tid, pts in sorted(tracks.items()):
        line = ax.plot([p[0] for p in pts], [p[1] for p in pts], linewidth=2, label=f"track {tid}")[0]
        ax.annotate(str(tid), pts[0], color=line.get_color(), fontsize=9, fontweight="bold")
    ax.set_title(f"{len(tracks)} trajectories (stabilised road coordinates, px)")
    if tracks:
        ax.legend(fontsize=7, loc="upper right")
    save(fig, "trajectories.png")

    progress = Progress(n_frames)
    counts = counts_per_frame([int(r["frame"]) for r in rows], n_frames)
    for f in range(n_frames):
        progress.tick(f + 1)
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    ax.step(range(n_frames), counts, where="mid", label="tracked")
    truth_file = Path.cwd() / GROUND_TRUTH
    if truth_file.is_file():
        truth = counts_per_frame([int(r["frame"]) for r in read_csv(truth_file)], n_frames)
        ax.step(range(n_frames), truth, where="mid", linestyle="--", label="ground truth (fully visible)")
    ax.set_xlabel("frame")
    ax.set_ylabel("vehicles")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, "counts.png")
    say(f"wrote trajectories.png and counts.png ({len(tracks)} trajectories, at most {max(counts, default=0)} at once)")


if __name__ == "__main__":
    run_stage(main)
