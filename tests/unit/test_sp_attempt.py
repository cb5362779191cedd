"""A running attempt's side work (what `stage-run` hands its runner): log file, heartbeat, abort polling, progress,
and how it is recorded at the end. A fake clock drives it; a real shell stage checks the wiring once."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stage_pipeline.attempt import HEARTBEAT_S, AttemptWatch, outcome_of, stage_job
from stage_pipeline.definition import parse_definition
from stage_pipeline.models import AttemptOutcome, StageAttempt
from stage_pipeline.runners import RunOutcome, ShellRunner
from stage_pipeline.store import ProjectStore
from stage_pipeline.workspace import prepare_workspace

DEF = parse_definition(
    "name: p\nstages:\n  - name: a\n    command: [x]\n    progress_regex: 'frame (?P<done>\\d+)/(?P<total>\\d+)'\n"
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> ProjectStore:
    store = ProjectStore(tmp_path)
    store.create("demo", DEF)
    return store


def test_lines_go_to_the_log_and_progress_is_throttled(store: ProjectStore) -> None:
    attempt = store.begin_attempt("demo", "a", {})
    clock, logged, progress = Clock(), [], []
    watch = AttemptWatch(
        store, "demo", attempt, DEF.stages[0], lambda e, line: logged.append((e, line)),
        lambda f, eta: progress.append(f), clock,
    )  # fmt: skip
    with watch:
        for i, step in enumerate([0.0, 0.5, 0.5, 2.5, 0.1], start=1):
            clock.now += step
            watch.on_line(f"frame {i}/5")
        watch.on_line("error: frame 6 missing")
    assert progress == [0.2, 0.8, 1.0]  # first at once, then every 2 s, and the end always
    assert logged[-1] == (True, "error: frame 6 missing")
    assert store.log_path("demo", "a", 1).read_text().splitlines()[-1] == "error: frame 6 missing"


def test_the_heartbeat_and_the_abort_flag_are_read_every_two_seconds(store: ProjectStore) -> None:
    attempt = store.begin_attempt("demo", "a", {})
    clock = Clock()
    with AttemptWatch(store, "demo", attempt, DEF.stages[0], lambda e, line: None, clock=clock) as watch:
        beat = watch.heartbeat
        assert beat.exists()
        store.request_abort("demo")
        assert watch.should_abort() is False  # not read yet: the runner polls every 0.2 s
        clock.now += HEARTBEAT_S
        assert watch.should_abort() is True
        watch.finish(AttemptOutcome.ABORTED, RunOutcome(exit_code=-15, aborted=True, started=_t(), ended=_t()))
    assert not beat.exists()
    project = store.get("demo")
    assert project.history[0].outcome == AttemptOutcome.ABORTED and not project.abort_requested


def _t() -> datetime:
    return datetime.now(UTC)


@pytest.mark.parametrize(
    ("result", "outcome"),
    [
        (RunOutcome(exit_code=0, started=_t(), ended=_t()), AttemptOutcome.SUCCEEDED),
        (RunOutcome(exit_code=2, started=_t(), ended=_t()), AttemptOutcome.FAILED),
        (RunOutcome(exit_code=-9, timed_out=True, started=_t(), ended=_t()), AttemptOutcome.TIMED_OUT),
    ],
)
def test_outcome_of(result: RunOutcome, outcome: AttemptOutcome) -> None:
    assert outcome_of(result) == outcome


def test_a_shell_stage_through_the_watch_is_recorded_with_its_errors(store: ProjectStore, tmp_path: Path) -> None:
    defn = parse_definition(
        "name: p\nstages:\n  - name: a\n    command: [x]\n"  # the command is replaced below
    )
    attempt: StageAttempt = store.begin_attempt("demo", "a", {"WHO": "stage"})
    workspace = prepare_workspace(store.project_dir("demo"), "a", 1, None)
    job = stage_job("demo", defn.stages[0], attempt, workspace, tmp_path / "resources")
    job = job.model_copy(
        update={"argv": [sys.executable, "-c", "import os; print(os.environ['WHO']); print('ERROR x')"]}
    )
    with AttemptWatch(store, "demo", attempt, defn.stages[0], lambda e, line: None) as watch:
        result = ShellRunner().run(job, watch.on_line, watch.should_abort)
    watch.finish(outcome_of(result), result)
    done = store.get("demo").history[0]
    assert (done.outcome, done.error_count, done.errors) == (AttemptOutcome.SUCCEEDED, 1, ["ERROR x"])
    assert store.log_path("demo", "a", 1).read_text() == "stage\nERROR x\n"
    assert "attempt 1: succeeded (exit code 0)" in watch.summary(AttemptOutcome.SUCCEEDED, 0)
