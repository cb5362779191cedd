"""The Prefect side of staged pipelines: start runs, answer approval forms, see workers; one function per verb.

The CLI (`opsflow project ...`) and the flows call these; the project's own state lives in the store
(:mod:`stage_pipeline.store`), never in Prefect. Deployments: ``pipeline-run/pipeline-run`` (the project run) and
``stage-run/cpu`` / ``stage-run/gpu`` (one stage attempt on the pool its resources ask for).

Example:
    >>> stage_deployment("gpu")
    'stage-run/gpu'
"""

from __future__ import annotations

from typing import Any, cast
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.events import emit_event
from prefect.states import Crashed

from opsflow.adapters.prefect_pools import workers_of_every_pool
from opsflow.adapters.prefect_runs import answer_form, flow_run_state, form_ready, wait_for_form
from stage_pipeline.node_table import WorkerView
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


def answer(run_id: str, decision: Decision, timeout_s: float = 60.0) -> None:
    """Resume a run suspended for a decision, with ``decision`` as the form's input (see
    :func:`opsflow.adapters.prefect_runs.answer_form`: waits for the form, raises ``AdapterError`` if refused)."""
    answer_form(run_id, decision.model_dump(exclude_none=True), timeout_s)


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
    "wait_for_form",
]
