"""`opsflow files upload|download|ls` against the real file service of a temporary stack home: what a user types.

The service is started by the stack's own component (only it: no Prefect server is needed for files), so the
CLI finds it the way it finds a local stack, through ``$OPSFLOW_HOME/stack.json`` and the stack's auth string.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from opsflow.cli import app
from opsflow.stack.config import StackConfig
from opsflow.stack.env import api_auth_string, child_env
from opsflow.stack.files import FileServiceComponent
from tests.support import one_line_error, unavailable

PORT_OFFSET = 22000


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    cfg = StackConfig(home=tmp_path_factory.mktemp("fileshome")).shifted(PORT_OFFSET)
    cfg.save()
    api_auth_string(cfg)
    component = FileServiceComponent(cfg, child_env(cfg))
    try:
        component.start()
    except Exception as exc:
        component.stop()
        unavailable(f"the file service did not start: {exc}")
    yield cfg.home
    component.stop()


def invoke(home: Path, *args: str) -> Result:
    env = {"OPSFLOW_HOME": str(home), "PREFECT_API_URL": None, "PREFECT_API_AUTH_STRING": None, "COLUMNS": "200"}
    return CliRunner().invoke(app, list(args), env=env)


def test_upload_ls_and_download(home: Path, tmp_path: Path) -> None:
    video = tmp_path / "traffic.mp4"
    video.write_bytes(os.urandom(3_000_000))
    sha = hashlib.sha256(video.read_bytes()).hexdigest()
    up = invoke(home, "files", "upload", str(video), "resources/videos/")
    assert up.exit_code == 0, up.output
    assert f"uploaded resources/videos/traffic.mp4 (3000000 bytes), sha256 {sha}" in up.stdout
    listing = invoke(home, "files", "ls", "resources")
    assert listing.exit_code == 0 and "resources/videos/traffic.mp4" in listing.stdout and sha in listing.stdout
    out = tmp_path / "out"
    out.mkdir()
    down = invoke(home, "files", "download", "resources/videos/traffic.mp4", str(out))
    assert down.exit_code == 0, down.output
    assert (out / "traffic.mp4").read_bytes() == video.read_bytes()


def test_a_refused_destination_is_one_line_and_exit_2(home: Path, tmp_path: Path) -> None:
    f = tmp_path / "x.bin"
    f.write_bytes(b"x")
    r = invoke(home, "files", "upload", str(f), "projects/p/stages/a/1/x.bin")
    assert r.exit_code == 2, r.output
    assert one_line_error(r.stderr) and "read-only" in r.stderr


def test_a_missing_file_is_exit_2_and_an_unknown_path_too(home: Path) -> None:
    r = invoke(home, "files", "upload", "/nonexistent/file", "resources/")
    assert r.exit_code == 2 and "no such file" in r.stderr
    r = invoke(home, "files", "ls", "resources/nothing-here")
    assert r.exit_code == 2 and one_line_error(r.stderr), r.output


def test_no_service_is_one_line_and_exit_1(tmp_path: Path) -> None:
    cfg = StackConfig(home=tmp_path / "down").shifted(PORT_OFFSET + 5)
    cfg.home.mkdir()
    cfg.save()
    r = invoke(cfg.home, "files", "ls")
    assert r.exit_code == 1, r.output
    assert one_line_error(r.stderr) and "cannot reach the file service" in r.stderr
