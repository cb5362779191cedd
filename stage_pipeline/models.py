"""Project state: stage states, the history of every stage attempt, pause/abort requests. Pure (times passed in).

Seed 002, req. 1460: a stage is RUNNING, PAUSED, SUCCEEDED or FAILED (PENDING: never run); req. 1440: an aborted
stage is failed and the pipeline pauses. A redo is a new attempt; the history never loses one. A running attempt
touches a heartbeat; one silent for :data:`STALE_AFTER_S` is lost (:func:`attempt_is_lost`): its worker died.

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

import html
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

from opsflow.errors import NotFoundError, OpsflowError
from opsflow.tables import TableView, html_table, markdown_table
from stage_pipeline.definition import PipelineDefinition

#: A running attempt touches its heartbeat every few seconds; one silent this long is taken as lost (worker died).
STALE_AFTER_S = 30.0


class ProjectStateError(OpsflowError, ValueError):
    """The project is not in a state that allows this (a stage is running, nothing waits for a decision, ...)."""


def attempt_is_lost(age_s: float | None, stale_after_s: float = STALE_AFTER_S) -> bool:
    """Whether a running attempt whose heartbeat is ``age_s`` seconds old has lost its worker (None: no heartbeat).

    The stage runner touches the heartbeat every 2 s, so 30 s of silence means its process is gone; a younger
    heartbeat means the attempt still runs and nobody else may drive the project.

    >>> attempt_is_lost(3.0), attempt_is_lost(31.0), attempt_is_lost(None)
    (False, True, True)
    """
    return age_s is None or age_s >= stale_after_s


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


class Liveness(BaseModel):
    """A running attempt as its heartbeat tells it: alive, or lost (its worker died)."""

    stage: str
    attempt: int
    run_id: str | None = None
    age_s: float | None = Field(description="seconds since its last heartbeat; None: it never wrote one")
    lost: bool

    @property
    def heartbeat(self) -> str:
        """The heartbeat's age in words, for messages."""
        return "no heartbeat" if self.age_s is None else f"heartbeat {self.age_s:.0f} s ago"


class PendingDecision(TableView):
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
    run_start: str | None = Field(None, description="the stage that run started at (its pause_after counts from it)")
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
        raise NotFoundError(f"project {self.name!r} has no attempt {number} of stage {stage!r}")

    def chosen_attempt(self, stage: str | None = None, number: int | None = None) -> StageAttempt:
        """The attempt ``number`` of ``stage``; by default the latest attempt (of ``stage``, or of any stage)."""
        runs = [a for a in self.history if stage is None or a.stage == stage]
        if number is not None:
            runs = [a for a in runs if a.attempt == number]
        if not runs:
            what = f"attempt {number}" if number is not None else "attempt"
            where = f" of stage {stage!r}" if stage is not None else ""
            raise NotFoundError(f"project {self.name!r} has no {what}{where}")
        return runs[-1]

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

    def liveness(
        self, beats: Mapping[tuple[str, int], datetime | None], now: datetime, stale_after_s: float = STALE_AFTER_S
    ) -> list[Liveness]:
        """Every running attempt, alive or lost, from its last heartbeat ``beats[(stage, attempt)]`` (None or
        absent: none was written) and the time ``now`` (:func:`attempt_is_lost`)."""
        found = []
        for a in self.running_attempts():
            beat = beats.get((a.stage, a.attempt))
            age = None if beat is None else max(0.0, (now - beat).total_seconds())
            lost = attempt_is_lost(age, stale_after_s)
            found.append(Liveness(stage=a.stage, attempt=a.attempt, run_id=a.run_id, age_s=age, lost=lost))
        return found

    def silent_attempts(
        self, beats: Mapping[tuple[str, int], datetime | None], now: datetime, stale_after_s: float = STALE_AFTER_S
    ) -> list[Liveness]:
        """The running attempts a watchdog declares lost while their run still looks alive in Prefect: a heartbeat
        ``stale_after_s`` old, or none yet that long after the attempt began (its runner prepares the workspace
        before the first beat, so a missing beat alone is no verdict).

        >>> from datetime import datetime, timedelta, timezone
        >>> from stage_pipeline.definition import parse_definition
        >>> t = datetime(2024, 1, 1, tzinfo=timezone.utc)
        >>> p = Project.new("demo", parse_definition("name: p\\nstages:\\n  - {name: a, command: [x]}\\n"), "", t)
        >>> _ = p.begin_attempt("a", {}, t)
        >>> p.silent_attempts({}, t + timedelta(seconds=5)), p.silent_attempts({("a", 1): t}, t + timedelta(seconds=9))
        ([], [])
        >>> [x.heartbeat for x in p.silent_attempts({("a", 1): t}, t + timedelta(seconds=40))]
        ['heartbeat 40 s ago']
        """
        began = {(a.stage, a.attempt): a.started for a in self.running_attempts()}
        return [
            x
            for x in self.liveness(beats, now, stale_after_s)
            if x.lost and (x.age_s is not None or (now - began[(x.stage, x.attempt)]).total_seconds() >= stale_after_s)
        ]

    def lost_attempts(
        self, beats: Mapping[tuple[str, int], datetime | None], now: datetime, stale_after_s: float = STALE_AFTER_S
    ) -> list[Liveness]:
        """The running attempts whose worker is gone; raises :class:`ProjectStateError` when one is still alive
        (a run may drive the project only when no attempt of it still runs).

        >>> from datetime import datetime, timedelta, timezone
        >>> from stage_pipeline.definition import parse_definition
        >>> t = datetime(2024, 1, 1, tzinfo=timezone.utc)
        >>> p = Project.new("demo", parse_definition("name: p\\nstages:\\n  - {name: a, command: [x]}\\n"), "", t)
        >>> _ = p.begin_attempt("a", {}, t)
        >>> [x.heartbeat for x in p.lost_attempts({("a", 1): t}, t + timedelta(seconds=45))]
        ['heartbeat 45 s ago']
        >>> p.lost_attempts({("a", 1): t}, t + timedelta(seconds=5))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        stage_pipeline.models.ProjectStateError: demo: stage a attempt 1 is still running (heartbeat 5 s ago); ...
        """
        checked = self.liveness(beats, now, stale_after_s)
        for alive in (x for x in checked if not x.lost):
            raise ProjectStateError(
                f"{self.name}: stage {alive.stage} attempt {alive.attempt} is still running ({alive.heartbeat}); "
                "pause or abort it first"
            )
        return checked

    def stages_done(self) -> int:
        """How many stages have succeeded (a progress bar's count)."""
        return sum(1 for state in self.stages.values() if state == StageState.SUCCEEDED)

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
            raise ProjectStateError(
                f"stage {name!r} of project {self.name!r} is already running (attempt {busy[0].attempt})"
            )
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

    def check_at_rest(self, action: str) -> None:
        """Req. 1230/1250 with a run in flight: refused, since the run finds its project by name.

        >>> from datetime import UTC, datetime
        >>> from stage_pipeline.definition import parse_definition
        >>> d = parse_definition("name: d\\nstages:\\n  - {name: a, command: [x]}\\n")
        >>> p = Project.new("p", d, "", datetime.now(UTC))
        >>> p.status = ProjectStatus.WAITING
        >>> p.check_at_rest("rename")
        Traceback (most recent call last):
        ...
        stage_pipeline.models.ProjectStateError: cannot rename project 'p' while it is WAITING: ...
        """
        if self.status in (ProjectStatus.RUNNING, ProjectStatus.WAITING) or self.running_attempts():
            raise ProjectStateError(
                f"cannot {action} project {self.name!r} while it is {self.status.value}: pause or abort it (or "
                "stop its form) first; --force if its run is gone"
            )

    def set_definition(self, definition: PipelineDefinition, definition_text: str, now: datetime) -> None:
        """Req. 1220: switch to another definition; states of stages kept by name, the history kept whole."""
        running = self.running_attempts()
        if running:
            raise ProjectStateError(f"project {self.name!r} has a running stage ({running[0].stage}); abort it first")
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

    def take_over(self, run_id: str, start: str | None, now: datetime) -> None:
        """Make ``run_id`` the project's driver: close lost attempts (call after :meth:`lost_attempts` said none
        is alive), forget a decision whose run no longer waits, and mark the project RUNNING in one change, so
        nobody sees it PAUSED in between."""
        if self.running_attempts():
            self.mark_lost("its worker stopped during the stage (no heartbeat)", now)
        if self.waiting is not None and self.waiting.run_id != run_id:
            self.waiting = None  # its run is no longer suspended (cancelled, crashed): nobody will answer it
        self.run_id = run_id
        self.run_start = start
        self.set_status(ProjectStatus.RUNNING, f"run {run_id} started at {start}", now)

    def pause(self, reason: str, now: datetime, before: str | None = None) -> None:
        """Pause (a request honoured, a failure, a stop); ``before``: the stage it stopped in front of, which is
        then PAUSED (req. 1460)."""
        self.pause_requested = False
        if before is not None and self.stages.get(before) != StageState.RUNNING:
            self.stages[before] = StageState.PAUSED
        self.set_status(ProjectStatus.PAUSED, reason, now)

    def ask(self, pending: PendingDecision, now: datetime) -> None:
        """Wait for a decision (the run suspends with its form); a stage waiting for its go is PAUSED."""
        self.waiting = pending
        if pending.when == "before":
            self.stages[pending.stage] = StageState.PAUSED
        self.set_status(
            ProjectStatus.WAITING, f"waiting for a decision {pending.when} {pending.stage} in the Prefect UI", now
        )

    def answered(self, stage: str, comment: str, reason: str, now: datetime) -> None:
        """The decision was given: nothing waits any more; its comment joins the stage's latest attempt."""
        self.waiting = None
        done = self.attempts_of(stage)
        if comment and done:
            done[-1].comment = "; ".join(x for x in (done[-1].comment, comment) if x)
        self.set_status(ProjectStatus.RUNNING, reason, now)

    # --- tables (a notebook shows a project as its stages and its attempts) ---------------------------------

    def attempt_table(self) -> tuple[list[str], list[list[str]]]:
        """The history as columns and rows of text (the CLI's and the notebook's table)."""
        columns = ["stage", "attempt", "outcome", "exit", "started", "ended", "errors", "env", "comment"]
        rows = [
            [
                a.stage, str(a.attempt), a.outcome.value if a.outcome else "running",
                "" if a.exit_code is None else str(a.exit_code), a.started.strftime("%H:%M:%S"),
                a.ended.strftime("%H:%M:%S") if a.ended else "", str(a.error_count),
                " ".join(f"{k}={v}" for k, v in a.env.items()), a.comment,
            ]
            for a in self.history
        ]  # fmt: skip
        return columns, rows

    def headline(self) -> str:
        """One line: name, pipeline, status, reason, tags."""
        tags = f"; tags {', '.join(self.tags)}" if self.tags else ""
        return f"{self.name} ({self.definition.name}): {self.status.value} {self.reason}".rstrip() + tags

    def _repr_html_(self) -> str:
        stages = html_table(list(self.stages), [[state.value for state in self.stages.values()]])
        return f"<p><b>{html.escape(self.headline())}</b></p>{stages}{html_table(*self.attempt_table())}"

    def _repr_markdown_(self) -> str:
        stages = markdown_table(list(self.stages), [[state.value for state in self.stages.values()]])
        return f"**{self.headline()}**\n\n{stages}\n\n{markdown_table(*self.attempt_table())}"
