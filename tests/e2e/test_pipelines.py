"""Staged pipelines on the session's stack: `pipeline-run` and `stage-run/<pool>` deployments run by the real
cpu worker, approvals answered through `resume_flow_run`, the server and the worker stopped mid-way.

Each test defines a small pipeline of shell stages in the store's pipelines directory and drives a project of
it through the same functions as the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import psutil
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

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


def run_log(run_id: str) -> str:
    """The Prefect log of a flow run, one message per line."""
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(run_id)])), limit=200)
    return "\n".join(log.message for log in logs)


def no_grace_store(pipelines: PipelineStore) -> str:
    """A second store block on the same root whose runs exit at once when they ask (answers restart them)."""
    PipelineStore(
        root=pipelines.root,
        docker_block=pipelines.docker_block,
        min_free_mb=pipelines.min_free_mb,
        file_service_url=pipelines.file_service_url,
        file_service_auth=pipelines.file_service_auth,
        answer_grace_s=0,
    ).save("no-grace", overwrite=True)
    return "no-grace"


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
    # Answered within the store's grace: the run went on in the process that asked, not a restarted one.
    assert wait_until(lambda: "the run continues in its process" in run_log(run_id), timeout_s=30)
    assert wait_until(lambda: flow_run_state(run_id) == "COMPLETED", timeout_s=30), flow_run_state(run_id)


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


THREE_STAGES = """\
- {name: one, command: [sh, -c, 'echo one']}
- {name: two, command: [sh, -c, 'echo two'], approval: {mode: after}}
- {name: three, command: [sh, -c, 'echo three']}
"""


def test_pause_after_without_a_chosen_stage_counts_from_where_the_project_stopped(pipelines: PipelineStore) -> None:
    """Issue 12: ``pause_after`` with no start stage pauses after the stage the run really started at, also when
    that stage's approval suspended the run in between (the re-entered run still knows where it started)."""
    define(pipelines, "stepwise", THREE_STAGES)
    projects = new_project(pipelines, "step1", "stepwise")
    start_pipeline_run("step1", pause_after=True)
    p = wait_for(projects, "step1", status_is(ProjectStatus.PAUSED, ProjectStatus.FINISHED))
    assert [a.stage for a in p.history] == ["one"] and p.reason == "paused after one as asked at start", p.reason
    start_pipeline_run("step1", pause_after=True)
    p = wait_for(projects, "step1", status_is(ProjectStatus.WAITING, ProjectStatus.FINISHED))
    answer(p.waiting.run_id, Decision(action="continue"))  # type: ignore[union-attr]
    p = wait_for(projects, "step1", status_is(ProjectStatus.PAUSED, ProjectStatus.FINISHED))
    assert [a.stage for a in p.history] == ["one", "two"] and p.stages["three"] == StageState.PAUSED, p.reason


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


def test_events_of_a_failed_and_a_finished_project_and_a_pause_for_too_little_disk(pipelines: PipelineStore) -> None:
    """Issue 12: ``opsflow.pipeline.failed`` / ``.finished`` with the project (and stage) as resources, for a site's
    automations; a store with less free space than ``min_free_mb`` pauses before the stage instead of starting it."""
    define(pipelines, "events", "- {name: only, command: [sh, -c, 'exit ${CODE:-0}']}\n")
    projects = new_project(pipelines, "evfail", "events")
    new_project(pipelines, "evdone", "events")
    new_project(pipelines, "evdisk", "events")
    tight = PipelineStore(root=pipelines.root, docker_block=pipelines.docker_block, min_free_mb=2**40)
    tight.save("tightdisk", overwrite=True)
    start_pipeline_run("evfail", env={"CODE": "3"})
    start_pipeline_run("evdone")
    start_pipeline_run("evdisk", store_block="tightdisk")
    failed = wait_for(projects, "evfail", status_is(ProjectStatus.PAUSED))
    assert failed.reason == "only attempt 1: failed", failed.reason
    assert wait_for(projects, "evdone", status_is(ProjectStatus.FINISHED, ProjectStatus.PAUSED)).status == (
        ProjectStatus.FINISHED
    )
    tight_one = wait_for(projects, "evdisk", status_is(ProjectStatus.PAUSED))
    assert tight_one.reason.startswith("too little disk: ") and "only starts with at least" in tight_one.reason
    assert tight_one.history == []

    async def events() -> list[dict[str, Any]]:
        names = ["opsflow.pipeline.failed", "opsflow.pipeline.finished"]
        async with get_client() as client:
            found = await client._client.post("/events/filter", json={"filter": {"event": {"name": names}}})
            found.raise_for_status()
        return list(found.json()["events"])

    def both() -> dict[str, dict[str, Any]] | None:
        seen = {e["resource"]["prefect.resource.id"]: e for e in asyncio.run(events())}
        wanted = ("opsflow.pipeline.project.evfail", "opsflow.pipeline.project.evdone")
        return seen if all(w in seen for w in wanted) else None

    seen = wait_until(both, timeout_s=60)
    assert seen, "no opsflow.pipeline events for evfail and evdone"
    fail = seen["opsflow.pipeline.project.evfail"]
    assert fail["event"] == "opsflow.pipeline.failed" and fail["payload"]["reason"] == "only attempt 1: failed"
    assert fail["related"][0]["prefect.resource.id"] == "opsflow.pipeline.stage.evfail.only"
    assert seen["opsflow.pipeline.project.evdone"]["event"] == "opsflow.pipeline.finished"


ASKING_STAGE = """\
- name: tune
  command:
    - sh
    - -c
    - |
      echo '{"description": "Pick the threshold", "schema": {"properties": {"threshold": {"type": "integer",
       "minimum": 1}}, "required": ["threshold"]}}' > "$OPSFLOW_ASK/.tune"
      mv "$OPSFLOW_ASK/.tune" "$OPSFLOW_ASK/tune.request.json"
      while [ ! -e "$OPSFLOW_ASK/tune.answer.json" ]; do sleep 0.2; done
      cp "$OPSFLOW_ASK/tune.answer.json" answer.json
"""


def test_a_stage_asks_for_input_while_it_runs_and_continues_with_the_answer(pipelines: PipelineStore) -> None:
    """Seed 003 / issue 12: the stage writes a request with a JSON schema; its run pauses with a form built from
    it (the server refuses an answer outside the schema); the answer reaches the waiting stage, which goes on."""
    from opsflow.adapters.prefect_runs import answer_form
    from opsflow.errors import AdapterError

    define(pipelines, "asking", ASKING_STAGE)
    projects = new_project(pipelines, "ask1", "asking")
    start_pipeline_run("ask1")
    p = wait_for(
        projects, "ask1",
        lambda q: "asks for input 'tune'" in q.reason or q.status in (ProjectStatus.PAUSED, ProjectStatus.FINISHED),
    )  # fmt: skip
    assert p.status == ProjectStatus.RUNNING, p.reason
    stage_run_id = p.attempts_of("tune")[0].run_id
    assert stage_run_id is not None
    assert wait_until(lambda: flow_run_state(stage_run_id) == "PAUSED", timeout_s=60)
    with pytest.raises(AdapterError):
        answer_form(stage_run_id, {"threshold": 0})  # below the schema's minimum
    assert flow_run_state(stage_run_id) == "PAUSED"
    answer_form(stage_run_id, {"threshold": 7})
    p = wait_for(projects, "ask1", status_is(ProjectStatus.FINISHED, ProjectStatus.PAUSED))
    assert p.status == ProjectStatus.FINISHED, p.reason
    assert json.loads(workspace_file(projects, "ask1", "tune", 1, "answer.json").read_text()) == {"threshold": 7}


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
    # Without a grace the run's process exits when it asks: the answer restarts it from the top after the restart.
    start_pipeline_run("restart1", store_block=no_grace_store(pipelines))
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
    assert "the run continues in its process" not in run_log(run_id)


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
    # The stage runs in its own session: only a node's death takes it too (and the flow runs the node's warm
    # engine forked for its worker; the engine itself stays, as a restarted node's would be there again).
    engine = running_process(stack.home, "warm-engine")
    forked = engine.children(recursive=True) if engine is not None else []
    kill_and_wait([*worker.children(recursive=True), *forked, worker, *_sleepers("1002")])
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


def test_a_stage_whose_node_stops_answering_is_found_lost_by_the_waiting_project_run(
    stack: StackConfig, pipelines: PipelineStore
) -> None:
    """Issue 12: the watchdog. The stage's node stops (its worker, the stage-run process and the stage, frozen with
    SIGSTOP, so nobody is left to report anything) while the project run, on another node, waits for it: the
    project run sees the heartbeat go stale, marks the stage's run Crashed and pauses the project with the reason,
    without a resume. (Frozen rather than killed: here the project run's output goes through the same worker.)"""
    define(pipelines, "watchdog", "- {name: long, command: [sh, -c, 'sleep 1003']}\n- {name: end, command: ['true']}\n")
    projects = new_project(pipelines, "watch1", "watchdog")
    project_run = start_pipeline_run("watch1")
    wait_for(projects, "watch1", lambda q: q.stages["long"] == StageState.RUNNING)
    assert wait_until(lambda: _sleepers("1003"), timeout_s=60)
    stage_run_id = projects.get("watch1").attempts_of("long")[0].run_id
    worker = running_process(stack.home, "worker-cpu")
    assert worker is not None and stage_run_id is not None
    stage_node = _processes_of_run(stage_run_id, stop_at={worker.pid, *_warm_engine_pid(stack)})
    assert stage_node, "no process of the stage's flow run"
    for frozen in [worker, *stage_node]:
        frozen.suspend()
    try:
        _age_heartbeats(projects, "watch1")  # stale now rather than in 30 s
        p = wait_for(projects, "watch1", status_is(ProjectStatus.PAUSED, ProjectStatus.FINISHED), timeout_s=60)
        assert p.status == ProjectStatus.PAUSED and "its worker is gone" in p.reason, p.reason
        assert p.attempts_of("long")[0].outcome == AttemptOutcome.LOST and p.history[1:] == []
        assert flow_run_state(stage_run_id) == "CRASHED"
    finally:
        kill_and_wait(stage_node)  # that node is gone for good; the worker lives on
        worker.resume()
    assert wait_until(lambda: flow_run_state(str(project_run.id)) == "COMPLETED", timeout_s=30)


def test_killing_the_warm_engine_mid_stage_loses_nothing(stack: StackConfig, pipelines: PipelineStore) -> None:
    """Issue 15: the node's warm engine dies (kill -9) while a stage it forked runs: the stage runs on to its end
    under its launcher, the next stage starts cold, the project finishes; a restarted engine serves again."""
    define(
        pipelines, "warmkill",
        "- {name: slow, command: [sh, -c, 'sleep 1004; echo done > slow.txt']}\n"
        "- {name: after, command: [sh, -c, 'cat slow.txt']}\n",
    )  # fmt: skip
    projects = new_project(pipelines, "warm1", "warmkill")
    engine = running_process(stack.home, "warm-engine")
    assert engine is not None, "the stack's warm engine is not running"
    start_pipeline_run("warm1")
    wait_for(projects, "warm1", lambda q: q.stages["slow"] == StageState.RUNNING)
    assert wait_until(lambda: _sleepers("1004"), timeout_s=60)
    stage_run_id = projects.get("warm1").attempts_of("slow")[0].run_id
    assert stage_run_id is not None
    forked = [c for c in engine.children(recursive=True) if _flow_run_of(c) == stage_run_id]
    assert forked, "the stage's flow run was not forked by the warm engine"
    try:
        kill_and_wait([engine])
        for sleeper in _sleepers("1004"):  # end the stage now rather than in 1004 s: it exits 0 by itself then
            sleeper.terminate()
        p = wait_for(projects, "warm1", status_is(ProjectStatus.FINISHED, ProjectStatus.PAUSED))
        assert p.status == ProjectStatus.FINISHED, p.reason
        assert [(a.stage, a.outcome) for a in p.history] == [
            ("slow", AttemptOutcome.SUCCEEDED), ("after", AttemptOutcome.SUCCEEDED),
        ]  # fmt: skip
        assert "done" in projects.log_path("warm1", "after", 1).read_text()
        assert wait_until(lambda: flow_run_state(stage_run_id) == "COMPLETED", timeout_s=30)
    finally:
        (warm,) = components(stack, ["warm-engine"])
        assert warm.start(), "the warm engine did not come back"


def _warm_engine_pid(stack: StackConfig) -> list[int]:
    engine = running_process(stack.home, "warm-engine")
    return [engine.pid] if engine is not None else []


def _processes_of_run(run_id: str, stop_at: set[int]) -> list[psutil.Process]:
    """Every process of one flow run: those whose environment names it (its launcher, the stage's tree) and their
    ancestors up to ``stop_at`` (the engine a warm engine forked does not show the run's environment)."""
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter():
        if _flow_run_of(proc) != run_id:
            continue
        found[proc.pid] = proc
        with contextlib.suppress(psutil.Error):
            for parent in proc.parents():
                if parent.pid in stop_at or parent.pid == 1:
                    break
                found[parent.pid] = parent
    return list(found.values())


def _flow_run_of(process: psutil.Process) -> str | None:
    try:
        return process.environ().get("PREFECT__FLOW_RUN_ID")
    except psutil.Error:
        return None


def _age_heartbeats(projects: ProjectStore, name: str) -> None:
    """The heartbeat is taken as stale after 30 s; make it so now rather than wait."""
    import os

    for beat in (projects.project_dir(name) / "heartbeats").glob("*"):
        os.utime(beat, (time.time() - 3600, time.time() - 3600))


def test_node_monitor_deployment_reports_every_node_in_one_table(stack: StackConfig) -> None:
    """The stack's `nodes` component publishes this machine; the run joins it with the workers of every pool."""
    import socket

    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    from flows.node_monitor import ARTIFACT_KEY
    from opsflow.stack.demo import run_and_wait

    run = run_and_wait("node-monitor/node-monitor", {}, timeout_s=180)
    assert run.state is not None and run.state.is_completed(), run.state
    ours = ArtifactFilter(
        key=ArtifactFilterKey(any_=[ARTIFACT_KEY]), flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])
    )
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ours)
    assert len(found) == 1, f"not one {ARTIFACT_KEY} artifact of run {run.id}: {found}"
    data: Any = found[0].data
    rows = json.loads(data) if isinstance(data, str) else data  # a table artifact's rows, stored as JSON
    (row,) = [r for r in rows if r["node"] == socket.gethostname()]
    assert "cpu ONLINE" in row["pools"] and f"opsflow-cpu-{socket.gethostname()}" in row["workers"], row
    assert row["sample"].endswith(" ago") and not row["sample"].startswith(("STALE", "MISSING")), row
    assert 0 <= row["cpu %"] <= 100 and row["cores"] >= 1, row
