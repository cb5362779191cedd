"""Pipeline definitions: each error class names file:line:field; the library validates, saves and deletes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from opsflow.errors import InputError
from stage_pipeline.definition import (
    Approval,
    PipelineDefinition,
    definition_yaml,
    load_definition,
    memory_bytes,
    parse_definition,
)
from stage_pipeline.library import PipelineLibrary, PipelineNotFound
from stage_pipeline.logscan import DEFAULT_ERROR_REGEX

GOOD = """\
name: video-tracking
description: Vehicle trajectories from a traffic video
stages:
  - name: detect
    command: [python, -m, examples.video_tracking.detect]
    env: {MIN_AREA: 40, MODE: fast}
    resources: {cpus: 1, memory: 1G, gpus: 0}
    approval: {mode: after, description: "Check the detections"}
    progress_regex: 'frame (?P<done>\\d+)/(?P<total>\\d+)'
    timeout: 600
  - name: track
    image: busybox
    command: [sh, -c, "echo tracking"]
    resources:
      gpus: 1
    approval: before
"""


def error_of(text: str) -> InputError:
    with pytest.raises(InputError) as info:
        parse_definition(text, "p.yaml")
    return info.value


def where(text: str) -> str:
    """``file:line: field`` of the first problem."""
    err = error_of(text)
    return f"{err.source}:{err.line}: {err.field}"


def stage(body: str) -> str:
    """A one-stage pipeline; ``body`` adds keys to the stage (indented 4)."""
    return "name: p\nstages:\n  - name: a\n" + body


def test_good_definition_parses_with_defaults_and_short_forms() -> None:
    d = parse_definition(GOOD, "video-tracking.yaml")
    detect, track = d.stages
    assert d.stage_names == ["detect", "track"]
    assert detect.env == {"MIN_AREA": "40", "MODE": "fast"}
    assert detect.resources.memory == "1G" and detect.resources.memory_bytes == 1 << 30
    assert detect.approval == Approval(mode="after", description="Check the detections")
    assert track.approval.mode == "before"  # the bare string form
    assert (detect.pool, track.pool) == ("cpu", "gpu")
    assert detect.error_regex == DEFAULT_ERROR_REGEX and detect.timeout == 600
    assert track.resources.cpus == 1.0 and track.resources.memory_bytes is None
    assert d.next_stage("detect") == "track" and d.next_stage("track") is None
    with pytest.raises(KeyError, match="no stage 'nope'"):
        d.stage("nope")


def test_definition_round_trips_through_json_and_yaml() -> None:
    d = parse_definition(GOOD)
    assert PipelineDefinition.model_validate_json(d.model_dump_json()) == d
    assert parse_definition(definition_yaml(d)) == d


def test_memory_sizes() -> None:
    assert memory_bytes("512M") == 512 * 2**20
    assert memory_bytes("2G") == 2 * 2**30
    assert memory_bytes("4Gi") == memory_bytes("4GiB") == 4 * 2**30
    assert memory_bytes("100") == 100
    with pytest.raises(ValueError):
        memory_bytes("lots")


@pytest.mark.parametrize(
    ("text", "expected", "message"),
    [
        ("name: p\nstages: [\n  - a: b\n", "p.yaml:3: (yaml)", "expected"),
        ("- a\n- b\n", "p.yaml:1: (file)", "expected a mapping"),
        ("", "p.yaml:1: (file)", "empty"),
        ("description: x\nstages:\n  - name: a\n    command: [x]\n", "p.yaml:1: name", "Field required"),
        ("name: p\nstages: []\n", "p.yaml:2: stages", "at least one stage"),
        ("name: p\n", "p.yaml:1: stages", "Field required"),
        ("name: Bad Name\nstages:\n  - name: a\n    command: [x]\n", "p.yaml:1: name", "a-z, 0-9"),
        ("name: p\nname: q\nstages:\n  - name: a\n    command: [x]\n", "p.yaml:2: name", "given twice"),
        (
            "name: p\nstages:\n  - name: a\n    command: [x]\n  - name: b\n    command: [x]\n"
            "  - name: a\n    command: [y]\n",
            "p.yaml:7: stages.2.name",
            "duplicate stage name 'a' (first on line 3)",
        ),
        (stage("    command: [x]\n    comand: [y]\n"), "p.yaml:5: stages.0.comand", "unknown key"),
        (stage("    command: [x]\n    resources: {gpus: two}\n"), "p.yaml:5: stages.0.resources.gpus", "integer"),
        (
            stage("    command: [x]\n    resources:\n      cpus: 1\n      gpus: two\n"),
            "p.yaml:7: stages.0.resources.gpus",
            "'two'",
        ),
        (stage("    command: [x]\n    error_regex: '(ab'\n"), "p.yaml:5: stages.0.error_regex", "invalid regular"),
        (stage("    command: [x]\n    progress_regex: '[a-'\n"), "p.yaml:5: stages.0.progress_regex", "invalid"),
        (stage("    command: [x]\n    progress_regex: '(\\d+)'\n"), "p.yaml:5: stages.0.progress_regex", "'pct'"),
        (stage("    command: [x]\n    approval: later\n"), "p.yaml:5: stages.0.approval.mode", "'before'"),
        (stage("    command: [x]\n    approval:\n      mode: later\n"), "p.yaml:6: stages.0.approval.mode", "after"),
        (stage("    env: {A: '1'}\n"), "p.yaml:3: stages.0", "needs a command (argv list) or an image"),
        (stage("    command: python x.py\n"), "p.yaml:4: stages.0.command", "not a string"),
        (stage("    command:\n      - python\n      - 3\n"), "p.yaml:6: stages.0.command.1", "must be a string"),
        (stage("    command: [x]\n    timeout: -5\n"), "p.yaml:5: stages.0.timeout", "greater than 0"),
        (stage("    command: [x]\n    resources:\n      cpus: -1\n"), "p.yaml:6: stages.0.resources.cpus", "greater"),
        (stage("    command: [x]\n    resources: {gpus: -1}\n"), "p.yaml:5: stages.0.resources.gpus", "greater"),
        (stage("    command: [x]\n    resources: {memory: lots}\n"), "p.yaml:5: stages.0.resources.memory", "512M"),
        (stage("    command: [x]\n    env: {A: yes}\n"), "p.yaml:5: stages.0.env.A", "string"),
        (stage("    command: [x]\n    env: {1A: x}\n"), "p.yaml:5: stages.0.env", "variable name"),
        ("name: p\nstages:\n  - name: A b\n    command: [x]\n", "p.yaml:3: stages.0.name", "a-z"),
    ],
)
def test_each_error_names_file_line_and_field(text: str, expected: str, message: str) -> None:
    err = error_of(text)
    assert f"{err.source}:{err.line}: {err.field}" == expected
    assert message in str(err)
    assert str(err).startswith(expected + ": ")


def test_all_problems_are_reported_in_line_order() -> None:
    err = error_of(stage("    command: [x]\n    timeout: -5\n    resources:\n      cpus: -1\n"))
    assert [(line, field) for line, field, _ in err.problems] == [
        (5, "stages.0.timeout"),
        (7, "stages.0.resources.cpus"),
    ]
    assert len(str(err).splitlines()) == 2


def test_load_definition_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(stage("    command: [x]\n    timeout: -1\n"))
    with pytest.raises(InputError, match=re.escape(f"{path}:5: stages.0.timeout: ")):
        load_definition(path)
    with pytest.raises(InputError, match=re.escape(f"{tmp_path / 'absent.yaml'}:1: (file): cannot read")):
        load_definition(tmp_path / "absent.yaml")


def test_file_name_must_match_the_definition_name(tmp_path: Path) -> None:
    path = tmp_path / "other.yaml"
    path.write_text(GOOD)
    with pytest.raises(InputError) as info:
        load_definition(path, expected_name="other")
    assert (info.value.line, info.value.field) == (1, "name")
    assert "does not match the file name 'other.yaml'" in str(info.value)


# --- the library ---------------------------------------------------------------------------------------------


def test_library_save_get_list_delete(tmp_path: Path) -> None:
    lib = PipelineLibrary(tmp_path / "pipelines")
    assert lib.list() == []
    saved = lib.save(GOOD)
    assert saved.name == "video-tracking"
    assert lib.list() == ["video-tracking"]
    assert lib.get("video-tracking") == saved
    assert lib.text("video-tracking") == GOOD  # comments and layout kept as written
    lib.delete("video-tracking")
    assert lib.list() == []
    with pytest.raises(PipelineNotFound, match="no pipeline 'video-tracking'"):
        lib.get("video-tracking")
    with pytest.raises(PipelineNotFound):
        lib.delete("video-tracking")


def test_library_save_validates_before_writing(tmp_path: Path) -> None:
    lib = PipelineLibrary(tmp_path)
    lib.save(GOOD)
    broken = GOOD.replace("timeout: 600", "timeout: -600")
    with pytest.raises(InputError, match=r"<new definition>:10: stages\.0\.timeout: "):
        lib.save(broken)
    assert lib.text("video-tracking") == GOOD  # the old file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["video-tracking.yaml"]  # no temporary left behind


def test_library_save_refuses_a_name_mismatch(tmp_path: Path) -> None:
    lib = PipelineLibrary(tmp_path)
    with pytest.raises(InputError, match=r"video-tracking2\.yaml:1: name: 'video-tracking' does not match"):
        lib.save(GOOD, name="video-tracking2")
    assert lib.list() == []


def test_library_reports_invalid_files_edited_by_hand(tmp_path: Path) -> None:
    lib = PipelineLibrary(tmp_path)
    lib.save(GOOD)
    (tmp_path / "broken.yaml").write_text(stage("    command: [x]\n"))  # its name is p, not broken
    (tmp_path / "Bad Name.yaml").write_text(GOOD)
    problems = lib.problems()
    assert sorted(problems) == ["Bad Name", "broken"]
    assert problems["broken"].field == "name"
    assert lib.list() == ["Bad Name", "broken", "video-tracking"]


def test_library_refuses_names_that_leave_its_directory(tmp_path: Path) -> None:
    lib = PipelineLibrary(tmp_path / "lib")
    for name in ["../x", "a/b", ".hidden", ""]:
        with pytest.raises(ValueError, match="invalid pipeline name"):
            lib.get(name)
