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
from typing import Any, cast
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.states import Crashed

from opsflow.errors import AdapterError
from stage_pipeline.steps import Decision

PIPELINE_DEPLOYMENT = "pipeline-run/pipeline-run"


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


def form_ready(run_id: str) -> bool:
    """Whether the run is suspended AND its form is saved: the project says WAITING a moment before that."""
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(run_id))
        keyset = run.state.state_details.run_input_keyset if run.state and run.state.is_paused() else None
        if not keyset:
            return False
        try:
            client.read_flow_run_input(UUID(run_id), keyset["schema"])
        except (ObjectNotFound, PrefectHTTPStatusError):  # 404 until the suspending run has saved it
            return False
    return True


def wait_for_form(run_id: str, timeout_s: float = 60.0) -> bool:
    """Wait (bounded) until :func:`form_ready`; False on timeout."""
    deadline = time.monotonic() + timeout_s
    while not form_ready(run_id):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def answer(run_id: str, decision: Decision, timeout_s: float = 60.0) -> None:
    """Resume a run suspended for a decision, with ``decision`` as the form's input.

    Waits up to ``timeout_s`` for the form to exist. Raises :class:`~opsflow.errors.AdapterError` (a
    RuntimeError) with the server's reason when the input is refused (the run then stays suspended).
    """
    from prefect.flow_runs import resume_flow_run

    if not wait_for_form(run_id, timeout_s):
        raise AdapterError(f"flow run {run_id} shows no form to answer within {timeout_s:.0f} s")
    try:
        resume_flow_run(UUID(run_id), run_input=decision.model_dump(exclude_none=True), _sync=True)  # type: ignore[call-arg]
    except RuntimeError as exc:  # Prefect's own refusal (the input does not match the form's schema)
        raise AdapterError(f"the server refused the answer to run {run_id}: {exc}") from exc


def flow_run_state(run_id: str) -> str | None:
    """The state type of a flow run (e.g. ``"PAUSED"``, ``"RUNNING"``), None if unknown."""
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(run_id))
    return run.state.type.value if run.state else None


def flow_run_end(run_id: str) -> str | None:
    """How a flow run ended (``"Failed: <message>"``), None while it is not in a final state."""
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(run_id))
    if run.state is None or not run.state.is_final():
        return None
    return f"{run.state.name}: {run.state.message or 'no message'}"


def mark_crashed(run_id: str, message: str) -> None:
    """Move a flow run whose process is gone (found by a stale heartbeat) to Crashed, so the UI tells the truth."""
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(run_id))
        if run.state is not None and not run.state.is_final():
            client.set_flow_run_state(UUID(run_id), Crashed(message=message), force=True)
