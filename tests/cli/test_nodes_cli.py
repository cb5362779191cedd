"""`opsflow nodes …` without a Prefect server: `--local` samples this machine, `publish --rounds` writes the
node's file, and the table of every node still shows the published samples, with a note that the workers are
unknown (the join with a real server: tests/integration/test_node_monitor.py)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from opsflow.cli import app


@pytest.fixture
def no_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home with no stack and a Prefect API URL nothing listens on; returns the store root to publish under."""
    for var in list(os.environ):
        if var.startswith(("PREFECT_", "OPSFLOW_")):
            monkeypatch.delenv(var)
    monkeypatch.setenv("OPSFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:1/api")
    return tmp_path / "store"


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["nodes", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_local_samples_this_machine(no_server: Path) -> None:
    code, out, _ = invoke("--local", "--json")
    assert code == 0
    (row,) = json.loads(out)
    assert row["node"] == socket.gethostname() and 0 <= row["cpu %"] <= 100


def test_publish_then_the_table_without_a_server(no_server: Path) -> None:
    for host in ("node-b", "node-a"):
        code, out, _ = invoke("publish", "--root", str(no_server), "--hostname", host, "--interval", "0.2",
                              "--rounds", "2")  # fmt: skip
        assert code == 0 and f"publishing {host} every 0.2 s to " in out
    assert sorted(p.name for p in (no_server / ".nodes").iterdir()) == ["node-a.json", "node-b.json"]
    code, out, err = invoke("--root", str(no_server), "--json")
    assert code == 0
    rows = json.loads(out)
    assert [(r["node"], r["pools"]) for r in rows] == [("node-a", "no worker"), ("node-b", "no worker")]
    assert "workers unknown: cannot reach the Prefect API at http://127.0.0.1:1/api" in err
    code, out, _ = invoke("--root", str(no_server))  # the table as text
    assert code == 0 and "node-a" in out and "node-b" in out


def test_nothing_published_says_how_to_start(no_server: Path) -> None:
    code, out, err = invoke("--root", str(no_server))
    assert code == 0 and out == ""
    assert "run `opsflow nodes publish` on each node" in " ".join(err.split())
