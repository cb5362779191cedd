"""CI-triggered training on the session's stack: the real receiver, Prefect server and workers, Spark, git.

GitLab is the stand-in API of the stack (driven through python-gitlab); deliveries carry GitLab's headers and
payload shape (opsflow.stack.gitlab_push). The example project is examples/spark_training (a PySpark MLlib
classifier).
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterTags

from ci_training.models import TEST_STATUS, TRAIN_STATUS, ZERO_SHA
from opsflow.adapters.spark import SparkMaster
from opsflow.stack.ci import EXAMPLE_PROJECT, EXAMPLE_PROJECT_ID, local_secrets
from opsflow.stack.ci_demo import push, statuses, wait_for_run, work_clone
from opsflow.stack.ci_demo import run_id as run_of
from opsflow.stack.config import StackConfig
from opsflow.stack.gitlab_push import deliver, headers, push_payload
from opsflow.stack.manager import components
from tests.support import wait_until

pytestmark = pytest.mark.stack


def ci_runs() -> list[Any]:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["ci-training"])), limit=200)


def app_named(stack: StackConfig, name: str) -> Any:
    return SparkMaster(stack.spark_master_ui_url).state().app_named(name)


def standin_calls(stack: StackConfig) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = httpx.get(f"{stack.gitlab_url}/_standin/calls", timeout=10).json()
    return calls


def test_refused_and_ignored_deliveries_start_nothing(stack: StackConfig) -> None:
    secret = local_secrets(stack)["webhook_secret"]
    repo = work_clone(stack)
    sha = repo.commit("Not pushed through the receiver", tree=None)
    url = stack.webhook_url

    def payload(ref: str = "refs/heads/main", after: str = sha, message: str = "x", **kw: Any) -> dict[str, Any]:
        return push_payload(EXAMPLE_PROJECT, EXAMPLE_PROJECT_ID, ref, ZERO_SHA, after, [(after, message)], "/r", **kw)

    before = len(ci_runs())
    assert deliver(url, payload(), None).status_code == 401
    assert deliver(url, payload(), "wrong-secret").status_code == 401
    bad_json = httpx.post(url, content=b"{not json", headers=headers(secret), timeout=10)
    assert bad_json.status_code == 400
    huge = httpx.post(url, content=b"x" * (2 << 20), headers=headers(secret), timeout=10)
    assert huge.status_code == 413
    other = push_payload("ml/unknown", 99, "refs/heads/main", ZERO_SHA, sha, [(sha, "x")], "/r")
    assert deliver(url, other, secret).status_code == 404
    ignored = {
        "tag": deliver(url, payload(ref="refs/tags/v1"), secret, event="Tag Push Hook"),
        "other event": deliver(url, payload(), secret, event="Merge Request Hook"),
        "deleted": deliver(url, payload(after=ZERO_SHA), secret),
        "filtered": deliver(url, payload(ref="refs/heads/wip"), secret),
        "skip ci": deliver(url, payload(message="Docs only [skip ci]"), secret),
        "ci.skip": deliver(url, payload(push_options={"ci": {"skip": True}}), secret),
    }
    for why, answer in ignored.items():
        assert answer.status_code == 200 and answer.json()["result"] == "ignored", (why, answer.text)
    assert len(ci_runs()) == before


def test_a_push_tests_then_trains_with_statuses_once_per_delivery(stack: StackConfig) -> None:
    calls_before = len(standin_calls(stack))
    sha, answer = push(stack, "Train the loan classifier", key="delivery-train-1")
    assert answer.status_code == 202, answer.text
    run_id = run_of(answer)
    # The receiver answered before any work; `pending` with the run's URL follows at once.
    assert wait_until(lambda: statuses(stack, sha).get(TEST_STATUS), timeout_s=10)
    first = statuses(stack, sha)[TEST_STATUS]
    assert first["target_url"] == f"http://127.0.0.1:{stack.prefect_port}/runs/flow-run/{run_id}"
    run = wait_for_run(run_id, timeout_s=420)
    assert run.state is not None and run.state.is_completed(), run.state
    assert run.parameters["project"] == "loans" and run.parameters["checkout_sha"] == sha
    assert run.parameters["ref"] == "refs/heads/main"
    final = statuses(stack, sha)
    assert final[TEST_STATUS]["status"] == "success"
    assert final[TRAIN_STATUS]["status"] == "success" and "accuracy=" in final[TRAIN_STATUS]["description"]
    posted = [
        c["state"] for c in standin_calls(stack)[calls_before:] if c.get("name") == TRAIN_STATUS and c.get("state")
    ]
    assert "running" in posted and posted.index("running") < posted.index("success")
    app = app_named(stack, f"opsflow-ci-{run_id}")
    assert app is not None and app.state == "FINISHED"
    # The same delivery again, then after restarts of the receiver and of the Prefect server: one run.
    repeat = deliver(
        stack.webhook_url, _payload_of(stack, sha), local_secrets(stack)["webhook_secret"], key="delivery-train-1"
    )
    assert repeat.status_code == 200 and repeat.json() == {
        **repeat.json(),
        "result": "duplicate",
        "flow_run_id": run_id,
    }
    for name in ("webhook", "prefect"):
        (component,) = components(stack, [name])
        component.stop()
        component.start()
    again = deliver(
        stack.webhook_url, _payload_of(stack, sha), local_secrets(stack)["webhook_secret"], key="delivery-train-1"
    )
    assert again.status_code == 200 and again.json()["result"] == "duplicate", again.text
    # A receiver without the journal (another host, a lost disk): Prefect's idempotency key still holds.
    (webhook,) = components(stack, ["webhook"])
    webhook.stop()
    (stack.home / "ci" / "deliveries.jsonl").unlink()
    webhook.start()
    def redeliver() -> Any:
        return deliver(
            stack.webhook_url, _payload_of(stack, sha), local_secrets(stack)["webhook_secret"], key="delivery-train-1"
        )

    backstop = redeliver()
    if backstop.status_code == 202:
        # Prefect, just restarted, answered after the receiver's short wait: the delivery is queued; the run it
        # resolves to must still be the first one (the idempotency key), never a second run.
        backstop = wait_until(lambda: (r := redeliver()).status_code == 200 and r, timeout_s=60)
    assert backstop and backstop.json()["result"] == "duplicate", backstop.text
    assert sum(1 for r in ci_runs() if r.parameters.get("checkout_sha") == sha) == 1
    _assert_no_secret_leaked(stack, run_id)


def _payload_of(stack: StackConfig, sha: str) -> dict[str, Any]:
    repo = work_clone(stack)
    return push_payload(
        EXAMPLE_PROJECT, EXAMPLE_PROJECT_ID, "refs/heads/main", ZERO_SHA, sha, [(sha, "again")], str(repo.bare)
    )


def _assert_no_secret_leaked(stack: StackConfig, run_id: str) -> None:
    keys = local_secrets(stack)
    with get_client(sync_client=True) as client:
        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])), limit=200)
        run = client.read_flow_run(run_id)  # type: ignore[arg-type]
        artifacts = client.read_artifacts(limit=200)
    text = "\n".join(log.message for log in logs) + json.dumps(run.parameters)
    text += "\n".join(str(a.data) for a in artifacts)
    for path in (stack.home / "logs").glob("*.log"):
        text += path.read_text(errors="replace")
    assert logs, "the run logged nothing"
    for secret in keys.values():
        assert secret not in text


def test_red_tests_fail_the_commit_and_never_train(stack: StackConfig) -> None:
    sha, answer = push(stack, "Break a test", {"tests/test_broken.py": "def test_broken():\n    assert False\n"})
    run = wait_for_run(run_of(answer), timeout_s=300)
    assert run.state is not None and run.state.is_failed()
    final = statuses(stack, sha)
    assert final[TEST_STATUS]["status"] == "failed" and "1 failed" in final[TEST_STATUS]["description"]
    assert final[TRAIN_STATUS]["status"] == "canceled"
    assert app_named(stack, f"opsflow-ci-{run.id}") is None  # nothing was submitted to Spark


def test_a_training_that_raises_fails_and_a_bad_override_file_names_its_line(stack: StackConfig) -> None:
    fixed = {"tests/test_broken.py": "def test_fixed():\n    assert True\n"}
    sha, answer = push(stack, "Train, then raise", {**fixed, "opsflow-ci.yaml": "arguments: [--rows, '200', --fail]\n"})
    run = wait_for_run(run_of(answer), timeout_s=300)
    assert run.state is not None and run.state.is_failed()
    final = statuses(stack, sha)
    assert final[TEST_STATUS]["status"] == "success"
    assert final[TRAIN_STATUS]["status"] == "failed"
    sha, answer = push(stack, "A typo in the override file", {"opsflow-ci.yaml": "entry_piont: train.py\n"})
    run = wait_for_run(run_of(answer), timeout_s=300)
    assert run.state is not None and run.state.is_failed()
    described = statuses(stack, sha)[TEST_STATUS]
    assert described["status"] == "failed" and "opsflow-ci.yaml:1" in described["description"]


def test_a_newer_push_on_the_same_ref_cancels_the_older_run(stack: StackConfig) -> None:
    slow = {"opsflow-ci.yaml": "test_command: [sleep, '120']\n"}
    old_sha, old = push(stack, "A slow one", slow)
    old_id = run_of(old)
    with get_client(sync_client=True) as client:
        assert wait_until(lambda: client.read_flow_run(old_id).state.is_running(), timeout_s=120)  # type: ignore[union-attr, arg-type]
    assert wait_until(lambda: statuses(stack, old_sha).get(TEST_STATUS, {}).get("status") == "running", timeout_s=120)
    other_branch_sha, other = push(
        stack, "Elsewhere", {"opsflow-ci.yaml": "test_command: [sleep, '1']\n"}, branch="feature/x"
    )
    new_sha, new = push(
        stack, "The newer one", {"opsflow-ci.yaml": "test_command: [python, -c, 'raise SystemExit(1)']\n"}
    )
    new_run = wait_for_run(run_of(new), timeout_s=300)
    assert new_run.state is not None and new_run.state.is_final()
    old_run = wait_for_run(old_id, timeout_s=60)
    assert old_run.state is not None and old_run.state.is_cancelled(), old_run.state
    old_statuses = statuses(stack, old_sha)
    assert {old_statuses[TEST_STATUS]["status"], old_statuses[TRAIN_STATUS]["status"]} == {"canceled"}
    # Another ref is not touched by it.
    other_run = wait_for_run(run_of(other), timeout_s=300)
    assert other_run.state is not None and not other_run.state.is_cancelled()
    with get_client(sync_client=True) as client:
        tagged = client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=["ci"])), limit=200)
    assert any(r.id == new_run.id for r in tagged)
    _ = (new_sha, other_branch_sha, time)
