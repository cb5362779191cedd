"""The GitLab adapter (real python-gitlab) against the stand-in GitLab served by uvicorn on a loopback port.

Both halves are ours, so each test checks the behaviour GitLab itself has (anchors §1: the 400 on a repeated
state, a new record after a final state, 401/404) through the very client code the flow uses.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from ci_training.gitlab import DESCRIPTION_LIMIT, GitLabError, GitLabStatuses
from ci_training.models import TEST_STATUS, TRAIN_STATUS, CommitState
from opsflow.stack.gitlab_standin import build_app
from tests.support import free_port

TOKEN = "glpat-secret-token-0123456789"
OTHER_TOKEN = "glpat-other-project-token-9876"
SHA = "a1b2c3d4" * 5
PROJECTS = [
    {
        "id": 7,
        "path_with_namespace": "ml/loans",
        "token": TOKEN,
        "git_http_url": "http://127.0.0.1/ml/loans.git",
        "web_url": "http://127.0.0.1/ml/loans",
        "default_branch": "main",
    },
    {"id": 8, "path_with_namespace": "ml/other", "token": OTHER_TOKEN},
]


@dataclass
class Standin:
    url: str
    state_dir: Path

    def calls(self) -> list[dict[str, Any]]:
        calls: list[dict[str, Any]] = httpx.get(f"{self.url}/_standin/calls", timeout=5).json()
        return calls

    def adapter(self, project: str | int = "ml/loans", token: str = TOKEN) -> GitLabStatuses:
        return GitLabStatuses(self.url, token, project, timeout_s=5, backoff_s=(0.05, 0.1))


class _Server:
    """uvicorn in a background thread; ``stop()`` ends it through ``should_exit``."""

    def __init__(self, state_dir: Path, port: int) -> None:
        config = uvicorn.Config(build_app(state_dir), host="127.0.0.1", port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "stand-in did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()


def _write_projects(state_dir: Path) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "projects.json").write_text(json.dumps(PROJECTS))


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[Standin]:
    state_dir = tmp_path / "gitlab"
    _write_projects(state_dir)
    port = free_port()
    server = _Server(state_dir, port)
    try:
        yield Standin(f"http://127.0.0.1:{port}", state_dir)
    finally:
        server.stop()


def test_project_lookup_by_path_and_by_id(standin: Standin) -> None:
    by_path = standin.adapter("ml/loans").project_info()
    assert by_path == {
        "id": 7,
        "path_with_namespace": "ml/loans",
        "web_url": "http://127.0.0.1/ml/loans",
        "http_url_to_repo": "http://127.0.0.1/ml/loans.git",  # the clone URL the flow falls back to
    }
    assert standin.adapter(7).project_info() == by_path
    # The path travels URL-encoded, as GitLab requires.
    assert [c["path"] for c in standin.calls()] == ["/api/v4/projects/ml%2Floans", "/api/v4/projects/7"]


def test_project_info_is_fetched_once(standin: Standin) -> None:
    gl = standin.adapter()
    gl.project_info()
    gl.project_info()
    assert len(standin.calls()) == 1


def test_pending_running_success_each_one_request(standin: Standin) -> None:
    gl = standin.adapter()
    for state in (CommitState.PENDING, CommitState.RUNNING, CommitState.SUCCESS):
        assert gl.post(SHA, TEST_STATUS, state, ref="main", target_url="http://prefect/run/1", description=state)
    calls = standin.calls()
    # Lazy objects: three posts are three requests, with no project lookup in between.
    assert [(c["method"], c["path"], c["state"], c["code"]) for c in calls] == [
        ("POST", f"/api/v4/projects/ml%2Floans/statuses/{SHA}", "pending", 201),
        ("POST", f"/api/v4/projects/ml%2Floans/statuses/{SHA}", "running", 201),
        ("POST", f"/api/v4/projects/ml%2Floans/statuses/{SHA}", "success", 201),
    ]
    assert gl.statuses(SHA) == [
        {
            "name": TEST_STATUS,
            "status": "success",
            "ref": "main",
            "target_url": "http://prefect/run/1",
            "description": "success",
        }
    ]
    # One record went through the three states.
    assert len(gl.statuses(SHA, all_records=True)) == 1


def test_repeated_state_is_a_noop(standin: Standin) -> None:
    gl = standin.adapter()
    assert gl.post(SHA, TRAIN_STATUS, CommitState.RUNNING, ref="main")
    assert gl.post(SHA, TRAIN_STATUS, CommitState.RUNNING, ref="main") is False
    assert gl.post(SHA, TRAIN_STATUS, CommitState.PENDING, ref="main") is False  # no way back to pending
    assert [c["code"] for c in standin.calls()] == [201, 400, 400]
    assert [s["status"] for s in gl.statuses(SHA)] == ["running"]
    assert gl.post(SHA, TRAIN_STATUS, CommitState.FAILED, ref="main")
    assert [s["status"] for s in gl.statuses(SHA)] == ["failed"]


def test_final_state_then_pending_makes_a_new_record(standin: Standin) -> None:
    gl = standin.adapter()
    assert gl.post(SHA, TEST_STATUS, CommitState.PENDING, ref="main")
    assert gl.post(SHA, TEST_STATUS, CommitState.FAILED, ref="main", description="2 of 5 failed")
    assert gl.post(SHA, TEST_STATUS, CommitState.PENDING, ref="main", description="retry")
    assert [(s["status"], s["description"]) for s in gl.statuses(SHA)] == [("pending", "retry")]
    every = gl.statuses(SHA, all_records=True)
    assert [(s["status"], s["description"]) for s in every] == [("failed", "2 of 5 failed"), ("pending", "retry")]


def test_statuses_are_per_name_and_ref(standin: Standin) -> None:
    gl = standin.adapter()
    assert gl.post(SHA, TEST_STATUS, CommitState.SUCCESS, ref="main")
    assert gl.post(SHA, TRAIN_STATUS, CommitState.RUNNING, ref="main")
    assert gl.post(SHA, TRAIN_STATUS, CommitState.RUNNING, ref="feature")  # another ref: its own status
    got = {(s["name"], s["ref"]): s["status"] for s in gl.statuses(SHA)}
    assert got == {
        (TEST_STATUS, "main"): "success",
        (TRAIN_STATUS, "main"): "running",
        (TRAIN_STATUS, "feature"): "running",
    }


def test_wrong_token_is_a_gitlab_error_without_the_token(standin: Standin) -> None:
    wrong = "glpat-wrong-token-do-not-print"
    gl = standin.adapter(token=wrong)
    with pytest.raises(GitLabError) as info:
        gl.post(SHA, TEST_STATUS, CommitState.PENDING)
    assert "401" in str(info.value) and "ml/loans" in str(info.value)
    assert wrong not in str(info.value) and wrong not in repr(gl)
    with pytest.raises(GitLabError) as info:
        gl.project_info()
    assert wrong not in str(info.value)
    # Refused at once: no retries of a 401.
    assert [c["code"] for c in standin.calls()] == [401, 401]
    # A token of another project sees no project, as on GitLab.
    with pytest.raises(GitLabError, match="404"):
        standin.adapter("ml/loans", token=OTHER_TOKEN).project_info()
    assert not any(TOKEN in json.dumps(c) or wrong in json.dumps(c) for c in standin.calls())


def test_unknown_project_is_a_gitlab_error(standin: Standin) -> None:
    with pytest.raises(GitLabError, match="404 Project Not Found"):
        standin.adapter("ml/nope").project_info()
    with pytest.raises(GitLabError, match="404"):
        standin.adapter(999).post(SHA, TEST_STATUS, CommitState.PENDING)
    assert len(standin.calls()) == 2


def test_5xx_is_retried(standin: Standin) -> None:
    gl = standin.adapter()
    httpx.post(f"{standin.url}/_standin/fail", json={"status": 503, "times": 2}, timeout=5).raise_for_status()
    assert gl.post(SHA, TEST_STATUS, CommitState.PENDING)
    assert [c["code"] for c in standin.calls()] == [503, 503, 201]
    httpx.post(f"{standin.url}/_standin/fail", json={"status": 502, "times": 3}, timeout=5).raise_for_status()
    with pytest.raises(GitLabError, match="after 3 attempts"):
        gl.post(SHA, TEST_STATUS, CommitState.RUNNING)
    assert [c["code"] for c in standin.calls()][3:] == [502, 502, 502]
    assert gl.post(SHA, TEST_STATUS, CommitState.RUNNING)  # the fault is over


def test_connection_refused_is_retried_then_a_gitlab_error() -> None:
    waits: list[float] = []
    gl = GitLabStatuses(f"http://127.0.0.1:{free_port()}", TOKEN, "ml/loans", timeout_s=2, sleep=waits.append)
    with pytest.raises(GitLabError, match="after 3 attempts") as info:
        gl.post(SHA, TEST_STATUS, CommitState.PENDING)
    assert waits == [0.5, 1.0]
    assert TOKEN not in str(info.value)
    with pytest.raises(GitLabError, match="ConnectionError"):
        gl.statuses(SHA)


def test_description_is_truncated(standin: Standin) -> None:
    gl = standin.adapter()
    assert gl.post(SHA, TRAIN_STATUS, CommitState.SUCCESS, description="accuracy 0.93 " + "x" * 400)
    (status,) = gl.statuses(SHA)
    assert len(status["description"]) == DESCRIPTION_LIMIT
    assert status["description"].startswith("accuracy 0.93 ") and status["description"].endswith("…")


def test_form_body_bearer_token_and_unknown_state(standin: Standin) -> None:
    url = f"{standin.url}/api/v4/projects/7/statuses/{SHA}"
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    r = httpx.post(url, data={"state": "running", "target_url": "http://x"}, headers=bearer, timeout=5)
    assert r.status_code == 201
    assert {k: r.json()[k] for k in ("sha", "name", "status", "ref", "target_url")} == {
        "sha": SHA,
        "name": "default",
        "status": "running",
        "ref": None,
        "target_url": "http://x",
    }
    assert httpx.post(url, data={"state": "done"}, headers=bearer, timeout=5).status_code == 400
    assert httpx.post(url, data={"state": "running"}, timeout=5).json() == {"message": "401 Unauthorized"}


def test_register_project_at_runtime(standin: Standin) -> None:
    new = {"id": 9, "path_with_namespace": "ml/fresh", "token": "glpat-fresh"}
    r = httpx.post(f"{standin.url}/_standin/projects", json=new, timeout=5)
    assert r.status_code == 201 and "token" not in r.json()
    assert GitLabStatuses(standin.url, "glpat-fresh", "ml/fresh").project_info()["id"] == 9
    saved = json.loads((standin.state_dir / "projects.json").read_text())
    assert [p["id"] for p in saved] == [7, 8, 9]
    clash = {"id": 10, "path_with_namespace": "ml/fresh", "token": "t"}
    assert httpx.post(f"{standin.url}/_standin/projects", json=clash, timeout=5).status_code == 409


def test_restarted_standin_keeps_statuses(tmp_path: Path) -> None:
    state_dir = tmp_path / "gitlab"
    _write_projects(state_dir)
    port = free_port()
    server = _Server(state_dir, port)
    url = f"http://127.0.0.1:{port}"
    try:
        gl = GitLabStatuses(url, TOKEN, "ml/loans", timeout_s=5)
        assert gl.post(SHA, TEST_STATUS, CommitState.SUCCESS, ref="main")
        assert gl.post(SHA, TRAIN_STATUS, CommitState.RUNNING, ref="main")
    finally:
        server.stop()
    server = _Server(state_dir, port)
    try:
        gl = GitLabStatuses(url, TOKEN, "ml/loans", timeout_s=5)
        assert {s["name"]: s["status"] for s in gl.statuses(SHA)} == {TEST_STATUS: "success", TRAIN_STATUS: "running"}
        # The state machine continues from the saved record.
        assert gl.post(SHA, TRAIN_STATUS, CommitState.RUNNING, ref="main") is False
        assert gl.post(SHA, TRAIN_STATUS, CommitState.SUCCESS, ref="main")
        assert len(gl.statuses(SHA, all_records=True)) == 2
        calls = httpx.get(f"{url}/_standin/calls", timeout=5).json()
        assert [c["state"] for c in calls if c["method"] == "POST"] == ["success", "running", "running", "success"]
    finally:
        server.stop()
