"""Where a pipeline run goes next, and the approval form's schema (what the Prefect server validates against)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from flows.pipeline_run import decision_form
from stage_pipeline.definition import parse_definition
from stage_pipeline.models import AttemptOutcome, Project, ProjectStateError, ProjectStatus
from stage_pipeline.steps import (
    Decision,
    Step,
    attempt_problem,
    decision_key,
    first_stage,
    next_step,
    no_fitting_node,
)
from stage_pipeline.store import ProjectStore

DEFN = parse_definition(
    "name: p\nstages:\n  - {name: a, command: [x]}\n  - {name: b, command: [y]}\n  - {name: c, command: [z]}\n"
)
T = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("when", "decision", "step"),
    [
        ("after", Decision(action="continue"), Step(stage="c")),
        ("before", Decision(action="continue", env={"K": "v"}), Step(stage="b", env={"K": "v"})),
        ("after", Decision(action="redo", env={"K": "v"}), Step(stage="b", env={"K": "v"})),
        ("after", Decision(action="goto", goto_stage="a", env={"X": "1"}), Step(stage="a", env={"X": "1"})),
        ("after", Decision(action="stop"), Step(stage=None, stop=True)),
        ("after", Decision(action="goto"), Step(stage=None, problem="goto needs goto_stage")),
        ("after", Decision(action="goto", goto_stage="zz"), Step(stage=None, problem="no stage 'zz' in p")),
    ],
)
def test_next_step(when: str, decision: Decision, step: Step) -> None:
    assert next_step(DEFN, "b", when, decision) == step  # type: ignore[arg-type]


def test_continue_after_the_last_stage_ends_the_run() -> None:
    assert next_step(DEFN, "c", "after", Decision()) == Step(stage=None)


def test_first_stage_is_where_the_project_stopped() -> None:
    p = Project.new("x", DEFN, "", T)
    assert first_stage(p) == "a"
    p.begin_attempt("a", {}, T)
    assert first_stage(p) == "a"  # running / failed: again
    p.end_attempt("a", 1, AttemptOutcome.FAILED, 1, [], T)
    assert first_stage(p) == "a"
    p.begin_attempt("a", {}, T)
    p.end_attempt("a", 2, AttemptOutcome.SUCCEEDED, 0, [], T)
    assert first_stage(p) == "b"


def test_decision_keys_differ_per_attempt_moment_and_retry() -> None:
    keys = {decision_key("a", 1, "after"), decision_key("a", 2, "after"), decision_key("a", 1, "before"),
            decision_key("a", 1, "after", 1)}  # fmt: skip
    assert len(keys) == 4
    # Prefect's input keys: lowercase letters, digits and dashes only; stage names may hold underscores.
    a, b = decision_key("a_b", 1, "after"), decision_key("a-b", 1, "after")
    assert a != b and all(re.fullmatch(r"[a-z0-9-]+", k) for k in (a, b))


def test_form_schema_limits_actions_and_stages_to_the_definition() -> None:
    form = decision_form(DEFN, "b", "after", "Check the output")
    schema = form.model_json_schema()
    props = schema["properties"]
    assert props["action"]["enum"] == ["continue", "redo", "goto", "stop"]
    assert props["goto_stage"]["enum"] == ["a", "b", "c"] and props["goto_stage"]["default"] == "b"
    assert schema.get("additionalProperties") is False  # unknown fields refused
    assert "Check the output" in (form._description or "")
    assert form.model_validate({"action": "goto", "goto_stage": "c"}).model_dump()["goto_stage"] == "c"
    with pytest.raises(ValueError):
        form.model_validate({"action": "goto", "goto_stage": "nope"})


def test_a_failed_lost_or_missing_attempt_pauses_the_run_and_a_gpu_stage_needs_a_gpu_worker() -> None:
    p = Project.new("x", DEFN, "", T)
    assert attempt_problem(p, "a") == "a attempt ?: did not start"
    p.begin_attempt("a", {}, T)
    p.mark_lost("worker gone", T)
    assert attempt_problem(p, "a") == "a attempt 1: lost"
    p.begin_attempt("a", {}, T)
    p.end_attempt("a", 2, AttemptOutcome.SUCCEEDED, 0, [], T)
    assert attempt_problem(p, "a") is None
    gpu = parse_definition("name: g\nstages:\n  - {name: train, command: [x], resources: {gpus: 2, cpus: 4}}\n")
    assert no_fitting_node(gpu.stages[0]) == (
        "no fitting node: no worker of work pool 'gpu' is online for train (2 GPU(s), 4 CPU(s))"
    )


# --- the flow's claim: the staleness rule is the core's, the flow tells Prefect --------------------------------
def test_a_run_claims_a_project_whose_attempt_lost_its_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import flows.pipeline_run as pipeline_run

    crashed: list[tuple[str, str]] = []
    monkeypatch.setattr(pipeline_run, "mark_crashed", lambda run_id, why: crashed.append((run_id, why)))
    monkeypatch.setattr(pipeline_run, "flow_run_state", lambda run_id: "CRASHED")
    store = ProjectStore(tmp_path)
    store.create("x", DEFN)
    store.begin_attempt("x", "a", {}, run_id="stage-1")  # no heartbeat at all: its worker never beat, or is gone
    project = pipeline_run._claim(store, "x", "me", None)
    assert crashed == [("stage-1", "no heartbeat: its worker is gone")]
    assert project.status == ProjectStatus.RUNNING and project.run_id == "me"
    assert project.history[0].outcome == AttemptOutcome.LOST


def test_a_run_refuses_a_project_whose_attempt_is_alive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import flows.pipeline_run as pipeline_run

    monkeypatch.setattr(pipeline_run, "mark_crashed", lambda run_id, why: pytest.fail("nothing is crashed"))
    store = ProjectStore(tmp_path)
    store.create("x", DEFN)
    store.begin_attempt("x", "a", {})
    beat = store.heartbeat_path("x", "a", 1)
    beat.parent.mkdir(parents=True)
    beat.touch()
    with pytest.raises(ProjectStateError, match="still running"):
        pipeline_run._claim(store, "x", "me", None)
    assert store.get("x").status == ProjectStatus.RUNNING and store.get("x").run_id is None
