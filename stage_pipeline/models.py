"""Project state: stage states, the history of every stage attempt, pause/abort requests. Pure (times passed in).

Seed 002, req. 1460: a stage is RUNNING, PAUSED, SUCCEEDED or FAILED (PENDING: never run); req. 1440: an aborted
stage is failed and the pipeline pauses. A redo is a new attempt; the history never loses one.

Example:
    >>> from datetime import datetime, timezone
    >>> from stage_pipeline.definition import parse_definition
    >>> d = parse_definition("name: p\\nstages:\\n  - {name: a, command: [x]}\\n  - {name: b, command: [y]}\\n")
    >>> t = datetime(2024, 1, 1, tzinfo=timezone.utc)
    >>> p = Project.new("demo", d, "", t)
    >>> a = p.begin_attempt("a", {"K": "1"}, t)
    >>> (a.attempt, p.stages["a"].value, p.status.value)
    (1, 'RUNNING', 'RUNNING')
    >>> _ = p.end_attempt("a", 1, AttemptOutcome.SUCCEEDED, 0, [], t)
    >>> p.stages["a"].value, p.input_attempt("b").stage
    ('SUCCEEDED', 'a')
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

from stage_pipeline.definition import PipelineDefinition


class StageState(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"  # waiting for a decision (approval) before or after it runs
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class ProjectStatus(StrEnum):
    IDLE = "IDLE"  # created, never started
    RUNNING = "RUNNING"
    WAITING = "WAITING"  # waiting for an approval in the Prefect UI
    PAUSED = "PAUSED"  # stopped between stages (request, failure, abort, no fitting node); resumable
    FINISHED = "FINISHED"  # the last stage succeeded


class AttemptOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # non-zero exit code
    ABORTED = "aborted"  # req. 1440: user abort
    TIMED_OUT = "timed_out"
    LOST = "lost"  # its worker died mid-stage (found by the flow, recorded by recover_stale)


class StageAttempt(BaseModel):
    """One run of one stage. ``workspace`` is relative to the project directory (a rename moves the directory)."""

    stage: str
    attempt: int = Field(ge=1)
    env: dict[str, str] = Field(default_factory=dict)
    started: datetime
    ended: datetime | None = None
    outcome: AttemptOutcome | None = None
    exit_code: int | None = None
    workspace: str
    errors: list[str] = Field(default_factory=list, description="the first error lines of the log")
    error_count: int = 0
    comment: str = ""
    run_id: str | None = Field(None, description="the Prefect flow run of this attempt, when known")

    @property
    def running(self) -> bool:
        return self.ended is None


class PendingDecision(BaseModel):
    """A decision the project waits for: the pipeline run is suspended with a form in the Prefect UI."""

    key: str = Field(description="the suspend key (one per decision point, so a resumed run finds its answer)")
    stage: str
    when: Literal["before", "after"]
    attempt: int = Field(ge=1, description="after: the attempt decided on; before: the attempt about to start")
    retry: int = Field(0, ge=0, description="how many answers to this decision point were refused")
    run_id: str = Field(description="the suspended pipeline-run flow run")
    asked: datetime


class Project(BaseModel):
    """A project: its own copy of the definition (text and model), stage states and the attempt history."""

    name: str
    tags: list[str] = Field(default_factory=list)
    definition: PipelineDefinition
    definition_text: str = ""
    stages: dict[str, StageState] = Field(default_factory=dict)
    history: list[StageAttempt] = Field(default_factory=list)
    pause_requested: bool = False
    abort_requested: bool = False
    status: ProjectStatus = ProjectStatus.IDLE
    reason: str = ""
    current_stage: str | None = None
    waiting: PendingDecision | None = None
    run_id: str | None = Field(None, description="the pipeline-run flow run driving the project, when known")
    created: datetime
    updated: datetime

    @classmethod
    def new(cls, name: str, definition: PipelineDefinition, definition_text: str, now: datetime) -> Project:
        return cls(
            name=name,
            definition=definition,
            definition_text=definition_text,
            stages={stage: StageState.PENDING for stage in definition.stage_names},
            created=now,
            updated=now,
        )

    # --- queries --------------------------------------------------------------------------------------------

    def attempts_of(self, stage: str) -> list[StageAttempt]:
        return [a for a in self.history if a.stage == stage]

    def attempt(self, stage: str, number: int) -> StageAttempt:
        for a in self.history:
            if a.stage == stage and a.attempt == number:
                return a
        raise KeyError(f"project {self.name!r} has no attempt {number} of stage {stage!r}")

    def running_attempts(self) -> list[StageAttempt]:
        return [a for a in self.history if a.running]

    def last_success(self, stage: str) -> StageAttempt | None:
        done = [a for a in self.attempts_of(stage) if a.outcome == AttemptOutcome.SUCCEEDED]
        return done[-1] if done else None

    def input_attempt(self, stage: str) -> StageAttempt | None:
        """The attempt whose output a new attempt of ``stage`` starts from: the latest success of the nearest
        earlier stage (definition order) that has one; None for the first stage."""
        names = self.definition.stage_names
        for earlier in reversed(names[: names.index(self.definition.stage(stage).name)]):
            found = self.last_success(earlier)
            if found is not None:
                return found
        return None

    # --- changes (the store applies them under the project's lock) ------------------------------------------

    def set_status(self, status: ProjectStatus, reason: str, now: datetime) -> None:
        self.status, self.reason, self.updated = status, reason, now

    def begin_attempt(
        self, stage: str, env: dict[str, str], now: datetime, run_id: str | None = None
    ) -> StageAttempt:
        """Record a new attempt of ``stage`` (number = earlier attempts + 1); the stage and project are RUNNING.

        Idempotent per ``run_id``: a retried call for a run that already has an attempt returns that attempt.
        """
        name = self.definition.stage(stage).name
        if run_id is not None:
            for a in self.attempts_of(name):
                if a.run_id == run_id:
                    return a
        busy = [a for a in self.running_attempts() if a.stage == name]
        if busy:
            raise ValueError(f"stage {name!r} of project {self.name!r} is already running (attempt {busy[0].attempt})")
        number = len(self.attempts_of(name)) + 1
        attempt = StageAttempt(
            stage=name, attempt=number, env=dict(env), started=now, workspace=f"stages/{name}/{number}", run_id=run_id
        )
        self.history.append(attempt)
        self.stages[name] = StageState.RUNNING
        self.current_stage = name
        self.set_status(ProjectStatus.RUNNING, f"running {name} (attempt {number})", now)
        return attempt

    def end_attempt(
        self,
        stage: str,
        number: int,
        outcome: AttemptOutcome,
        exit_code: int | None,
        errors: list[str],
        now: datetime,
        error_count: int | None = None,
        comment: str = "",
    ) -> StageAttempt:
        """Close an attempt: the stage becomes SUCCEEDED or FAILED. An attempt already closed is left as it is."""
        attempt = self.attempt(stage, number)
        if not attempt.running:
            return attempt
        attempt.ended, attempt.outcome, attempt.exit_code = now, outcome, exit_code
        attempt.errors = list(errors)
        attempt.error_count = len(errors) if error_count is None else error_count
        attempt.comment = comment or attempt.comment
        if stage in self.stages:
            ok = outcome == AttemptOutcome.SUCCEEDED
            self.stages[stage] = StageState.SUCCEEDED if ok else StageState.FAILED
        if outcome == AttemptOutcome.ABORTED:
            self.abort_requested = False
        self.updated = now
        return attempt

    def set_definition(self, definition: PipelineDefinition, definition_text: str, now: datetime) -> None:
        """Req. 1220: switch to another definition; states of stages kept by name, the history kept whole."""
        running = self.running_attempts()
        if running:
            raise ValueError(f"project {self.name!r} has a running stage ({running[0].stage}); abort it first")
        self.definition, self.definition_text = definition, definition_text
        self.stages = {s: self.stages.get(s, StageState.PENDING) for s in definition.stage_names}
        if self.current_stage not in self.stages:
            self.current_stage = None
        self.updated = now

    def mark_lost(self, reason: str, now: datetime) -> list[StageAttempt]:
        """Close every running attempt as LOST (its worker died); the project pauses, resumable (req. 1440)."""
        lost = self.running_attempts()
        for a in lost:
            self.end_attempt(a.stage, a.attempt, AttemptOutcome.LOST, None, a.errors, now, a.error_count, reason)
        if lost:
            stages = ", ".join(f"{a.stage} (attempt {a.attempt})" for a in lost)
            self.set_status(ProjectStatus.PAUSED, f"lost {stages}: {reason}", now)
        return lost
