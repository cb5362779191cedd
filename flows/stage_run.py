"""`stage-run`: one attempt of one stage of a project, on a worker of the pool the stage asks for.

Deployed twice from prefect.yaml: ``stage-run/cpu`` and ``stage-run/gpu``; `pipeline-run` picks by the stage's
``resources.gpus``, so placement is Prefect's. The attempt's workspace starts as a hard-link copy of the previous
successful stage's output and is sealed read-only at the end. Every output line goes to the run's log and, through
:class:`~stage_pipeline.attempt.AttemptWatch`, to ``logs/<stage>/<attempt>.log`` of the project (with the
heartbeat, the abort checks and the log scan); error lines become warnings, listed again at the end; progress
lines drive a progress artifact with an ETA.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, cast
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run

from blocks import DockerEngine, PipelineStore, load_block
from opsflow.adapters.docker_engine import DockerEngineClient
from opsflow.errors import OpsflowError
from stage_pipeline.attempt import AttemptWatch, outcome_of, stage_job
from stage_pipeline.docker_runner import DockerRunner
from stage_pipeline.gpu_leases import run_with_gpus
from stage_pipeline.models import AttemptOutcome, ProjectStatus
from stage_pipeline.prefect_api import announce
from stage_pipeline.runners import ShellRunner, StageRunner
from stage_pipeline.stage_input import InputRequest, form_model
from stage_pipeline.store import ProjectStore
from stage_pipeline.workspace import prepare_workspace, resource_pool, seal


class StageFailed(OpsflowError, RuntimeError):
    """The stage ended without success (the flow run is then Failed; the project records why)."""


def _runner(image: str | None, store: PipelineStore) -> StageRunner:
    if image is None:
        return ShellRunner()
    # The store's DockerEngine Block names the engine; without one, the worker's own DOCKER_HOST.
    engine = load_block(DockerEngine, store.docker_block).get_client() if store.docker_block else None
    return DockerRunner((engine or DockerEngineClient.from_env()).client())


def _ask_operator(store: ProjectStore, project: str, stage: str, attempt: int, request: InputRequest) -> dict[str, Any]:
    """Pause this run with a form built from the stage's request (the stage's process waits meanwhile); the answer,
    or ``{"error": ...}`` when nobody answered within the request's timeout."""
    logger = get_run_logger()
    where = f"{stage} attempt {attempt} asks for input {request.name!r}"
    logger.info("%s: %s (a form on this stage run in the Prefect UI)", project, where)
    store.set_status(project, ProjectStatus.RUNNING, f"{where}: answer the form of its stage run")
    announce("waiting", project, stage, when="during", attempt=attempt, request=request.name)
    form = cast(type[RunInput], form_model(request, base=RunInput))
    key = "ask-" + re.sub(r"[^a-z0-9-]", "-", f"{request.name}-{attempt}")
    try:
        answer = pause_flow_run(
            wait_for_input=form.with_initial_data(description=request.description or where),
            timeout=int(request.timeout_s),
            key=key,
        )
    except FlowPauseTimeout:
        logger.warning("%s: no answer within %d s", where, request.timeout_s)
        return {"error": f"no answer within {request.timeout_s:g} s"}
    finally:
        store.set_status(project, ProjectStatus.RUNNING, f"{stage} attempt {attempt} running")
    values = cast(RunInput, answer).model_dump()
    logger.info("%s: answered %s", where, values)
    return values


@flow(name="stage-run")
def stage_run(project: str, stage: str, env: dict[str, str] | None = None, store_block: str = "local") -> str:
    """Run one attempt of ``stage`` of ``project``; returns the outcome (raises StageFailed unless it succeeded)."""
    logger = get_run_logger()
    store_cfg = load_block(PipelineStore, store_block)
    store = store_cfg.projects()
    before = store.get(project)
    spec = before.definition.stage(stage)
    source = before.input_attempt(stage)  # earlier stages' successes: the new attempt does not change it
    attempt = store.begin_attempt(project, stage, {**spec.env, **(env or {})}, run_id=str(flow_run.id))
    workspace = prepare_workspace(
        store.project_dir(project), stage, attempt.attempt, store.workspace(project, source) if source else None
    )
    inputs = store.project_dir(project) / "input"  # what `opsflow files upload ... projects/<p>/input/` brought
    pool = resource_pool(Path(store_cfg.root))
    asks = store.ask_dir(project, stage, attempt.attempt)
    asks.mkdir(parents=True, exist_ok=True)
    job = stage_job(project, spec, attempt, workspace, pool, inputs if inputs.is_dir() else None, asks)
    logger.info(
        "%s: attempt %d of %s in %s (from %s)", project, attempt.attempt, stage, workspace,
        f"{source.stage} attempt {source.attempt}" if source else "an empty workspace",
    )  # fmt: skip
    title = f"{project} / {stage} attempt {attempt.attempt}"
    # Typed as maybe-a-coroutine (async dispatch); in this synchronous flow it is the artifact's id.
    progress_id = cast(UUID, create_progress_artifact(0.0, description=title))

    def on_log(is_error: bool, line: str) -> None:
        (logger.warning if is_error else logger.info)("%s: %s", stage, line)

    def on_progress(fraction: float, eta: float | None) -> None:
        note = f"ETA {eta:.0f} s" if eta is not None else "ETA unknown"
        update_progress_artifact(progress_id, fraction * 100, description=f"{project} / {stage}: {note}")

    def on_request(request: InputRequest) -> dict[str, Any]:
        return _ask_operator(store, project, stage, attempt.attempt, request)

    with AttemptWatch(store, project, attempt, spec, on_log, on_progress, ask_dir=asks, on_request=on_request) as watch:
        # A GPU stage holds its GPUs (one lease each) for the whole run; too few free ones is its error.
        result = run_with_gpus(_runner(spec.image, store_cfg), job, watch.on_line, watch.should_abort)
    seal(workspace)  # before the attempt is recorded: a SUCCEEDED attempt's output is always immutable
    outcome = outcome_of(result)
    watch.finish(outcome, result)
    if outcome == AttemptOutcome.SUCCEEDED:
        update_progress_artifact(progress_id, 100.0)
    if watch.scanner.errors:
        logger.warning("%s: %s:\n%s", stage, watch.scanner.summary(), "\n".join(watch.scanner.errors))
    links = store_cfg.file_links(workspace, f"files of {stage} attempt {attempt.attempt}")
    create_markdown_artifact(f"{watch.summary(outcome, result.exit_code)}\n\n{links}".strip(), description=title)
    if outcome != AttemptOutcome.SUCCEEDED:
        why = result.error or f"exit code {result.exit_code}"
        raise StageFailed(f"{stage} attempt {attempt.attempt} of {project}: {outcome.value} ({why})")
    return outcome.value
