"""The receiver's answers, in process (Starlette's test client): what each delivery gets, and what it starts.

Prefect is replaced here by a launcher that keeps idempotency keys unique as Prefect's database does, so that a
slow or unreachable Prefect can be played on cue; the real server, worker and stand-in GitLab are in
tests/e2e/test_ci_training.py. The journal is the real one, on disk.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from ci_training.journal import DeliveryJournal, JournalEntry
from ci_training.models import ZERO_SHA, CiProject
from ci_training.receiver import KnownProject, LaunchedRun, StaticDirectory, build_app
from opsflow.errors import AdapterError
from opsflow.stack.gitlab_push import headers, push_payload

SECRET = "hook-secret-123"
SHA = "1" * 40


class KeyedLauncher:
    """Creates a run per new key and returns the first run for a key seen before (Prefect's unique key)."""

    def __init__(self) -> None:
        self.runs: dict[str, dict[str, Any]] = {}
        self.events: list[tuple[str, dict[str, str], dict[str, Any], str]] = []
        self.down = False
        self.delay_s = 0.0

    async def launch(
        self, deployment: str, parameters: dict[str, Any], key: str, tags: list[str], name: str
    ) -> LaunchedRun:
        await asyncio.sleep(self.delay_s)
        if self.down:
            raise AdapterError("cannot reach the Prefect API")
        created = key not in self.runs
        if created:
            self.runs[key] = {"id": f"run-{len(self.runs)}", "deployment": deployment, "parameters": parameters,
                              "tags": tags, "name": name}  # fmt: skip
        run = self.runs[key]
        return LaunchedRun(flow_run_id=run["id"], created=created, url=f"http://ui/runs/flow-run/{run['id']}")

    async def emit(self, event: str, resource: dict[str, str], payload: dict[str, Any], key: str) -> None:
        self.events.append((event, resource, payload, key))


def project(**overrides: Any) -> KnownProject:
    settings = CiProject(project="ml/loans", api_token="glpat-x", webhook_secret=SECRET, branches=["main"])
    return KnownProject(block="loans", settings=settings.model_copy(update=overrides))


@pytest.fixture
def launcher() -> KeyedLauncher:
    return KeyedLauncher()


def app(launcher: KeyedLauncher, journal: Path, known: KnownProject | None = None, **kw: Any) -> Any:
    directory = StaticDirectory({"loans": known or project()})
    return build_app(directory, launcher, DeliveryJournal(journal), retry_delays_s=(0.05,), **kw)


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    return tmp_path / "deliveries.jsonl"


@pytest.fixture
def client(launcher: KeyedLauncher, journal: Path) -> Iterator[TestClient]:
    # The `with` keeps the app's event loop (and its background run creation) alive between requests.
    with TestClient(app(launcher, journal, max_body=64 * 1024)) as c:
        yield c


def wait_for(probe: Any, timeout_s: float = 5.0) -> Any:
    import time

    deadline = time.monotonic() + timeout_s
    while not (value := probe()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return value


def payload(ref: str = "refs/heads/main", after: str = SHA, message: str = "Train", **kw: Any) -> dict[str, Any]:
    return push_payload("ml/loans", 7, ref, ZERO_SHA, after, [(after, message)], "/srv/loans.git", **kw)


def post(client: TestClient, body: dict[str, Any], secret: str | None = SECRET, **kw: Any) -> Any:
    return client.post("/hooks/gitlab", json=body, headers=headers(secret, **kw))


def test_a_push_starts_one_run_with_its_parameters_and_an_event(client: TestClient, launcher: KeyedLauncher) -> None:
    r = post(client, payload(), key="k-1")
    assert r.status_code == 202 and r.json()["result"] == "accepted"
    (run,) = launcher.runs.values()
    assert run["deployment"] == "ci-training/cpu"
    assert run["parameters"]["checkout_sha"] == SHA and run["parameters"]["ref"] == "refs/heads/main"
    assert run["parameters"]["project"] == "loans"
    assert "ci-ref:ml/loans:refs/heads/main" in run["tags"]
    assert SECRET not in str(run) and "glpat-x" not in str(run)
    (event,) = launcher.events
    assert event[0] == "opsflow.gitlab.push" and event[1]["prefect.resource.id"] == "gitlab.project.ml/loans"


def test_the_same_delivery_twice_is_one_run(client: TestClient, launcher: KeyedLauncher) -> None:
    first = post(client, payload(), key="k-1")
    second = post(client, payload(), key="k-1")
    assert second.status_code == 200 and second.json()["result"] == "duplicate"
    assert second.json()["flow_run_id"] == first.json()["flow_run_id"]
    assert len(launcher.runs) == 1 and len(launcher.events) == 1


def test_without_idempotency_key_the_event_uuid_then_the_push_is_the_key(
    client: TestClient, launcher: KeyedLauncher
) -> None:
    h = headers(SECRET)
    del h["Idempotency-Key"]
    for _ in range(2):
        client.post("/hooks/gitlab", json=payload(), headers=h)
    del h["X-Gitlab-Event-UUID"]
    for _ in range(2):
        client.post("/hooks/gitlab", json=payload(), headers=h)
    assert len(launcher.runs) == 2


def test_refusals(client: TestClient, launcher: KeyedLauncher, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    assert post(client, payload(), secret=None).status_code == 401
    assert post(client, payload(), secret="guess-the-secret").status_code == 401
    bad = client.post("/hooks/gitlab", content=b"{oops", headers=headers(SECRET))
    assert bad.status_code == 400 and "malformed JSON" in bad.json()["reason"]
    assert client.post("/hooks/gitlab", content=b"x" * (65 * 1024), headers=headers(SECRET)).status_code == 413
    other = push_payload("ml/other", 8, "refs/heads/main", ZERO_SHA, SHA, [(SHA, "x")], "/r")
    assert post(client, other).status_code == 404
    shape = post(client, {**payload(), "checkout_sha": 12, "project_id": "seven"})
    assert shape.status_code == 400
    assert not launcher.runs and not launcher.events
    assert "guess-the-secret" not in caplog.text and SECRET not in caplog.text


@pytest.mark.parametrize(
    ("why", "body", "event"),
    [
        ("tag", payload(ref="refs/tags/v1.0"), "Tag Push Hook"),
        ("event", payload(), "Merge Request Hook"),
        ("deleted", payload(after=ZERO_SHA), "Push Hook"),
        ("filtered", payload(ref="refs/heads/wip"), "Push Hook"),
        ("skip ci", payload(message="Typo [skip ci]"), "Push Hook"),
        ("ci.skip", payload(push_options={"ci": {"skip": True}}), "Push Hook"),
    ],
)
def test_ignored_deliveries_are_2xx_and_start_nothing(
    client: TestClient, launcher: KeyedLauncher, why: str, body: dict[str, Any], event: str
) -> None:
    r = post(client, body, event=event)
    assert r.status_code == 200 and r.json()["result"] == "ignored", why
    assert r.json()["reason"].startswith("ignored:")
    assert not launcher.runs


def test_a_gpu_project_goes_to_the_gpu_deployment(launcher: KeyedLauncher, journal: Path) -> None:
    with TestClient(app(launcher, journal, project(cpu_only=False))) as client:
        assert post(client, payload()).status_code == 202
    assert [r["deployment"] for r in launcher.runs.values()] == ["ci-training/gpu"]


def test_an_unreachable_prefect_queues_the_delivery_and_its_run_comes_later(
    client: TestClient, launcher: KeyedLauncher
) -> None:
    launcher.down = True
    r = post(client, payload(), key="k-9")
    assert r.status_code == 202 and r.json()["result"] == "accepted" and r.json()["flow_run_id"] is None
    again = post(client, payload(), key="k-9")  # GitLab's retry of it, while Prefect is still away
    assert again.status_code == 200 and again.json()["result"] == "duplicate"
    launcher.down = False
    assert wait_for(lambda: launcher.runs)
    assert len(launcher.runs) == 1
    assert wait_for(lambda: post(client, payload(), key="k-9").json()["flow_run_id"] == "run-0")


def test_a_slow_prefect_gets_a_quick_queued_answer(client: TestClient, launcher: KeyedLauncher) -> None:
    launcher.delay_s = 2.0
    r = post(client, payload(), key="slow")
    assert r.status_code == 202 and r.json()["reason"].startswith("queued")
    assert r.json()["idempotency_key"] == "gitlab:loans:slow"
    assert wait_for(lambda: launcher.runs) and wait_for(lambda: launcher.events)


def test_a_restarted_receiver_knows_its_deliveries_and_creates_what_was_left(
    launcher: KeyedLauncher, journal: Path
) -> None:
    with TestClient(app(launcher, journal)) as client:
        post(client, payload(), key="k-1")
    # Accepted by a receiver that died before the run was created:
    left = JournalEntry(key="gitlab:loans:k-2", block="loans", deployment="ci-training/cpu", project="ml/loans")
    DeliveryJournal(journal).accept(left)
    with open(journal, "a") as f:
        f.write('{"accepted": {"key": "cut sh')  # the line a crash cut short
    forgetful = KeyedLauncher()
    with TestClient(app(forgetful, journal)) as client:
        assert post(client, payload(), key="k-1").json()["result"] == "duplicate"  # from the journal
        assert wait_for(lambda: "gitlab:loans:k-2" in forgetful.runs)
    assert list(forgetful.runs) == ["gitlab:loans:k-2"]


def test_a_journal_that_lost_a_key_still_answers_duplicate_through_prefect(
    launcher: KeyedLauncher, tmp_path: Path
) -> None:
    with TestClient(app(launcher, tmp_path / "a.jsonl")) as client:
        first = post(client, payload(), key="k-1")
    with TestClient(app(launcher, tmp_path / "b.jsonl")) as client:
        second = post(client, payload(), key="k-1")
    assert second.status_code == 200 and second.json()["result"] == "duplicate"
    assert second.json()["flow_run_id"] == first.json()["flow_run_id"] and len(launcher.runs) == 1


def test_pending_is_posted_once_the_run_exists(launcher: KeyedLauncher, journal: Path) -> None:
    seen: list[tuple[str, str]] = []

    async def pending(known: KnownProject, entry: JournalEntry, run: LaunchedRun) -> None:
        seen.append((known.block, run.flow_run_id))

    with TestClient(app(launcher, journal, pending=pending)) as client:
        r = post(client, payload())
        assert wait_for(lambda: seen == [("loans", r.json()["flow_run_id"])])
        post(client, payload(), key="another")
        assert wait_for(lambda: len(seen) == 2)
