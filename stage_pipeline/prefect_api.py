"""The Prefect side of staged pipelines: start runs, answer approval forms, see workers; one function per verb.

The CLI (`opsflow project ...`) and the flows call these; the project's own state lives in the store
(:mod:`stage_pipeline.store`), never in Prefect. Deployments: ``pipeline-run/pipeline-run`` (the project run) and
``stage-run/cpu`` / ``stage-run/gpu`` (one stage attempt on the pool its resources ask for).

Example:
    >>> stage_deployment("gpu")
    'stage-run/gpu'
"""

from __future__ import annotations

import time
from typing import Any, TypeVar, cast
from uuid import UUID

import httpx
from prefect._flow_run_suspension import mark_flow_run_suspension_requested
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.objects import FlowRun, State
from prefect.context import FlowRunContext
from prefect.events import emit_event
from prefect.exceptions import Abort, Pause, PrefectHTTPStatusError
from prefect.input import RunInput
from prefect.input.run_input import keyset_from_paused_state
from prefect.logging import get_run_logger
from prefect.states import Crashed, Pending, Running, Suspended
from prefect.utilities.engine import propose_state_sync

from opsflow.adapters.prefect_pools import workers_of_every_pool
from opsflow.adapters.prefect_runs import answer_form, flow_run_state, form_ready, wait_for_form
from stage_pipeline.node_table import WorkerView
from stage_pipeline.steps import Decision

PIPELINE_DEPLOYMENT = "pipeline-run/pipeline-run"

#: How often a run that asked for a decision looks whether it was answered, while it waits in its process.
ANSWER_POLL_S = 0.1
#: How long the engine may take to notice that its run was suspended (its observer is told by an event).
OBSERVED_WITHIN_S = 5.0

T = TypeVar("T", bound=RunInput)


def stage_deployment(pool: str) -> str:
    """The deployment of the stage flow on work pool ``pool`` (its name is the pool's)."""
    return f"stage-run/{pool}"


def start_pipeline_run(
    project: str,
    start_stage: str | None = None,
    pause_after: bool = False,
    env: dict[str, str] | None = None,
    store_block: str = "local",
) -> FlowRun:
    """Create a `pipeline-run` flow run for ``project`` (returns at once; the cpu pool's worker runs it)."""
    from prefect.deployments import run_deployment

    parameters: dict[str, Any] = {
        "project": project,
        "start_stage": start_stage,
        "pause_after": pause_after,
        "env": env or {},
        "store_block": store_block,
    }
    # _sync=True: in a Jupyter kernel (an event loop in the main thread) Prefect would return a coroutine instead.
    run = run_deployment(PIPELINE_DEPLOYMENT, parameters=parameters, timeout=0, as_subflow=False, _sync=True)  # type: ignore[call-arg]
    return cast(FlowRun, run)


def answer(run_id: str, decision: Decision, timeout_s: float = 60.0) -> None:
    """Resume a run suspended for a decision, with ``decision`` as the form's input (see
    :func:`opsflow.adapters.prefect_runs.answer_form`: waits for the form, raises ``AdapterError`` if refused)."""
    answer_form(run_id, decision.model_dump(exclude_none=True), timeout_s)


def suspend_for_input(form: type[T], key: str, grace_s: float) -> T:
    """``suspend_flow_run(wait_for_input=form, key=key)``, but the process first waits ``grace_s`` for the answer.

    The run is Suspended in Prefect at once, so the UI shows the form and nothing depends on this process: a
    late answer, or one after a server restart, reschedules the run and a worker starts it again from the top,
    as with ``suspend_flow_run``. An answer within the grace sets the run Scheduled ("Resuming"); this process
    then takes it back the way a worker submits a run, Pending first (Prefect lets only one proposer win that,
    so a worker polling at the same moment either wins and restarts it, or is turned away), then Running, and
    continues here without a new process and a second run submission (issue 15).
    """
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        raise RuntimeError("suspend_for_input must be called from inside a flow run")
    run_id = context.flow_run.id
    proposed: State[Any] = Suspended(pause_key=key)
    keyset = keyset_from_paused_state(proposed)
    proposed.state_details.run_input_keyset = cast(dict[str, str], keyset)
    with get_client(sync_client=True) as client:
        state = propose_state_sync(client=client, state=proposed, flow_run_id=run_id)
        if state.is_running():  # this key fired before: the run was resumed, its answer is stored
            return cast(T, form.load(keyset))
        if not state.is_paused():
            raise RuntimeError(f"flow run {run_id} could not be suspended: {state.type.value}")
        form.save(keyset)
        if grace_s > 0 and _taken_back_when_answered(client, run_id, grace_s):
            _forget_suspension(context)
            get_run_logger().info("answered within %.0f s: the run continues in its process", grace_s)
            return cast(T, form.load(keyset))
    mark_flow_run_suspension_requested(run_id, state)
    raise Pause(state=state)  # the engine ends this process, as after suspend_flow_run


def _forget_suspension(context: FlowRunContext) -> None:
    """Tell the engine that its run is no longer suspended.

    Prefect's engine watches its run for a Suspended state, which other processes may set too, and ends the run
    as suspended at its next boundary when it sees one. It has seen this run's Suspended state (its events
    arrive within milliseconds; waited for up to :data:`OBSERVED_WITHIN_S`, it is seen only once), which this
    process has since undone.
    """
    request = context.flow_run_suspension_request
    deadline = time.monotonic() + OBSERVED_WITHIN_S
    while not request.is_requested() and time.monotonic() < deadline:
        time.sleep(0.02)
    request.mark_requested(None)  # type: ignore[arg-type]  # None: no suspension requested (its initial value)


def _taken_back_when_answered(client: SyncPrefectClient, run_id: UUID, grace_s: float) -> bool:
    """Whether the suspended run was resumed within ``grace_s`` and this process made it Running again."""
    end = time.monotonic() + grace_s
    while time.monotonic() < end:
        time.sleep(ANSWER_POLL_S)
        try:
            run = client.read_flow_run(run_id)
        except (httpx.HTTPError, PrefectHTTPStatusError):  # a server restart: the run stays Suspended there
            continue
        if run.state is None or run.state.is_paused():
            continue
        if not run.state.is_scheduled():  # cancelled, or a worker has it already
            return False
        try:
            if not propose_state_sync(client=client, state=Pending(), flow_run_id=run_id).is_pending():
                return False
            return propose_state_sync(client=client, state=Running(), flow_run_id=run_id).is_running()
        except Abort:  # a worker proposed Pending first: it starts the run again
            return False
    return False


def announce(what: str, project: str, stage: str | None, **payload: object) -> None:
    """Event ``opsflow.pipeline.<what>`` (waiting, failed, lost, finished) with the project as its resource and
    the stage as a related one, so a site routes notifications with an automation (README)."""
    related = []
    if stage is not None:
        stage_id = f"opsflow.pipeline.stage.{project}.{stage}"
        related.append(
            {"prefect.resource.id": stage_id, "prefect.resource.role": "stage", "prefect.resource.name": stage}
        )
    emit_event(
        event=f"opsflow.pipeline.{what}",
        resource={"prefect.resource.id": f"opsflow.pipeline.project.{project}", "prefect.resource.name": project},
        related=related,
        payload={"project": project, "stage": stage, **payload},
    )


def mark_crashed(run_id: str, message: str) -> None:
    """Move a flow run whose process is gone (found by a stale heartbeat) to Crashed, so the UI tells the truth."""
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(run_id))
        if run.state is not None and not run.state.is_final():
            client.set_flow_run_state(UUID(run_id), Crashed(message=message), force=True)


def read_workers() -> list[WorkerView]:
    """Every worker of every work pool, as the node table joins them (name, pool, status, last heartbeat)."""
    return [
        WorkerView(name=w.name, pool=pool, status=w.status.value, last_heartbeat=w.last_heartbeat_time)
        for pool, w in workers_of_every_pool()
    ]


__all__ = [
    "PIPELINE_DEPLOYMENT",
    "announce",
    "answer",
    "flow_run_state",
    "form_ready",
    "mark_crashed",
    "read_workers",
    "stage_deployment",
    "start_pipeline_run",
    "suspend_for_input",
    "wait_for_form",
]
