"""`pipeline-run`: a project run. Each stage is a child flow run of `stage-run/<pool>`; decisions are forms.

A stage with ``approval: before|after`` suspends this run with a form (continue / redo with env / go to a stage /
stop, with a comment; :func:`~stage_pipeline.prefect_api.suspend_for_input`). An answer within the store's
``answer_grace_s`` continues the run in its process; after that the process exits. A suspended run survives a
server restart; when the form is submitted later the run starts again from the top, finds in the project store
which decision it was waiting for and reads the answer under the same suspend key. The project's state lives in
the store, so every re-entry continues where the project is.

Between stages the run honours a pause request (`opsflow project pause`); a stage whose pool has no online
worker pauses the project with "no fitting node" instead of waiting forever; a failed, aborted or lost stage
pauses it too. `opsflow project resume` starts a new run from where it stopped (or a chosen stage).
"""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime
from typing import Literal, cast

from prefect import flow, get_run_logger
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.input import RunInput
from prefect.runtime import flow_run
from pydantic import Field, create_model

from blocks import PipelineStore, load_block
from opsflow.adapters.prefect_pools import online_workers
from stage_pipeline.definition import PipelineDefinition
from stage_pipeline.models import AttemptOutcome, PendingDecision, Project, ProjectStatus
from stage_pipeline.prefect_api import announce, flow_run_state, mark_crashed, stage_deployment, suspend_for_input
from stage_pipeline.steps import (
    Decision,
    Step,
    When,
    attempt_problem,
    decision_key,
    next_step,
    no_fitting_node,
    too_little_disk,
)
from stage_pipeline.store import ProjectStore

#: How often a project run looks at its stage's attempt in the store, and at its run and heartbeat in Prefect.
WATCH_S = 0.1
STATE_EVERY_S = 1.0
FINAL_STATES = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})


class DecisionForm(RunInput, Decision):
    """The approval form (a Prefect RunInput with the fields of :class:`Decision`)."""


def decision_form(definition: PipelineDefinition, stage: str, when: When, description: str) -> type[RunInput]:
    """The form for one decision: ``goto_stage`` one of the definition's stages, so the server refuses others."""
    names = tuple(definition.stage_names)
    stage_type = Literal[names]  # type: ignore[valid-type]
    model = create_model(
        "StageDecision",
        __base__=DecisionForm,
        # A choice of this pipeline's stages (a select in the UI), preset to the stage at hand.
        goto_stage=(stage_type, Field(stage, description="goto: the stage to go to")),
    )
    text = f"**{definition.name}**: {'before' if when == 'before' else 'after'} stage **{stage}**"
    return model.with_initial_data(description=f"{text}\n\n{description}".strip())


def _watch_stage(store: ProjectStore, project: str, stage: str, attempts_before: int, run_id: str) -> str:
    """Wait for the stage's attempt to end; how it ended, in words.

    The store says first: the stage records its attempt's end before its run writes the artifacts and its final
    state, so the next stage starts without waiting for that (issue 15). Every :data:`STATE_EVERY_S` the run's
    state in Prefect tells a run that ended without recording its attempt, and a watchdog reads the heartbeats of
    the project's running attempts: one gone silent while its run still looks alive in Prefect means its worker
    died with it (nobody is left to report the crash), so the run is marked Crashed now rather than at the next
    resume.
    """
    next_state_check = 0.0
    while True:
        p = store.get(project)
        attempts = p.attempts_of(stage)
        if len(attempts) > attempts_before and attempts[-1].outcome is not None:
            return f"{stage} attempt {attempts[-1].attempt} ended {attempts[-1].outcome.value}"
        if time.monotonic() < next_state_check:
            time.sleep(WATCH_S)
            continue
        next_state_check = time.monotonic() + STATE_EVERY_S
        state = flow_run_state(run_id)
        if state in FINAL_STATES:
            return f"stage-run ended {state} mid-stage"
        silent = p.silent_attempts(store.heartbeats(p), datetime.now(UTC))
        if silent:
            why = ", ".join(x.heartbeat for x in silent)
            for gone in silent:
                mark_crashed(gone.run_id or run_id, f"{gone.heartbeat}: its worker is gone")
            get_run_logger().warning("%s: the stage's worker is gone (%s)", project, why)
            return f"its worker is gone ({why})"
        time.sleep(WATCH_S)


def _pause(store: ProjectStore, project: str, reason: str, before: str | None = None) -> str:
    """Pause the project; ``before``: the stage it stopped in front of (req. 1460)."""
    get_run_logger().info("%s paused: %s", project, reason)
    store.pause(project, reason, before)
    return f"PAUSED: {reason}"


def _claim(store: ProjectStore, project: str, me: str, start: str | None) -> Project:
    """Make this run the project's driver: close attempts whose worker is gone, refuse if one is alive.

    The staleness rule is the core's (:meth:`Project.lost_attempts`); this only reads the heartbeats and tells
    Prefect about the runs that are gone. One store update then closes the lost attempts and marks the project
    RUNNING, so nobody sees it PAUSED between.
    """
    p = store.get(project)
    for lost in p.lost_attempts(store.heartbeats(p), datetime.now(UTC)):
        if lost.run_id:
            mark_crashed(lost.run_id, f"{lost.heartbeat}: its worker is gone")
        announce("lost", project, lost.stage, reason=f"{lost.heartbeat}: its worker is gone")
    if p.waiting is not None and p.waiting.run_id != me and flow_run_state(p.waiting.run_id) == "PAUSED":
        raise RuntimeError(
            f"{project}: run {p.waiting.run_id} waits for a decision on {p.waiting.stage}; answer its form "
            "(opsflow project resume answers it)"
        )
    if p.run_id and p.run_id != me and flow_run_state(p.run_id) == "RUNNING":
        mark_crashed(p.run_id, "superseded: its project was resumed by another run")
    return store.take_over(project, me, start)


def _files_to_look_at(settings: PipelineStore, store: ProjectStore, p: Project, stage: str, when: When) -> str:
    """Links to the files the decision is about: the stage's output (after), or its input (before)."""
    if when == "after":
        attempts = p.attempts_of(stage)
        chosen = attempts[-1] if attempts else None
    else:
        chosen = p.input_attempt(stage)
    if chosen is None:
        return ""
    title = f"files of {chosen.stage} attempt {chosen.attempt}"
    return settings.file_links(store.workspace(p.name, chosen), title)


def _ask(
    settings: PipelineStore,
    store: ProjectStore,
    project: str,
    stage: str,
    when: When,
    attempt: int,
    me: str,
    retry: int = 0,
) -> Step:
    """Suspend for a decision (or, on re-entry, read the answer given); returns where it leads."""
    logger = get_run_logger()
    p = store.get(project)
    key = decision_key(stage, attempt, when, retry)
    if p.waiting is None or p.waiting.key != key:
        pending = PendingDecision(
            key=key, stage=stage, when=when, attempt=attempt, retry=retry, run_id=me, asked=p.updated
        )
        store.ask(project, pending)
        announce("waiting", project, stage, when=when, attempt=attempt)
    description = p.definition.stage(stage).approval.description
    links = _files_to_look_at(settings, store, p, stage, when)
    form = decision_form(p.definition, stage, when, f"{description}\n\n{links}".strip())
    answer = suspend_for_input(form, key, settings.answer_grace_s)  # exits the process when not answered in time
    decision = Decision.model_validate(answer.model_dump(include=set(Decision.model_fields)))
    step = next_step(p.definition, stage, when, decision)
    store.answered(project, stage, decision.comment, f"{decision.action} after the decision {when} {stage}")
    logger.info("%s: decision %s %s: %s %s", project, when, stage, decision.action, decision.model_dump())
    if step.problem:
        logger.warning("%s: refused answer (%s); asking again", project, step.problem)
        return _ask(settings, store, project, stage, when, attempt, me, retry + 1)
    return step.model_copy(update={"approved": when == "before" and step.stage == stage})


@flow(name="pipeline-run")
def pipeline_run(
    project: str,
    start_stage: str | None = None,
    pause_after: bool = False,
    env: dict[str, str] | None = None,
    store_block: str = "local",
) -> str:
    """Run ``project`` from ``start_stage`` (default: where it stopped); with ``pause_after``, pause after it."""
    logger = get_run_logger()
    settings = load_block(PipelineStore, store_block)
    store = settings.projects()
    me = str(flow_run.id)
    p = store.get(project)
    if p.waiting is not None and p.waiting.run_id == me:
        w = p.waiting
        step = _ask(settings, store, project, w.stage, w.when, w.attempt, me, w.retry)
        # The approval after the stage this run started at was the last thing before pause_after applies.
        done_with_start = w.when == "after" and w.stage == p.run_start and step.stage != w.stage
        if pause_after and done_with_start and not step.stop and step.stage is not None:
            return _pause(store, project, f"paused after {w.stage} as asked at start", before=step.stage)
    else:
        p = _claim(store, project, me, start_stage)
        step = Step(stage=p.run_start, env=env or {})
    # pause_after counts from where this run really started (where the project stopped when none was chosen),
    # also when it re-enters after a suspension
    start_stage = p.run_start
    while True:
        if step.stop:
            return _pause(store, project, "stopped by a decision in the approval form", before=step.stage)
        if step.stage is None:
            store.set_status(project, ProjectStatus.FINISHED, "every stage done")
            announce("finished", project, None)
            return "FINISHED"
        stage = step.stage
        p = store.get(project)
        if p.pause_requested:
            return _pause(store, project, f"paused on request before {stage}", before=stage)
        spec = p.definition.stage(stage)
        if spec.approval.mode == "before" and not step.approved:
            step = _ask(settings, store, project, stage, "before", len(p.attempts_of(stage)) + 1, me)
            continue
        disk = too_little_disk(stage, shutil.disk_usage(settings.root).free, settings.min_free_mb * 2**20)
        if disk is not None:
            return _pause(store, project, disk, before=stage)
        if not online_workers(spec.pool):
            return _pause(store, project, no_fitting_node(spec), before=stage)
        logger.info("%s: %s on pool %s with env %s", project, stage, spec.pool, step.env)
        attempts_before = len(store.get(project).attempts_of(stage))
        child = cast(
            FlowRun,
            run_deployment(  # typed as maybe-a-coroutine; a FlowRun in this sync flow
                stage_deployment(spec.pool),
                parameters={"project": project, "stage": stage, "env": step.env, "store_block": store_block},
                as_subflow=True,
                timeout=0,  # returns at once: _watch_stage waits, and also watches the stage's heartbeat
            ),
        )
        ended = _watch_stage(store, project, stage, attempts_before, str(child.id))
        p = store.get(project)
        if p.running_attempts():  # the stage's run ended without closing its attempt: its process died
            store.recover_stale(project, ended)
        p = store.get(project)
        problem = attempt_problem(p, stage)
        if problem is not None:
            last = p.attempts_of(stage)[-1] if p.attempts_of(stage) else None
            if last is not None and last.outcome == AttemptOutcome.LOST:
                announce("lost", project, stage, reason=f"{problem}: {ended}")
                return _pause(store, project, f"{problem}: {ended}")
            announce("failed", project, stage, reason=problem)
            return _pause(store, project, problem)
        if spec.approval.mode == "after":
            step = _ask(settings, store, project, stage, "after", p.attempts_of(stage)[-1].attempt, me)
        else:
            step = Step(stage=p.definition.next_stage(stage))
        if pause_after and stage == start_stage:
            return _pause(store, project, f"paused after {stage} as asked at start", before=step.stage)
