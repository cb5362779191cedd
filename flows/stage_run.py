"""`stage-run`: one attempt of one stage of a project, on a worker of the pool the stage asks for.

Deployed twice from prefect.yaml: ``stage-run/cpu`` and ``stage-run/gpu``; `pipeline-run` picks by the stage's
``resources.gpus``, so placement is Prefect's. The attempt's workspace starts as a hard-link copy of the previous
successful stage's output and is sealed read-only at the end. Every output line goes to the run's log and to
``logs/<stage>/<attempt>.log`` of the project; error lines become warnings, listed again at the end; progress
lines drive a progress artifact with an ETA. A heartbeat file tells a later run whether the attempt is still alive.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import cast
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.runtime import flow_run

from blocks import DockerEngine, PipelineStore, load_block
from opsflow.errors import OpsflowError
from stage_pipeline.docker_runner import DockerRunner
from stage_pipeline.logscan import LogScanner
from stage_pipeline.models import AttemptOutcome
from stage_pipeline.runners import RunOutcome, ShellRunner, StageJob, StageRunner
from stage_pipeline.workspace import prepare_workspace, resource_pool, seal

#: Seconds between two heartbeats / abort checks / progress updates of a running stage.
HEARTBEAT_S = 2.0
PROGRESS_EVERY_S = 2.0


class StageFailed(OpsflowError, RuntimeError):
    """The stage ended without success (the flow run is then Failed; the project records why)."""


def outcome_of(result: RunOutcome) -> AttemptOutcome:
    """How the attempt is recorded.

    >>> from datetime import datetime, timezone
    >>> t = datetime.now(timezone.utc)
    >>> outcome_of(RunOutcome(exit_code=1, aborted=True, started=t, ended=t)).value
    'aborted'
    """
    if result.aborted:
        return AttemptOutcome.ABORTED
    if result.timed_out:
        return AttemptOutcome.TIMED_OUT
    return AttemptOutcome.SUCCEEDED if result.succeeded else AttemptOutcome.FAILED


def _runner(image: str | None, store: PipelineStore) -> StageRunner:
    if image is None:
        return ShellRunner()
    import docker

    base_url = load_block(DockerEngine, store.docker_block).base_url if store.docker_block else None
    client = docker.DockerClient(base_url=base_url) if base_url else docker.from_env()
    return DockerRunner(client)


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
    job = StageJob(
        name=f"{project}.{stage}.{attempt.attempt}",
        argv=spec.command or [],
        image=spec.image,
        env=attempt.env,
        workdir=workspace,
        resources=resource_pool(Path(store_cfg.root)),
        timeout_s=spec.timeout,
        gpus=spec.resources.gpus,
    )
    logger.info(
        "%s: attempt %d of %s in %s (from %s)", project, attempt.attempt, stage, workspace,
        f"{source.stage} attempt {source.attempt}" if source else "an empty workspace",
    )  # fmt: skip
    scanner = LogScanner(spec.error_regex, spec.progress_regex)
    # Typed as maybe-a-coroutine (async dispatch); in this synchronous flow it is the artifact's id.
    title = f"{project} / {stage} attempt {attempt.attempt}"
    progress_id = cast(UUID, create_progress_artifact(0.0, description=title))
    heartbeat = store.heartbeat_path(project, stage, attempt.attempt)
    heartbeat.parent.mkdir(parents=True, exist_ok=True)
    heartbeat.touch()
    last = {"beat": time.monotonic(), "progress": 0.0, "abort": False}
    log_path = store.log_path(project, stage, attempt.attempt)
    log_path.parent.mkdir(parents=True, exist_ok=True)

    with log_path.open("a", encoding="utf-8") as log_file:

        def on_line(line: str) -> None:
            log_file.write(line + "\n")
            log_file.flush()
            info = scanner.feed(line, time.monotonic())
            if info.is_error:
                logger.warning("%s: %s", stage, line)
            else:
                logger.info("%s: %s", stage, line)
            now = time.monotonic()
            if info.progress is not None and (info.progress >= 1.0 or now - last["progress"] >= PROGRESS_EVERY_S):
                last["progress"] = now
                eta = scanner.eta_seconds(now)
                note = f"ETA {eta:.0f} s" if eta is not None else "ETA unknown"
                update_progress_artifact(
                    progress_id, info.progress * 100, description=f"{project} / {stage}: {note}"
                )

        def should_abort() -> bool:
            now = time.monotonic()
            if now - last["beat"] >= HEARTBEAT_S:
                last["beat"] = now
                heartbeat.touch()
                last["abort"] = store.get(project).abort_requested
            return bool(last["abort"])

        result = _runner(spec.image, store_cfg).run(job, on_line, should_abort)
    seal(workspace)  # before the attempt is recorded: a SUCCEEDED attempt's output is always immutable
    outcome = outcome_of(result)
    store.end_attempt(
        project, stage, attempt.attempt, outcome, result.exit_code, scanner.errors, scanner.error_count,
        comment=result.error or "",
    )  # fmt: skip
    heartbeat.unlink(missing_ok=True)
    if outcome == AttemptOutcome.SUCCEEDED:
        update_progress_artifact(progress_id, 100.0)
    summary = f"**{stage}** attempt {attempt.attempt}: {outcome.value} (exit code {result.exit_code}); "
    summary += scanner.summary()
    if scanner.errors:
        summary += "\n\n" + "\n".join(f"- `{line}`" for line in scanner.errors)
        logger.warning("%s: %s:\n%s", stage, scanner.summary(), "\n".join(scanner.errors))
    create_markdown_artifact(summary, description=f"{project} / {stage} attempt {attempt.attempt}")
    if outcome != AttemptOutcome.SUCCEEDED:
        why = result.error or f"exit code {result.exit_code}"
        raise StageFailed(f"{stage} attempt {attempt.attempt} of {project}: {outcome.value} ({why})")
    return outcome.value
