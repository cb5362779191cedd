"""What a pipeline run does next: the stage to start from, and what a decision in the approval form means. Pure.

Seed 002, req. 1410-1450: start any stage, continue automatically or pause after it, redo a stage with changed
environment variables, go to another stage, stop. The form's answer (:class:`Decision`) is validated twice: by
the Prefect server against the form's JSON schema (unknown actions and stages are refused there, the run stays
waiting), and here for what a schema cannot say (``goto`` needs a stage).

Example:
    >>> from stage_pipeline.definition import parse_definition
    >>> d = parse_definition("name: p\\nstages:\\n  - {name: a, command: [x]}\\n  - {name: b, command: [y]}\\n")
    >>> next_step(d, "a", "after", Decision(action="continue"))
    Step(stage='b', env={}, stop=False, problem=None, approved=False)
    >>> next_step(d, "b", "after", Decision(action="redo", env={"K": "1"}))
    Step(stage='b', env={'K': '1'}, stop=False, problem=None, approved=False)
"""

from __future__ import annotations

import hashlib
import re
from typing import Literal

from pydantic import BaseModel, Field

from stage_pipeline.definition import PipelineDefinition, StageDefinition
from stage_pipeline.models import AttemptOutcome, Project, StageState

Action = Literal["continue", "redo", "goto", "stop"]
When = Literal["before", "after"]


class Decision(BaseModel):
    """An answer to an approval form (the fields of the form shown in the Prefect UI)."""

    action: Action = Field(
        "continue",
        description="continue: go on (before: run this stage; after: the next stage); redo: run this stage "
        "(again) with the env below; goto: go to goto_stage; stop: pause the project here",
    )
    env: dict[str, str] = Field(
        default_factory=dict, description="redo / goto: environment variables changed for the stage that runs next"
    )
    goto_stage: str | None = Field(None, description="goto: the stage to go to")
    comment: str = Field("", description="kept in the project's history with the attempt")


class Step(BaseModel):
    """Where to go: run ``stage`` with ``env`` overrides; or stop (pause); ``problem`` when the answer is invalid."""

    stage: str | None
    env: dict[str, str] = Field(default_factory=dict)
    stop: bool = False
    problem: str | None = None
    approved: bool = Field(False, description="a decision before this stage was taken already")


def first_stage(project: Project) -> str | None:
    """Where a run without a chosen stage starts: the current stage if it did not succeed, else the one after.

    >>> from stage_pipeline.definition import parse_definition
    >>> from datetime import datetime, timezone
    >>> d = parse_definition("name: p\\nstages:\\n  - {name: a, command: [x]}\\n")
    >>> first_stage(Project.new("x", d, "", datetime.now(timezone.utc)))
    'a'
    """
    defn = project.definition
    current = project.current_stage
    if current is None or current not in project.stages:
        return defn.stage_names[0]
    if project.stages[current] == StageState.SUCCEEDED:
        return defn.next_stage(current)
    return current


def next_step(definition: PipelineDefinition, stage: str, when: When, decision: Decision) -> Step:
    """The step a decision taken ``when`` (before/after running ``stage``) leads to."""
    if decision.action == "stop":
        return Step(stage=None, stop=True)
    if decision.action == "goto":
        if not decision.goto_stage:
            return Step(stage=None, problem="goto needs goto_stage")
        if decision.goto_stage not in definition.stage_names:
            return Step(stage=None, problem=f"no stage {decision.goto_stage!r} in {definition.name}")
        return Step(stage=decision.goto_stage, env=dict(decision.env))
    if decision.action == "redo":
        return Step(stage=stage, env=dict(decision.env))
    # continue
    if when == "before":
        return Step(stage=stage, env=dict(decision.env))
    return Step(stage=definition.next_stage(stage), env={})


def decision_key(stage: str, attempt: int, when: When, retry: int = 0) -> str:
    """The suspend key of one decision point (unique per stage attempt; a refused answer asks again).

    Prefect's input keys allow only lowercase letters, digits and dashes, and stage names may hold underscores:
    the name is made safe and a short hash of the real name keeps ``a_b`` and ``a-b`` apart.

    >>> decision_key("detect", 2, "after")
    'detect-2b6645-2-after'
    >>> decision_key("reference_points", 1, "before", retry=1)
    'reference-points-ecea47-1-before-1'
    """
    safe = re.sub(r"[^a-z0-9-]", "-", stage.lower())
    digest = hashlib.sha1(stage.encode()).hexdigest()[:6]
    return f"{safe}-{digest}-{attempt}-{when}" + (f"-{retry}" if retry else "")


def no_fitting_node(stage: StageDefinition) -> str:
    """Why a stage cannot start: no worker of its pool is online (the project pauses rather than wait forever).

    >>> from stage_pipeline.definition import parse_definition
    >>> d = parse_definition("name: p\\nstages:\\n  - {name: a, command: [x], resources: {gpus: 1}}\\n")
    >>> no_fitting_node(d.stages[0])
    "no fitting node: no worker of work pool 'gpu' is online for a (1 GPU(s), 1 CPU(s))"
    """
    return (
        f"no fitting node: no worker of work pool {stage.pool!r} is online for {stage.name} "
        f"({stage.resources.gpus} GPU(s), {stage.resources.cpus:g} CPU(s))"
    )


def attempt_problem(project: Project, stage: str) -> str | None:
    """Why the project pauses after its run of ``stage`` (None: the latest attempt succeeded; req. 1440: a
    failed, aborted or lost stage pauses the pipeline).

    >>> from datetime import datetime, timezone
    >>> from stage_pipeline.definition import parse_definition
    >>> t = datetime(2024, 1, 1, tzinfo=timezone.utc)
    >>> p = Project.new("x", parse_definition("name: p\\nstages:\\n  - {name: a, command: [x]}\\n"), "", t)
    >>> attempt_problem(p, "a")
    'a attempt ?: did not start'
    >>> _ = p.begin_attempt("a", {}, t); _ = p.end_attempt("a", 1, AttemptOutcome.FAILED, 3, [], t)
    >>> attempt_problem(p, "a")
    'a attempt 1: failed'
    """
    attempts = project.attempts_of(stage)
    last = attempts[-1] if attempts else None
    if last is not None and last.outcome == AttemptOutcome.SUCCEEDED:
        return None
    what = last.outcome.value if last and last.outcome else "did not start"
    return f"{stage} attempt {last.attempt if last else '?'}: {what}"


def too_little_disk(stage: str, free_bytes: int, min_free_bytes: int) -> str | None:
    """Seed 002: free disk space is checked before a stage starts; with too little the project pauses with the
    reason instead of failing mid-write (None: enough).

    >>> too_little_disk("detect", 300 * 2**20, 2**30)
    'too little disk: 300 MiB free in the store, detect starts with at least 1024 MiB'
    >>> too_little_disk("detect", 2**31, 2**30) is None
    True
    """
    if free_bytes >= min_free_bytes:
        return None
    return (
        f"too little disk: {free_bytes // 2**20} MiB free in the store, {stage} starts with at least "
        f"{min_free_bytes // 2**20} MiB"
    )
