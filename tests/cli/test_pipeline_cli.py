"""`opsflow pipeline …` / `opsflow project …`: each error path is one line and the right exit code, and the
reading commands never import Prefect. Against a temporary OPSFLOW_HOME with no server (the local stack is down).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from opsflow.cli import app
from stage_pipeline.library import PipelineLibrary
from stage_pipeline.models import AttemptOutcome
from stage_pipeline.store import ProjectStore
from tests.support import clean_env, one_line_error, run_watching_children

ROOT = Path(__file__).resolve().parents[2]
DEFINITION = ROOT / "examples" / "video_tracking" / "pipeline.yaml"
BROKEN = "name: broken\nstages:\n  - name: a\n    command: [x]\n    timeout: -1\n"
#: Nothing listens on port 9 (discard), so a client gets "connection refused" at once.
UNREACHABLE = "http://127.0.0.1:9/api"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A stack home whose store holds the video-tracking definition, a broken one, and a project `traffic`
    paused after one attempt of its first stage (a log and two workspace files)."""
    home = tmp_path / "home"
    library = PipelineLibrary(home / "pipelines" / "pipelines")
    library.root.mkdir(parents=True)
    shutil.copy(DEFINITION, library.path("video-tracking"))
    (library.root / "broken.yaml").write_text(BROKEN)
    store = ProjectStore(home / "pipelines")
    store.create("traffic", library.get("video-tracking"), library.text("video-tracking"))
    attempt = store.begin_attempt("traffic", "generate", {"SEED": "7"})
    workspace = store.workspace("traffic", attempt)
    (workspace / "video").mkdir(parents=True)
    (workspace / "video" / "input.avi").write_bytes(b"x" * 10)
    (workspace / "truth.csv").write_text("id,x\n")
    log = store.log_path("traffic", "generate", 1)
    log.parent.mkdir(parents=True)
    log.write_text("frame 1/2\nframe 2/2\n")
    store.end_attempt("traffic", "generate", 1, AttemptOutcome.SUCCEEDED, 0, [])
    store.pause("traffic", "paused after generate as asked at start", before="reference_points")
    return home


def invoke(home: Path, *args: str, api_url: str | None = None) -> Result:
    env = {"OPSFLOW_HOME": str(home), "PREFECT_API_URL": api_url, "PREFECT_API_AUTH_STRING": None}
    return CliRunner().invoke(app, list(args), env=env)


def failed_in_one_line(result: Result, code: int) -> str:
    """The one error line of a command that failed with ``code`` (asserting there is nothing else)."""
    assert result.exit_code == code, (result.exit_code, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert one_line_error(result.stderr), result.stderr
    line = result.stderr.strip()
    assert line.startswith("error: ")
    return line


# --- bad input: exit 2 -----------------------------------------------------------------------------------------
def test_a_bad_definition_file_names_file_line_and_field(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    line = failed_in_one_line(invoke(home, "pipeline", "validate", str(path)), 2)
    assert f"{path}:5: stages.0.timeout: " in line


def test_a_missing_definition_file_is_bad_input(home: Path, tmp_path: Path) -> None:
    line = failed_in_one_line(invoke(home, "pipeline", "validate", str(tmp_path / "absent.yaml")), 2)
    assert "absent.yaml:1: (file): cannot read" in line


def test_a_valid_definition_file_is_summarised(home: Path) -> None:
    result = invoke(home, "pipeline", "validate", str(DEFINITION))
    assert result.exit_code == 0, result.output
    assert "pipeline video-tracking with 9 stages: generate, reference_points" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["pipeline", "show", "nope"],
        ["project", "create", "t2", "--pipeline", "nope"],
        ["project", "show", "nope"],
        ["project", "logs", "nope"],
        ["project", "start", "nope"],
        ["project", "set-pipeline", "traffic", "nope"],
        ["project", "start", "traffic", "--stage", "nope"],
        ["project", "logs", "traffic", "--stage", "detect"],
        ["project", "files", "traffic", "--attempt", "9"],
    ],
    ids=lambda a: " ".join(a),
)
def test_an_unknown_name_is_bad_input(home: Path, args: list[str]) -> None:
    line = failed_in_one_line(invoke(home, *args), 2)
    assert "nope" in line or "has no" in line


@pytest.mark.parametrize(
    "args",
    [
        ["project", "start", "traffic", "--env", "MIN_AREA"],
        ["project", "resume", "traffic", "--env", "MIN_AREA"],
        ["project", "start", "traffic", "--env", "1X=2"],
        ["project", "create", "Bad Name", "--pipeline", "video-tracking"],
        ["project", "rename", "traffic", "../escape"],
        ["project", "tag", "traffic", " "],
        ["project", "wait", "traffic", "--until", "forever"],
    ],
    ids=lambda a: " ".join(a),
)
def test_bad_options_are_bad_input(home: Path, args: list[str]) -> None:
    failed_in_one_line(invoke(home, *args), 2)


def test_env_without_equals_says_what_is_expected(home: Path) -> None:
    line = failed_in_one_line(invoke(home, "project", "start", "traffic", "--env", "MIN_AREA"), 2)
    assert line == "error: --env: 'MIN_AREA': expected KEY=VALUE"


# --- failed operations: exit 1 ---------------------------------------------------------------------------------
def test_an_unreachable_prefect_api_fails_project_start_in_one_line(home: Path) -> None:
    line = failed_in_one_line(invoke(home, "project", "start", "traffic", api_url=UNREACHABLE), 1)
    assert "127.0.0.1:9" in line


def test_abort_with_no_running_stage_fails(home: Path) -> None:
    line = failed_in_one_line(invoke(home, "project", "abort", "traffic"), 1)
    assert "no stage is running" in line


def test_creating_an_existing_project_fails(home: Path) -> None:
    failed_in_one_line(invoke(home, "project", "create", "traffic", "--pipeline", "video-tracking"), 1)


def test_waiting_for_a_decision_of_a_project_at_rest_fails_at_once(home: Path) -> None:
    line = failed_in_one_line(invoke(home, "project", "wait", "traffic", "--no-progress", "--timeout", "30"), 1)
    assert "is PAUSED (paused after generate as asked at start): it will not be waiting" in line


# --- what the reading commands print ---------------------------------------------------------------------------
def test_pipeline_list_shows_the_broken_file_with_its_problem(home: Path) -> None:
    result = invoke(home, "pipeline", "list")
    assert result.exit_code == 0, result.output
    assert "video-tracking (9 stages)" in result.stdout
    assert "broken.yaml:5: stages.0.timeout" in result.stdout


def test_project_commands_show_logs_files_and_history(home: Path) -> None:
    listed = invoke(home, "project", "list")
    assert listed.exit_code == 0 and "traffic" in listed.stdout and "video-tracking" in listed.stdout
    shown = invoke(home, "project", "show", "traffic")
    assert shown.exit_code == 0 and "generate=SUCCEEDED" in shown.stdout and "SEED=7" in shown.stdout
    logs = invoke(home, "project", "logs", "traffic")
    assert logs.exit_code == 0 and logs.stdout.splitlines()[1:] == ["frame 1/2", "frame 2/2"]
    files = invoke(home, "project", "files", "traffic", "--stage", "generate")
    assert files.exit_code == 0 and "video/input.avi" in files.stdout and "truth.csv" in files.stdout


def test_tags_rename_and_delete(home: Path) -> None:
    assert invoke(home, "project", "tag", "traffic", "b", "a").stdout.strip() == "a, b"
    assert invoke(home, "project", "untag", "traffic", "a").stdout.strip() == "b"
    assert invoke(home, "project", "rename", "traffic", "roads").exit_code == 0
    assert invoke(home, "project", "delete", "roads", "--yes").exit_code == 0
    assert "roads" not in invoke(home, "project", "list").stdout


# --- reading commands import no Prefect --------------------------------------------------------------------------
PROBE = """
import sys
from opsflow.cli import app
try:
    app(sys.argv[1:], prog_name="opsflow", standalone_mode=False)
except SystemExit as exc:
    print("EXIT", exc.code)
print("PREFECT_IMPORTED", "prefect" in sys.modules)
"""
READING = [
    ["pipeline", "list"],
    ["pipeline", "show", "video-tracking"],
    ["pipeline", "validate", str(DEFINITION)],
    ["project", "list"],
    ["project", "show", "traffic"],
    ["project", "logs", "traffic"],
    ["project", "files", "traffic"],
]


@pytest.mark.parametrize("command", READING, ids=lambda c: " ".join(c[:2]))
def test_reading_commands_do_not_import_prefect(home: Path, command: list[str]) -> None:
    run = run_watching_children([sys.executable, "-c", PROBE, *command], clean_env(OPSFLOW_HOME=str(home)), cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "EXIT" not in run.stdout, run.stdout + run.stderr
    assert "PREFECT_IMPORTED False" in run.stdout, run.stdout


def test_pipeline_add_validates_then_delete_removes(home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BROKEN)
    message = failed_in_one_line(invoke(home, "pipeline", "add", str(bad)), 2)
    assert f"{bad}:5: stages.0.timeout" in message
    library = PipelineLibrary(home / "pipelines" / "pipelines")
    assert "broken" in library.list() and library.text("broken") == BROKEN  # the store's own copy is untouched
    good = tmp_path / "anything.yaml"
    good.write_text("name: two\nstages:\n  - {name: a, command: [x]}\n  - {name: b, command: [y]}\n")
    added = invoke(home, "pipeline", "add", str(good))
    assert added.exit_code == 0 and "added pipeline two (2 stages: a, b)" in added.stdout
    assert library.get("two").stage_names == ["a", "b"]
    again = failed_in_one_line(invoke(home, "pipeline", "add", str(good)), 2)
    assert "exists already" in again
    assert invoke(home, "pipeline", "add", str(good), "--replace").exit_code == 0
    assert invoke(home, "pipeline", "delete", "two").exit_code == 0 and "two" not in library.list()
    assert "no pipeline 'two'" in failed_in_one_line(invoke(home, "pipeline", "delete", "two"), 2)
