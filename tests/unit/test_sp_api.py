"""The staged-pipeline API (``site.pipelines``) against a temporary store: listing, files, logs, and the run verbs
(start, answer, resume, wait) with Prefect's side replaced by recorders, so no server is needed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from opsflow.api import connect
from opsflow.api.pipelines import (
    Answered,
    Expectation,
    PipelinesAPI,
    ProjectHandle,
    RunStarted,
    WaitTimeout,
    env_overrides,
    wait_done,
)
from opsflow.errors import InputError, NotFoundError
from opsflow.tables import Records
from stage_pipeline.models import AttemptOutcome, PendingDecision, ProjectStateError, ProjectStatus
from stage_pipeline.steps import Decision
from stage_pipeline.store import ProjectNotFound

TWO = "name: two\nstages:\n  - {name: a, command: [x], approval: after}\n  - {name: b, command: [y]}\n"


@pytest.fixture
def api(tmp_path: Path) -> PipelinesAPI:
    api = connect(home=tmp_path / "home").pipelines
    api.library.save(TWO)
    return api


@pytest.fixture
def project(api: PipelinesAPI) -> ProjectHandle:
    return api.create("traffic", pipeline="two")


def pending(key: str = "a-86f7e4-1-after", run_id: str = "run-1") -> PendingDecision:
    return PendingDecision(key=key, stage="a", when="after", attempt=1, run_id=run_id, asked=datetime.now(UTC))


# --- where the store is ----------------------------------------------------------------------------------------
def test_the_local_stack_store_is_under_home(tmp_path: Path) -> None:
    api = connect(home=tmp_path / "home").pipelines
    assert api.root == (tmp_path / "home" / "pipelines").resolve() and api.block_name == "local"


def test_a_site_reads_the_store_root_from_its_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = connect(home=tmp_path, api_url="http://prefect.example/api", block="prod")
    asked: list[tuple[str, str | None]] = []

    def values(slug: str, name: str | None = None) -> dict[str, Any]:
        asked.append((slug, name))
        return {"root": "/shared/pipelines", "docker_block": None}

    monkeypatch.setattr(site, "block_values", values)
    assert site.pipelines.root == Path("/shared/pipelines")
    assert PipelinesAPI(site, store_block="other").block_name == "other"
    assert asked == [("opsflow-pipeline-store", "prod")]


# --- definitions and projects ----------------------------------------------------------------------------------
def test_definitions_list_valid_and_invalid_files(api: PipelinesAPI) -> None:
    (api.library.root / "bad.yaml").write_text("name: bad\nstages: []\n")
    rows = api.definitions()
    assert isinstance(rows, Records)
    assert [(r.name, r.stages) for r in rows] == [("bad", 0), ("two", 2)]
    assert rows[0].problem.endswith("bad.yaml:2: stages: a pipeline needs at least one stage (got [])")
    assert "| two | 2 |" in rows._repr_markdown_()


def test_show_and_validate(api: PipelinesAPI, tmp_path: Path) -> None:
    assert api.show("two") == TWO
    path = tmp_path / "anything.yaml"
    path.write_text(TWO)
    assert api.validate(path).stage_names == ["a", "b"]  # a file outside the library may have any name
    with pytest.raises(NotFoundError):
        api.show("three")


def test_projects_are_records_with_their_status(api: PipelinesAPI, project: ProjectHandle) -> None:
    project.tag("x")
    rows = api.projects()
    assert [(r.name, r.pipeline, r.status, r.tags) for r in rows] == [("traffic", "two", "IDLE", ["x"])]
    assert rows.to_frame().loc[0, "status"] == "IDLE"
    with pytest.raises(ProjectNotFound):
        api.project("nope")


def test_rename_set_pipeline_and_delete(api: PipelinesAPI, project: ProjectHandle) -> None:
    api.library.save("name: one\nstages:\n  - {name: b, command: [y]}\n")
    assert project.rename("roads").name == "roads" and project.name == "roads"
    assert list(project.set_pipeline("one").stages) == ["b"]
    project.delete()
    assert api.projects() == []


# --- history, logs, files ---------------------------------------------------------------------------------------
def run_attempt(api: PipelinesAPI, stage: str, lines: list[str], files: dict[str, bytes]) -> int:
    store = api.store
    attempt = store.begin_attempt("traffic", stage, {"K": "1"})
    workspace = store.workspace("traffic", attempt)
    for name, data in files.items():
        (workspace / name).parent.mkdir(parents=True, exist_ok=True)
        (workspace / name).write_bytes(data)
    log = store.log_path("traffic", stage, attempt.attempt)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("".join(line + "\n" for line in lines))
    store.end_attempt("traffic", stage, attempt.attempt, AttemptOutcome.SUCCEEDED, 0, [])
    return attempt.attempt


def test_logs_and_files_of_the_latest_or_a_chosen_attempt(api: PipelinesAPI, project: ProjectHandle) -> None:
    run_attempt(api, "a", ["first try"], {"out/boxes.csv": b"1,2,3"})
    run_attempt(api, "a", ["second try", "done"], {"out/boxes.csv": b"1,2", "notes.txt": b""})
    log = project.logs()
    assert log == ["second try", "done"] and (log.stage, log.attempt) == ("a", 2)
    assert project.logs("a", 1) == ["first try"]
    files = project.files("a", 1)
    assert [(f.path, f.size) for f in files] == [("out/boxes.csv", 5)]
    assert [f.path for f in project.files()] == ["notes.txt", "out/boxes.csv"]
    assert isinstance(files[0].mtime, datetime)
    assert [(a.stage, a.attempt) for a in project.history()] == [("a", 1), ("a", 2)]
    with pytest.raises(NotFoundError, match="no attempt 3 of stage 'a'"):
        project.logs("a", 3)


def test_a_log_not_written_yet_is_empty(api: PipelinesAPI, project: ProjectHandle) -> None:
    api.store.begin_attempt("traffic", "a", {})
    assert project.logs() == [] and project.files() == []


def test_a_project_renders_as_tables(api: PipelinesAPI, project: ProjectHandle) -> None:
    run_attempt(api, "a", [], {})
    html = project._repr_html_()
    assert "<th>a</th>" in html and "SUCCEEDED" in html and "K=1" in html
    assert "| stage | attempt | outcome |" in project.show()._repr_markdown_()


def test_abort_needs_a_running_stage_and_pause_is_a_request(project: ProjectHandle) -> None:
    with pytest.raises(ProjectStateError, match="no stage is running"):
        project.abort()
    assert project.pause().pause_requested


# --- inputs ---------------------------------------------------------------------------------------------------
def test_env_overrides_come_as_a_mapping_or_key_value_strings() -> None:
    assert env_overrides(None) == {} and env_overrides(["A=1", "B="]) == {"A": "1", "B": ""}
    with pytest.raises(InputError, match="not an environment variable name"):
        env_overrides({"1A": "x"})


# --- the run verbs, with Prefect's side recorded ------------------------------------------------------------------
class FakePrefect:
    """Stands in for :mod:`stage_pipeline.prefect_api` (and the site's Prefect settings)."""

    def __init__(self) -> None:
        self.started: list[dict[str, Any]] = []
        self.answers: list[tuple[str, Any]] = []
        self.ended: dict[str, str] = {}

    def start_pipeline_run(self, project: str, start: str | None, pause_after: bool, env: dict[str, str],
                           block: str) -> Any:  # fmt: skip
        self.started.append({"project": project, "start": start, "pause_after": pause_after, "env": env,
                             "block": block})  # fmt: skip
        return SimpleNamespace(id=f"run-{len(self.started)}", name=f"happy-run-{len(self.started)}")

    # The site's REST client (answers go to Prefect's REST API, without importing Prefect).
    def __enter__(self) -> FakePrefect:
        return self

    def __exit__(self, *_: object) -> None:
        pass

    def answer_form(self, run_id: str, values: dict[str, Any], timeout_s: float) -> None:
        self.answers.append((run_id, Decision.model_validate(values)))

    def flow_run_end(self, run_id: str) -> str | None:
        return self.ended.get(run_id)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, api: PipelinesAPI) -> Iterator[FakePrefect]:
    from contextlib import nullcontext

    from stage_pipeline import prefect_api

    fake = FakePrefect()
    monkeypatch.setattr(prefect_api, "start_pipeline_run", fake.start_pipeline_run)
    monkeypatch.setattr(api.site, "prefect", nullcontext)
    monkeypatch.setattr(api.site, "rest", lambda: fake)
    yield fake


def test_start_passes_where_to_start_and_the_overrides(fake: FakePrefect, project: ProjectHandle) -> None:
    started = project.start(env=["MIN_AREA=80"], pause_after=True)
    assert isinstance(started, RunStarted) and started.stage == "a" and "happy-run-1" in started.message
    assert fake.started == [
        {"project": "traffic", "start": "a", "pause_after": True, "env": {"MIN_AREA": "80"}, "block": "local"}
    ]


def test_answer_needs_a_waiting_decision_and_a_valid_action(
    fake: FakePrefect, api: PipelinesAPI, project: ProjectHandle
) -> None:
    with pytest.raises(ProjectStateError, match="waits for no decision"):
        project.answer("continue")
    api.store.ask("traffic", pending())
    with pytest.raises(InputError, match="expected continue, redo, goto or stop"):
        project.answer("explode")
    with pytest.raises(InputError, match="needs the stage"):
        project.answer("goto")
    with pytest.raises(NotFoundError, match="no stage 'zz'"):
        project.answer("goto", stage="zz")
    done = project.answer("redo", env={"MIN_AREA": "80"}, comment="too many boxes")
    assert isinstance(done, Answered) and done.message == "traffic: answered redo to the decision after a"
    ((run_id, decision),) = fake.answers
    assert run_id == "run-1" and decision.env == {"MIN_AREA": "80"} and decision.comment == "too many boxes"


def test_resume_answers_a_live_form_and_restarts_when_its_run_is_gone(
    fake: FakePrefect, api: PipelinesAPI, project: ProjectHandle
) -> None:
    api.store.ask("traffic", pending())
    assert isinstance(project.resume(stage="b"), Answered)
    assert fake.answers[-1][1].action == "goto" and fake.answers[-1][1].goto_stage == "b"
    fake.ended["run-1"] = "Cancelled: by the user"  # its run no longer waits: a new run takes over
    started = project.resume(env={"K": "v"})
    assert isinstance(started, RunStarted) and fake.started[-1]["env"] == {"K": "v"}


def scripted_sleep(steps: list[Callable[[], object]]) -> Callable[[float], None]:
    """A ``time.sleep`` that, at each call, applies the next change to the store (what the flow would do)."""

    def sleep(_: float) -> None:
        if steps:
            steps.pop(0)()

    return sleep


def test_wait_ignores_the_state_from_before_its_run_then_returns_the_decision(
    fake: FakePrefect, api: PipelinesAPI, project: ProjectHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.store.pause("traffic", "an earlier run stopped")  # at rest: would end a wait at once, but it is old
    project.start()
    monkeypatch.setattr(
        "opsflow.api.pipelines.time.sleep",
        scripted_sleep([
            lambda: None,
            lambda: api.store.take_over("traffic", "run-1", None),
            lambda: api.store.ask("traffic", pending()),
        ]),
    )  # fmt: skip
    decision = project.wait("waiting", timeout=30, progress=False)
    assert isinstance(decision, PendingDecision) and decision.stage == "a"


def test_wait_after_an_answer_skips_the_answered_decision(
    fake: FakePrefect, api: PipelinesAPI, project: ProjectHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.store.take_over("traffic", "run-1", None)
    api.store.ask("traffic", pending())
    project.answer("redo")
    monkeypatch.setattr(
        "opsflow.api.pipelines.time.sleep",
        scripted_sleep([
            lambda: api.store.answered("traffic", "a", "", "redo after the decision after a"),
            lambda: api.store.ask("traffic", pending(key="a-86f7e4-2-after")),
        ]),
    )  # fmt: skip
    assert project.wait("waiting", progress=False).key == "a-86f7e4-2-after"


def test_wait_fails_when_the_project_rests_elsewhere_or_time_runs_out(
    fake: FakePrefect, api: PipelinesAPI, project: ProjectHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.store.take_over("traffic", "run-0", None)
    monkeypatch.setattr(
        "opsflow.api.pipelines.time.sleep",
        scripted_sleep([lambda: api.store.pause("traffic", "a attempt 1: failed")]),
    )
    with pytest.raises(ProjectStateError, match=r"PAUSED \(a attempt 1: failed\): it will not be finished"):
        project.wait("finished", progress=False)
    api.store.take_over("traffic", "run-0", None)
    monkeypatch.setattr("opsflow.api.pipelines.time.sleep", lambda _: None)
    with pytest.raises(WaitTimeout, match="not waiting after 0 s"):
        project.wait("waiting", timeout=0.0, progress=False)


def test_wait_fails_when_the_started_run_ended_without_taking_the_project_over(
    fake: FakePrefect, project: ProjectHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.start()
    fake.ended["run-1"] = "Failed: traffic: stage a attempt 1 is still running"
    clock = iter(range(0, 1000, 3))
    monkeypatch.setattr("opsflow.api.pipelines.time.monotonic", lambda: float(next(clock)))
    monkeypatch.setattr("opsflow.api.pipelines.time.sleep", lambda _: None)
    with pytest.raises(ProjectStateError, match="ended before taking the project over: Failed: traffic"):
        project.wait("finished", progress=False)


def test_wait_done_waits_through_a_pending_decision_for_finished(project: ProjectHandle, api: PipelinesAPI) -> None:
    api.store.take_over("traffic", "run-1", None)
    api.store.ask("traffic", pending())
    p = project.status
    assert p.status == ProjectStatus.WAITING
    assert wait_done(p, "finished", Expectation()) is False
    assert wait_done(p, "waiting", Expectation(answered=p.waiting.key)) is False  # type: ignore[union-attr]
    assert wait_done(p, "waiting", Expectation(run_id="run-1")) is True
    assert wait_done(p, "waiting", Expectation(run_id="run-2")) is False  # a newer run has not taken over yet
