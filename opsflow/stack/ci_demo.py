"""The CI-training part of ``opsflow demo``: a push that trains, then a push whose tests fail.

It acts as a developer and as GitLab: commits ``examples/spark_training`` to the example project's repository,
delivers the ``Push Hook`` to the receiver exactly as GitLab would, follows the run, and prints the commit
statuses the run posted and the metrics of the training. The second commit breaks a test: ``opsflow/test``
becomes ``failed`` and nothing is submitted to Spark.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from ci_training.prefect_api import ui_url
from opsflow.stack.ci import EXAMPLE_PROJECT, EXAMPLE_PROJECT_ID, local_repo, local_secrets
from opsflow.stack.config import StackConfig
from opsflow.stack.gitlab_push import LocalRepository, deliver, push_payload

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "spark_training"
BROKEN_TEST = "def test_broken_on_purpose():\n    assert 1 + 1 == 3, 'a commit that breaks the tests'\n"


def work_clone(cfg: StackConfig) -> LocalRepository:
    """The developer's clone of the example project (under the stack's home)."""
    return LocalRepository(local_repo(cfg), cfg.home / "gitlab" / "work" / EXAMPLE_PROJECT)


def push(
    cfg: StackConfig,
    message: str,
    files: dict[str, str] | None = None,
    branch: str = "main",
    **delivery: Any,
) -> tuple[str, httpx.Response]:
    """Commit (the example tree plus ``files``), push to ``branch``, deliver the hook; the SHA and the answer."""
    repo = work_clone(cfg)
    sha = repo.commit(message, files=files, tree=EXAMPLE)
    before, after = repo.push(branch)
    payload = push_payload(
        EXAMPLE_PROJECT, EXAMPLE_PROJECT_ID, f"refs/heads/{branch}", before, after, [(sha, message)], str(repo.bare)
    )
    return sha, deliver(cfg.webhook_url, payload, local_secrets(cfg)["webhook_secret"], **delivery)


def run_id(answer: httpx.Response, timeout_s: float = 120) -> str:
    """The flow run of an accepted delivery: in the answer, or (answered "queued") found by its idempotency key."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterIdempotencyKey

    body = answer.json()
    if body.get("flow_run_id"):
        return str(body["flow_run_id"])
    deadline = time.monotonic() + timeout_s
    key_filter = FlowRunFilter(idempotency_key=FlowRunFilterIdempotencyKey(any_=[body["idempotency_key"]]))
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            found = client.read_flow_runs(flow_run_filter=key_filter, limit=1)
            if found:
                return str(found[0].id)
            time.sleep(0.5)
    raise TimeoutError(f"no run for the delivery {body['idempotency_key']} within {timeout_s:.0f} s")


def wait_for_run(flow_run_id: str, timeout_s: float = 600) -> Any:
    """The flow run once it ended (or as it was at the deadline)."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)  # type: ignore[arg-type]
        while time.monotonic() < deadline and not (run.state and run.state.is_final()):
            time.sleep(2)
            run = client.read_flow_run(flow_run_id)  # type: ignore[arg-type]
    return run


def statuses(cfg: StackConfig, sha: str) -> dict[str, dict[str, Any]]:
    """The latest status per name of ``sha`` on the stand-in GitLab, through the real client."""
    from ci_training.gitlab import GitLabStatuses

    gitlab = GitLabStatuses(cfg.gitlab_url, local_secrets(cfg)["api_token"], EXAMPLE_PROJECT)
    return {str(s["name"]): s for s in gitlab.statuses(sha)}


def ci_training(cfg: StackConfig, echo: Callable[[str], None], timeout_s: float = 480) -> bool:
    """Push a commit that trains, then one whose tests fail; True when both ended as they should."""
    echo(f"ci training: GitLab webhook URL {cfg.webhook_url} (project {EXAMPLE_PROJECT}, Block 'loans')")
    ok = True
    for message, files, want in (
        ("Train the loan classifier", None, "COMPLETED"),
        ("Break a test on purpose", {"tests/test_broken.py": BROKEN_TEST}, "FAILED"),
    ):
        sha, answer = push(cfg, message, files)
        body = answer.json()
        echo(f"ci training: pushed {sha[:8]} '{message}': receiver {answer.status_code} {body.get('result')}")
        if answer.status_code != 202:
            return False
        run = wait_for_run(run_id(answer), timeout_s)
        state = run.state.type.value if run.state else "?"
        echo(f"ci training: run {run.name} {state}  {ui_url(cfg.prefect_api_url, str(run.id))}")
        for name, status in sorted(statuses(cfg, sha).items()):
            echo(f"ci training:   {name}: {status['status']} - {status.get('description') or ''}")
        ok &= state == want
    # The broken test stays out of the next demo's first push.
    repo = work_clone(cfg)
    (repo.work / "tests" / "test_broken.py").unlink(missing_ok=True)
    return ok
