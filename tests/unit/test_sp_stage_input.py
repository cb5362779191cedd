"""A stage that asks for input while it runs: the request file's rules, the form built from it, and a real shell
stage that writes a request, waits, and reads the answer while the heartbeat goes on (seed 003)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from opsflow.errors import InputError
from stage_pipeline.attempt import AttemptWatch, stage_job
from stage_pipeline.definition import parse_definition
from stage_pipeline.runners import ShellRunner
from stage_pipeline.stage_input import InputRequest, form_model, parse_request
from stage_pipeline.store import ProjectStore
from stage_pipeline.workspace import prepare_workspace

ASKING = """\
req='{"description": "Pick the threshold", "schema": {"properties": {"threshold": {"type": "integer", "minimum": 1}},
 "required": ["threshold"]}}'
printf '%s' "$req" > "$OPSFLOW_ASK/.tune.tmp" && mv "$OPSFLOW_ASK/.tune.tmp" "$OPSFLOW_ASK/tune.request.json"
while [ ! -e "$OPSFLOW_ASK/tune.answer.json" ]; do sleep 0.1; done
echo "got $(cat "$OPSFLOW_ASK/tune.answer.json")"
"""


def request(schema: dict[str, Any], **extra: Any) -> InputRequest:
    return parse_request("q.request.json", json.dumps({"schema": schema, **extra}))


def test_a_form_has_the_schemas_types_limits_choices_and_defaults() -> None:
    form = form_model(
        request(
            {
                "properties": {
                    "threshold": {"type": "number", "minimum": 0, "maximum": 1, "description": "0-1"},
                    "mode": {"enum": ["fast", "exact"], "default": "fast"},
                    "points": {"type": "array", "items": {"type": "integer"}},
                    "note": {"type": "string"},
                    "ok": {"type": "boolean", "default": True},
                },
                "required": ["threshold", "points"],
            }
        )
    )
    assert form.model_validate({"threshold": 0.5, "points": [1, 2]}).model_dump() == {
        "threshold": 0.5, "mode": "fast", "points": [1, 2], "note": None, "ok": True,
    }  # fmt: skip
    for bad in ({"threshold": 2, "points": []}, {"threshold": 0.1}, {"threshold": 0.1, "points": [], "mode": "x"}):
        with pytest.raises(ValidationError):
            form.model_validate(bad)
    schema = form.model_json_schema()
    assert schema["required"] == ["threshold", "points"] and schema["properties"]["threshold"]["maximum"] == 1


@pytest.mark.parametrize(
    ("name", "text", "field"),
    [
        ("q.request.json", "{not json", "json"),
        ("q.request.json", "[1]", "request"),
        ("q.request.json", '{"schema": {"properties": {}}}', "schema.properties"),
        ("q.request.json", '{"schema": {"properties": {"a": {"type": "date"}}}}', "schema.properties.a.type"),
        ("q.request.json", '{"schema": {"properties": {"a b": {"type": "string"}}}}', "schema.properties.a b"),
        ("q.request.json", '{"schema": {"properties": {"a": {"type": "date"}}, "required": ["b"]}}', "schema.required"),
        ("q.request.json", '{"schema": {"properties": {"a": {"type": "string"}}}, "colour": 1}', "colour"),
        ("q.request.json", '{"schema": {"properties": {"a": {"type": "string"}}}, "timeout_s": 0}', "timeout_s"),
        ("Q W.request.json", '{"schema": {"properties": {"a": {"type": "string"}}}}', "name"),
    ],
)
def test_a_bad_request_names_the_file_and_the_field(name: str, text: str, field: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_request(name, text)
    assert caught.value.source == name and caught.value.field == field, str(caught.value)


def _watch(tmp_path: Path, on_request: Any) -> tuple[list[tuple[bool, str]], AttemptWatch, Any]:
    store = ProjectStore(tmp_path / "store")
    d = parse_definition("name: p\nstages:\n  - {name: a, command: [sh, -c, x]}\n")
    store.create("demo", d)
    spec = d.stages[0].model_copy(update={"command": ["sh", "-c", ASKING]})
    attempt = store.begin_attempt("demo", "a", {})
    workspace = prepare_workspace(store.project_dir("demo"), "a", 1, None)
    asks = store.ask_dir("demo", "a", 1)
    asks.mkdir(parents=True)
    job = stage_job("demo", spec, attempt, workspace, tmp_path, asks=asks)
    lines: list[tuple[bool, str]] = []
    watch = AttemptWatch(store, "demo", attempt, spec, lambda e, line: lines.append((e, line)), ask_dir=asks,
                         on_request=on_request)  # fmt: skip
    return lines, watch, job


def test_a_running_stage_gets_the_answer_and_keeps_its_heartbeat_while_it_waits(tmp_path: Path) -> None:
    asked: list[InputRequest] = []
    beats: list[float] = []

    def operator(req: InputRequest) -> dict[str, Any]:
        asked.append(req)
        first = watch.heartbeat.stat().st_mtime
        os.utime(watch.heartbeat, (first - 60, first - 60))
        deadline = time.monotonic() + 20
        while watch.heartbeat.stat().st_mtime <= first - 60 and time.monotonic() < deadline:
            time.sleep(0.05)  # the operator takes their time; the heartbeat must not stop meanwhile
        beats.append(watch.heartbeat.stat().st_mtime - (first - 60))
        return {"threshold": 7}

    lines, watch, job = _watch(tmp_path, operator)
    watch._pacer.heartbeat_s = 0.1
    with watch:
        outcome = ShellRunner().run(job, watch.on_line, watch.should_abort)
    assert outcome.succeeded, (outcome, lines)
    assert [(r.name, r.description) for r in asked] == [("tune", "Pick the threshold")]
    assert beats and beats[0] > 0, "no heartbeat while the stage waited for its answer"
    assert (False, 'got {"threshold": 7}') in lines


def test_a_request_nobody_can_answer_gets_an_error_answer_instead_of_a_stage_that_hangs(tmp_path: Path) -> None:
    lines, watch, job = _watch(tmp_path, None)
    with watch:
        outcome = ShellRunner().run(job, watch.on_line, watch.should_abort)
    assert outcome.succeeded
    got = next(line for e, line in lines if line.startswith("got "))
    assert json.loads(got[4:])["error"].endswith("this stage cannot ask for input here")
    assert any(e and "input request refused" in line for e, line in lines)
