"""The local stack's commands fail the opsflow way: one line on stderr, exit 2 for bad usage, 1 for a failure."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from opsflow.cli import app


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OPSFLOW_HOME", str(tmp_path))
    return tmp_path


def error_line(result: object) -> str:
    stderr = result.stderr  # type: ignore[attr-defined]
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_up_with_an_unknown_component_is_bad_usage(home: Path) -> None:
    result = CliRunner().invoke(app, ["up", "--only", "slurmm", "--home", str(home)])
    assert result.exit_code == 2
    assert "unknown component 'slurmm'" in error_line(result)
    assert not (home / "slurm").exists(), "nothing was started or written for a refused command"


def test_deploy_without_a_running_server_fails_in_one_line(home: Path) -> None:
    result = CliRunner().invoke(app, ["deploy", "--home", str(home)])
    assert result.exit_code == 1
    assert "not up" in error_line(result)


def test_status_of_a_stack_that_was_never_started_lists_every_component_down(home: Path) -> None:
    result = CliRunner().invoke(app, ["status", "--json", "--home", str(home)])
    assert result.exit_code == 0, result.output
    assert '"prefect"' in result.stdout and '"up"' not in result.stdout
