"""Projects on disk: create, rename, definition change, tags, delete, attempts, pause/abort, lost stages."""

from __future__ import annotations

import json
import os
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stage_pipeline.definition import parse_definition
from stage_pipeline.library import PipelineLibrary
from stage_pipeline.models import (
    STALE_AFTER_S,
    AttemptOutcome,
    PendingDecision,
    Project,
    ProjectStateError,
    ProjectStatus,
    StageState,
    attempt_is_lost,
)
from stage_pipeline.store import ProjectExists, ProjectNotFound, ProjectStore
from stage_pipeline.workspace import prepare_workspace, seal

TEXT = "name: p\n# kept as written\nstages:\n  - {name: a, command: [x]}\n  - {name: b, command: [y]}\n"
DEF = parse_definition(TEXT)


@pytest.fixture
def store(tmp_path: Path) -> ProjectStore:
    return ProjectStore(tmp_path / "store")


def test_create_keeps_its_own_copy_of_the_definition(store: ProjectStore, tmp_path: Path) -> None:
    lib = PipelineLibrary(tmp_path / "pipelines")
    lib.save(TEXT)
    store.create("demo", lib.get("p"), lib.text("p"))
    lib.delete("p")  # req. 1130: deleting the definition never breaks the project
    project = store.get("demo")
    assert project.definition == DEF and project.definition_text == TEXT
    assert project.stages == {"a": StageState.PENDING, "b": StageState.PENDING}
    assert project.status == ProjectStatus.IDLE
    on_disk = json.loads((store.project_dir("demo") / "project.json").read_text())
    assert on_disk["definition_text"] == TEXT and on_disk["definition"]["name"] == "p"


def test_create_refuses_an_existing_or_unsafe_name(store: ProjectStore) -> None:
    store.create("demo", DEF)
    with pytest.raises(ProjectExists):
        store.create("demo", DEF)
    for bad in ["../escape", "a/b", ".hidden", "UPPER", ""]:
        with pytest.raises(ValueError, match="invalid project name"):
            store.create(bad, DEF)
    assert store.list() == ["demo"]
    assert sorted(p.name for p in store.projects_dir.iterdir()) == ["demo"]  # no temporary left behind


def test_get_unknown_project_is_a_clear_key_error(store: ProjectStore) -> None:
    with pytest.raises(ProjectNotFound) as info:
        store.get("nope")
    assert isinstance(info.value, KeyError)
    assert str(info.value).startswith("no project 'nope' under ")
    with pytest.raises(ProjectNotFound):
        store.tag("nope", "x")


def test_rename_moves_the_directory_and_refuses_an_existing_target(store: ProjectStore) -> None:
    store.create("one", DEF)
    store.create("two", DEF)
    attempt = store.begin_attempt("one", "a", {})
    prepare_workspace(store.project_dir("one"), "a", 1, None).joinpath("f").write_text("x")
    store.end_attempt("one", "a", 1, AttemptOutcome.SUCCEEDED, 0, [])
    store.set_status("one", ProjectStatus.PAUSED, "between stages")
    with pytest.raises(ProjectExists):
        store.rename("one", "two")
    renamed = store.rename("one", "uno")
    assert renamed.name == "uno" and store.get("uno").name == "uno"
    assert store.list() == ["two", "uno"]
    assert not store.project_dir("one").exists()
    assert store.workspace("uno", attempt).joinpath("f").read_text() == "x"  # relative paths survive
    with pytest.raises(ProjectNotFound):
        store.get("one")


def test_set_definition_keeps_states_by_name_and_is_refused_while_running(store: ProjectStore) -> None:
    store.create("demo", DEF)
    attempt = store.begin_attempt("demo", "a", {"K": "1"})
    other = parse_definition("name: q\nstages:\n  - {name: a, command: [x]}\n  - {name: c, command: [z]}\n")
    with pytest.raises(ValueError, match="running stage"):
        store.set_definition("demo", other)
    store.end_attempt("demo", "a", attempt.attempt, AttemptOutcome.SUCCEEDED, 0, [])
    project = store.set_definition("demo", other)
    assert project.stages == {"a": StageState.SUCCEEDED, "c": StageState.PENDING}
    assert project.definition.name == "q" and "name: q" in project.definition_text
    assert len(project.history) == 1


def test_tags_are_idempotent_and_sorted(store: ProjectStore) -> None:
    store.create("demo", DEF)
    store.tag("demo", "night", "a9")
    assert store.tag("demo", "night").tags == ["a9", "night"]
    assert store.untag("demo", "night", "never-set").tags == ["a9"]
    assert store.get("demo").tags == ["a9"]
    with pytest.raises(ValueError):
        store.tag("demo", " ")


def test_delete_removes_everything_including_sealed_workspaces(store: ProjectStore) -> None:
    store.create("demo", DEF)
    ws = prepare_workspace(store.project_dir("demo"), "a", 1, None)
    (ws / "sub").mkdir()
    (ws / "sub" / "out.bin").write_bytes(b"1234")
    seal(ws)
    assert not stat.S_IMODE((ws / "sub").stat().st_mode) & stat.S_IWUSR
    store.delete("demo")
    assert store.list() == []
    assert list(store.projects_dir.iterdir()) == []
    with pytest.raises(ProjectNotFound):
        store.delete("demo")
    store.create("demo", DEF)  # the name is free again
    assert store.get("demo").history == []


def test_attempts_history_and_redo(store: ProjectStore) -> None:
    store.create("demo", DEF)
    first = store.begin_attempt("demo", "a", {"MIN_AREA": "40"})
    assert (first.attempt, first.workspace) == (1, "stages/a/1")
    assert store.get("demo").stages["a"] == StageState.RUNNING
    with pytest.raises(ValueError, match="already running"):
        store.begin_attempt("demo", "a", {})
    ended = store.end_attempt("demo", "a", 1, AttemptOutcome.FAILED, 2, ["ERROR: x"], error_count=7)
    assert (ended.exit_code, ended.errors, ended.error_count) == (2, ["ERROR: x"], 7)
    assert ended.ended is not None and ended.ended >= ended.started
    assert store.get("demo").stages["a"] == StageState.FAILED
    redo = store.begin_attempt("demo", "a", {"MIN_AREA": "60"})
    store.end_attempt("demo", "a", redo.attempt, AttemptOutcome.SUCCEEDED, 0, [])
    project = store.get("demo")
    assert [(h.attempt, h.env["MIN_AREA"], h.outcome) for h in project.history] == [
        (1, "40", AttemptOutcome.FAILED),
        (2, "60", AttemptOutcome.SUCCEEDED),
    ]
    assert project.stages["a"] == StageState.SUCCEEDED
    input_of_b = project.input_attempt("b")
    assert input_of_b is not None and input_of_b.attempt == 2
    assert project.input_attempt("a") is None


def test_begin_and_end_are_idempotent(store: ProjectStore) -> None:
    store.create("demo", DEF)
    a1 = store.begin_attempt("demo", "a", {}, run_id="run-1")
    assert store.begin_attempt("demo", "a", {}, run_id="run-1") == a1  # a retried task: same attempt
    store.end_attempt("demo", "a", 1, AttemptOutcome.SUCCEEDED, 0, [])
    again = store.end_attempt("demo", "a", 1, AttemptOutcome.FAILED, 1, ["late"])
    assert again.outcome == AttemptOutcome.SUCCEEDED and len(store.get("demo").history) == 1


def test_pause_abort_and_status_with_reason(store: ProjectStore) -> None:
    store.create("demo", DEF)
    assert store.request_pause("demo").pause_requested
    assert not store.clear_pause("demo").pause_requested
    reason = "no fitting node: no online worker in pool gpu"
    project = store.set_status("demo", ProjectStatus.PAUSED, reason)
    assert (project.status, project.reason) == (ProjectStatus.PAUSED, reason)
    assert store.get("demo").reason == reason
    attempt = store.begin_attempt("demo", "a", {})
    assert store.request_abort("demo").abort_requested
    store.end_attempt("demo", "a", attempt.attempt, AttemptOutcome.ABORTED, -9, [])
    project = store.get("demo")
    assert project.stages["a"] == StageState.FAILED and not project.abort_requested


def test_recover_stale_marks_the_running_attempt_lost(store: ProjectStore) -> None:
    store.create("demo", DEF)
    store.begin_attempt("demo", "a", {})
    lost = store.recover_stale("demo", "worker process killed")
    assert [(a.stage, a.attempt, a.outcome) for a in lost] == [("a", 1, AttemptOutcome.LOST)]
    project = store.get("demo")
    assert project.stages["a"] == StageState.FAILED
    assert project.status == ProjectStatus.PAUSED and "worker process killed" in project.reason
    assert store.recover_stale("demo") == []  # nothing running any more
    assert store.begin_attempt("demo", "a", {}).attempt == 2  # resumable


def test_a_stale_heartbeat_means_lost_a_fresh_one_refuses_the_takeover(store: ProjectStore) -> None:
    store.create("demo", DEF)
    store.begin_attempt("demo", "a", {}, run_id="stage-run-1")
    project = store.get("demo")
    assert store.heartbeats(project) == {("a", 1): None}  # never written: lost
    beat = store.heartbeat_path("demo", "a", 1)
    beat.parent.mkdir(parents=True)
    beat.touch()
    os.utime(beat, (1_000_000_000, 1_000_000_000))
    beats = store.heartbeats(project)
    old = datetime.fromtimestamp(1_000_000_000, UTC)
    assert beats == {("a", 1): old}
    (lost,) = project.lost_attempts(beats, old + timedelta(seconds=STALE_AFTER_S))
    assert (lost.stage, lost.attempt, lost.run_id, lost.lost) == ("a", 1, "stage-run-1", True)
    with pytest.raises(ProjectStateError, match="attempt 1 is still running \\(heartbeat 29 s ago\\)"):
        project.lost_attempts(beats, old + timedelta(seconds=STALE_AFTER_S - 1))
    assert attempt_is_lost(STALE_AFTER_S) and not attempt_is_lost(STALE_AFTER_S - 0.1)


def test_a_takeover_closes_lost_attempts_forgets_an_orphan_decision_and_runs(store: ProjectStore) -> None:
    store.create("demo", DEF)
    store.begin_attempt("demo", "a", {})
    decision = PendingDecision(key="k", stage="a", when="after", attempt=1, run_id="old", asked=datetime.now(UTC))
    store.update("demo", lambda p: setattr(p, "waiting", decision))
    project = store.take_over("demo", "new", None)
    assert project.attempts_of("a")[0].outcome == AttemptOutcome.LOST and project.waiting is None
    assert (project.run_id, project.status) == ("new", ProjectStatus.RUNNING)
    assert project.reason == "run new started at a"  # the failed stage is where it goes on


def test_a_decision_is_asked_then_answered_with_its_comment_kept(store: ProjectStore) -> None:
    store.create("demo", DEF)
    store.begin_attempt("demo", "a", {})
    store.end_attempt("demo", "a", 1, AttemptOutcome.SUCCEEDED, 0, [])
    asked = PendingDecision(key="k", stage="b", when="before", attempt=1, run_id="r", asked=datetime.now(UTC))
    project = store.ask("demo", asked)
    assert project.status == ProjectStatus.WAITING and project.stages["b"] == StageState.PAUSED
    project = store.answered("demo", "a", "looks right", "continue after the decision before b")
    assert project.waiting is None and project.status == ProjectStatus.RUNNING
    assert project.history[0].comment == "looks right"


def test_a_pause_in_front_of_a_stage_marks_it_paused(store: ProjectStore) -> None:
    store.create("demo", DEF)
    store.request_pause("demo")
    project = store.pause("demo", "paused on request before b", before="b")
    assert (project.status, project.stages["b"], project.pause_requested) == (ProjectStatus.PAUSED, "PAUSED", False)


def test_a_crash_mid_write_leaves_the_old_project_json(store: ProjectStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.create("demo", DEF)
    before = (store.project_dir("demo") / "project.json").read_text()

    def crash(src: object, dst: object) -> None:
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        store.tag("demo", "x")
    monkeypatch.undo()
    assert (store.project_dir("demo") / "project.json").read_text() == before
    assert [p.name for p in store.project_dir("demo").iterdir() if p.name.endswith(".tmp")] == []


def test_concurrent_updates_are_not_lost(store: ProjectStore) -> None:
    store.create("demo", DEF)
    errors: list[BaseException] = []

    def add(i: int) -> None:
        try:
            store.tag("demo", f"t{i}")
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.get("demo").tags == sorted(f"t{i}" for i in range(8))


def test_project_json_round_trips(store: ProjectStore) -> None:
    store.create("demo", DEF)
    store.begin_attempt("demo", "a", {"X": "1"})
    project = store.get("demo")
    assert Project.model_validate_json(project.model_dump_json()) == project


@pytest.mark.parametrize("status", [ProjectStatus.RUNNING, ProjectStatus.WAITING])
def test_rename_and_delete_are_refused_while_a_run_drives_the_project(
    store: ProjectStore, status: ProjectStatus
) -> None:
    store.create("busy", DEF)
    store.set_status("busy", status, "a run drives it")
    with pytest.raises(ProjectStateError, match=f"cannot rename project 'busy' while it is {status.value}"):
        store.rename("busy", "other")
    with pytest.raises(ProjectStateError, match="cannot delete"):
        store.delete("busy")
    assert store.list() == ["busy"]
    assert store.rename("busy", "other", force=True).name == "other"  # its run is known to be gone
    store.delete("other", force=True)
    assert store.list() == []


def test_a_running_attempt_blocks_delete_even_when_paused(store: ProjectStore) -> None:
    store.create("p", DEF)
    store.begin_attempt("p", "a", {})
    store.set_status("p", ProjectStatus.PAUSED, "paused with a stage still running")
    with pytest.raises(ProjectStateError, match="cannot delete"):
        store.delete("p")
