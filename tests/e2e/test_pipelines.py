"""Staged pipelines on the session's stack: `pipeline-run` and `stage-run/<pool>` deployments run by the real
cpu worker, approvals answered through `resume_flow_run`, the server and the worker stopped mid-way.

Each test defines a small pipeline of shell stages in the store's pipelines directory and drives a project of
it through the same functions as the CLI.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import psutil
import pytest
from prefect.client.orchestration import get_client

from blocks import PipelineStore, load_block
from opsflow.stack.config import StackConfig
from opsflow.stack.manager import components
from opsflow.stack.process import running_process
from stage_pipeline.models import AttemptOutcome, ProjectStatus, StageState
from stage_pipeline.prefect_api import answer, flow_run_state, start_pipeline_run
from stage_pipeline.steps import Decision
from stage_pipeline.store import ProjectStore
from tests.e2e.pipeline_support import define, new_project, status_is, wait_for
from tests.support import kill_and_wait, wait_until

pytestmark = pytest.mark.stack


@pytest.fixture
def pipelines(stack: StackConfig) -> PipelineStore:
    return load_block(PipelineStore, "local")


def workspace_file(projects: ProjectStore, name: str, stage: str, attempt: int, file: str) -> Path:
    return projects.project_dir(name) / "stages" / stage / str(attempt) / file


TWO_STAGES = """\
- name: first_step
  command: [sh, -c, 'echo "made by first: $GREETING" > data.txt; echo frame 1/2; echo frame 2/2']
  env: {GREETING: hello}
  approval: {mode: after, description: Check data.txt}
- name: second
  command: [sh, -c, 'cat data.txt; echo second >> log.txt']
"""


def test_approval_round_trip_refuses_invalid_input_then_continues(pipelines: PipelineStore) -> None:
    define(pipelines, "approve", TWO_STAGES)
    projects = new_project(pipelines, "approve1", "approve")
    start_pipeline_run("approve1")
    p = wait_for(projects, "approve1", status_is(ProjectStatus.WAITING))
    assert p.waiting is not None and p.waiting.stage == "first_step" and p.waiting.when == "after"
    assert wait_until(lambda: flow_run_state(p.waiting.run_id) == "PAUSED", timeout_s=30)  # type: ignore[union-attr]
    run_id = p.waiting.run_id
    # Refused by the server against the form's schema: an unknown action, a stage the pipeline does not have.
    for bad in ({"action": "explode"}, {"action": "goto", "goto_stage": "nowhere"}):
        with pytest.raises(RuntimeError):
            from prefect.flow_runs import resume_flow_run

            resume_flow_run(UUID(run_id), run_input=bad)
        assert flow_run_state(run_id) == "PAUSED"
    assert projects.get("approve1").status == ProjectStatus.WAITING
    answer(run_id, Decision(action="continue", comment="looks right"))
    p = wait_for(projects, "approve1", status_is(ProjectStatus.FINISHED, ProjectStatus.PAUSED))
    assert p.status == ProjectStatus.FINISHED, p.reason
    assert [(a.stage, a.outcome) for a in p.history] == [
        ("first_step", AttemptOutcome.SUCCEEDED),
        ("second", AttemptOutcome.SUCCEEDED),
    ]
    assert p.history[0].comment == "looks right"
    # The second stage started from a copy of the first one's output, and wrote its own file beside it.
    assert workspace_file(projects, "approve1", "second", 1, "data.txt").read_text() == "made by first: hello\n"
    assert workspace_file(projects, "approve1", "second", 1, "log.txt").read_text() == "second\n"
    log = projects.log_path("approve1", "second", 1).read_text()
    assert "made by first: hello" in log


def test_redo_with_changed_env_keeps_the_old_attempt_then_resume_from_an_earlier_stage(
    pipelines: PipelineStore,
) -> None:
    define(pipelines, "redo", TWO_STAGES)
    projects = new_project(pipelines, "redo1", "redo")
    start_pipeline_run("redo1")
    p = wait_for(projects, "redo1", status_is(ProjectStatus.WAITING))
    answer(p.waiting.run_id, Decision(action="redo", env={"GREETING": "again"}))  # type: ignore[union-attr]
    p = wait_for(projects, "redo1", lambda q: q.status == ProjectStatus.WAITING and len(q.history) == 2)
    answer(p.waiting.run_id, Decision(action="stop"))  # type: ignore[union-attr]
    p = wait_for(projects, "redo1", status_is(ProjectStatus.PAUSED))
    first, again = p.attempts_of("first_step")
    assert first.env["GREETING"] == "hello" and again.env["GREETING"] == "again"
    assert workspace_file(projects, "redo1", "first_step", 1, "data.txt").read_text() == "made by first: hello\n"
    assert workspace_file(projects, "redo1", "first_step", 2, "data.txt").read_text() == "made by first: again\n"
    # Resume from the first stage again (a paused project: a new run), then stop at its form.
    start_pipeline_run("redo1", start_stage="first_step")
    p = wait_for(
        projects, "redo1", lambda q: q.status == ProjectStatus.WAITING and len(q.attempts_of("first_step")) == 3
    )
    answer(p.waiting.run_id, Decision(action="goto", goto_stage="second"))  # type: ignore[union-attr]
    p = wait_for(projects, "redo1", status_is(ProjectStatus.FINISHED, ProjectStatus.PAUSED))
    assert p.status == ProjectStatus.FINISHED and p.stages["second"] == StageState.SUCCEEDED


SLOW_STAGES = """\
- name: slow
  command: [sh, -c, 'echo started; sleep 6; echo done > slow.txt']
- name: after
  command: [sh, -c, 'echo after']
"""


def test_pause_after_the_current_stage_then_resume(pipelines: PipelineStore) -> None:
    define(pipelines, "pausing", SLOW_STAGES)
    projects = new_project(pipelines, "pause1", "pausing")
    start_pipeline_run("pause1")
    wait_for(projects, "pause1", lambda q: q.stages["slow"] == StageState.RUNNING)
    projects.request_pause("pause1")
    p = wait_for(projects, "pause1", status_is(ProjectStatus.PAUSED))
    assert p.stages == {"slow": StageState.SUCCEEDED, "after": StageState.PAUSED}
    assert "paused on request" in p.reason and not p.pause_requested
    start_pipeline_run("pause1")
    p = wait_for(projects, "pause1", status_is(ProjectStatus.FINISHED))
    assert [a.stage for a in p.history] == ["slow", "after"]


def test_abort_kills_the_stage_process_tree_and_pauses(pipelines: PipelineStore) -> None:
    define(pipelines, "aborting", "- {name: long, command: [sh, -c, 'sleep 1000 & sleep 1001; wait']}\n")
    projects = new_project(pipelines, "abort1", "aborting")
    start_pipeline_run("abort1")
    wait_for(projects, "abort1", lambda q: q.stages["long"] == StageState.RUNNING)
    assert wait_until(lambda: _sleepers("1000", "1001"), timeout_s=60)
    projects.request_abort("abort1")
    p = wait_for(projects, "abort1", status_is(ProjectStatus.PAUSED))
    assert p.history[0].outcome == AttemptOutcome.ABORTED and p.stages["long"] == StageState.FAILED
    assert not _sleepers("1000", "1001")


def _sleepers(*seconds: str) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline"]) if (p.info["cmdline"] or [])[-1:] in [[s] for s in seconds]]


def test_a_gpu_stage_without_a_gpu_worker_pauses_with_no_fitting_node(pipelines: PipelineStore) -> None:
    define(pipelines, "gpuwork", "- {name: train, command: [sh, -c, 'true'], resources: {gpus: 1}}\n")
    projects = new_project(pipelines, "gpu1", "gpuwork")
    start_pipeline_run("gpu1")
    p = wait_for(projects, "gpu1", status_is(ProjectStatus.PAUSED))
    assert p.reason.startswith("no fitting node") and "'gpu'" in p.reason
    assert p.history == [] and p.stages["train"] == StageState.PAUSED


def test_a_stage_cannot_modify_an_earlier_stage_output(pipelines: PipelineStore) -> None:
    define(
        pipelines,
        "immutable",
        """\
        - {name: make, command: [sh, -c, 'echo original > out.txt']}
        - {name: tamper, command: [sh, -c, 'echo changed >> out.txt']}
        """,
    )
    projects = new_project(pipelines, "immut1", "immutable")
    start_pipeline_run("immut1")
    p = wait_for(projects, "immut1", status_is(ProjectStatus.PAUSED, ProjectStatus.FINISHED))
    assert p.status == ProjectStatus.PAUSED and p.attempts_of("tamper")[0].outcome == AttemptOutcome.FAILED
    sealed = workspace_file(projects, "immut1", "make", 1, "out.txt")
    assert sealed.read_text() == "original\n"
    assert "Permission denied" in projects.log_path("immut1", "tamper", 1).read_text()
    # Sealed: handed to uid 65534, read-only (root, which runs this test, ignores the bits; the stage could not).
    info = sealed.stat()
    assert (info.st_uid, info.st_mode & 0o777) == (65534, 0o444)


def test_server_restart_while_waiting_for_approval_then_resume(
    stack: StackConfig, pipelines: PipelineStore
) -> None:
    define(pipelines, "restart", TWO_STAGES)
    projects = new_project(pipelines, "restart1", "restart")
    start_pipeline_run("restart1")
    p = wait_for(projects, "restart1", status_is(ProjectStatus.WAITING))
    run_id = p.waiting.run_id  # type: ignore[union-attr]
    assert wait_until(lambda: flow_run_state(run_id) == "PAUSED", timeout_s=30)
    (prefect,) = components(stack, ["prefect"])
    prefect.stop()
    prefect.start()
    assert flow_run_state(run_id) == "PAUSED"
    answer(run_id, Decision(action="continue"))
    p = wait_for(projects, "restart1", status_is(ProjectStatus.FINISHED, ProjectStatus.PAUSED), timeout_s=180)
    assert p.status == ProjectStatus.FINISHED, p.reason


def test_a_worker_killed_during_a_stage_leaves_it_failed_and_the_project_resumable(
    stack: StackConfig, pipelines: PipelineStore
) -> None:
    define(pipelines, "crash", "- {name: long, command: [sh, -c, 'sleep 1002']}\n- {name: end, command: ['true']}\n")
    projects = new_project(pipelines, "crash1", "crash")
    start_pipeline_run("crash1")
    wait_for(projects, "crash1", lambda q: q.stages["long"] == StageState.RUNNING)
    assert wait_until(lambda: _sleepers("1002"), timeout_s=60)
    # The node dies: the worker and every process it started (flow runs, the stage) at once.
    worker = running_process(stack.home, "worker-cpu")
    assert worker is not None
    # The stage runs in its own session: only a node's death takes it too.
    kill_and_wait([*worker.children(recursive=True), worker, *_sleepers("1002")])
    (cpu_worker,) = components(stack, ["worker-cpu"])
    assert cpu_worker.start(), "the killed worker was taken for a running one"
    assert projects.get("crash1").stages["long"] == StageState.RUNNING  # nobody could close the attempt
    # Resume: the new run finds the attempt's heartbeat stale and records it LOST (the stage FAILED).
    _age_heartbeats(projects, "crash1")
    start_pipeline_run("crash1", start_stage="end")
    p = wait_for(projects, "crash1", status_is(ProjectStatus.FINISHED, ProjectStatus.PAUSED), timeout_s=180)
    lost = p.attempts_of("long")[0]
    assert lost.outcome == AttemptOutcome.LOST and p.stages["long"] == StageState.FAILED
    assert p.status == ProjectStatus.FINISHED and p.stages["end"] == StageState.SUCCEEDED
    with get_client(sync_client=True) as client:
        assert lost.run_id is not None
        assert client.read_flow_run(UUID(lost.run_id)).state.type.value == "CRASHED"  # type: ignore[union-attr]


def _age_heartbeats(projects: ProjectStore, name: str) -> None:
    """The heartbeat is taken as stale after 30 s; make it so now rather than wait."""
    import os

    for beat in (projects.project_dir(name) / "heartbeats").glob("*"):
        os.utime(beat, (time.time() - 3600, time.time() - 3600))


def test_node_monitor_deployment_reports_the_worker_node(stack: StackConfig) -> None:
    import socket

    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.node_monitor import artifact_key
    from opsflow.stack.demo import run_and_wait

    run = run_and_wait("node-monitor/node-monitor", {"interval_s": 0.5}, timeout_s=180)
    assert run.state is not None and run.state.is_completed(), run.state
    key = artifact_key(socket.gethostname())
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    assert found, f"no artifact {key}"
    data: Any = found[0].data
    row = (json.loads(data) if isinstance(data, str) else data)[0]  # a table artifact's rows, stored as JSON
    assert row["node"] == socket.gethostname() and 0 <= row["cpu %"] <= 100 and row["cores"] >= 1
