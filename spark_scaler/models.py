"""The data the Spark auto-scaler passes between its parts (pure pydantic models, no I/O).

Monitor (adapters) → ``Observation`` → Analyse/Plan (pure core, with ``ScalerState``) → ``Decision`` → Execute
(worker backend). The active worker count always comes from the Spark master, never from our own bookkeeping.

Example:
    >>> Observation(at=0.0, active_workers=2, metrics={"cpu": 0.9}).metrics["cpu"]
    0.9
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field


class WorkerRef(BaseModel):
    """One Spark worker as the backend and the master know it."""

    id: str = Field(description="Backend id: a process key, a container name, a swarm task")
    host: str = Field(description="Host/address the worker registered with at the master (e.g. 127.0.0.3)")
    gpu: str | None = Field(default=None, description="UUID of the GPU this worker is pinned to, if any")
    started_at: float = Field(default=0.0, description="Unix time the backend started it (warm-up)")


class Observation(BaseModel):
    """One Monitor step: metric values and the cluster's demand, all read in one tick."""

    at: float
    active_workers: int = Field(description="ALIVE workers at the Spark master")
    metrics: dict[str, float | None] = Field(
        default_factory=dict, description="metric name → utilization; None when the source returned nothing"
    )
    running_apps: int = 0
    waiting_apps: int = 0
    cores_wanted: int = Field(default=0, description="Cores the running and waiting apps still ask for")
    cores_free: int = 0
    workers: list[WorkerRef] = Field(default_factory=list, description="Workers the backend runs")
    problems: list[str] = Field(default_factory=list, description="Why some data is missing (source down, ...)")


class Action(StrEnum):
    HOLD = "hold"
    SCALE_OUT = "scale_out"
    SCALE_IN = "scale_in"


class Decision(BaseModel):
    """What one tick decided, and why (shown in the UI's table of recent decisions)."""

    at: float
    action: Action
    current: int
    target: int
    reason: str
    heat: dict[str, int] = Field(default_factory=dict)


class ScalerState(BaseModel):
    """What survives between ticks (persisted): per-metric heat, the last action time, recent targets."""

    heat: dict[str, int] = Field(default_factory=dict)
    last_action_at: float | None = None
    #: (time, desired count) of recent ticks, for the scale-in stabilisation window.
    recent_targets: list[tuple[float, int]] = Field(default_factory=list)
    decisions: list[Decision] = Field(default_factory=list, description="Most recent decisions, newest last")
