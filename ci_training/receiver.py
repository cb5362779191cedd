"""The GitLab webhook receiver: an ASGI app that checks a delivery, answers at once and starts one run.

What it does with a ``POST /hooks/gitlab`` (the URL to paste into GitLab's webhook settings), in order:

1. a body over ``max_body`` bytes → 413; no ``X-Gitlab-Token`` → 401;
2. malformed JSON → 400; a project no ``GitLabProject`` Block knows → 404;
3. a token that is not the project's webhook secret (constant-time comparison) → 401: no run, no event, and the
   token is never logged;
4. :func:`ci_training.rules.triage`: anything but a push to a filtered branch → 200 with the reason. GitLab
   disables a hook after four failed deliveries in a row, so "ignored" is never an error;
5. an accepted push is written to the :class:`~ci_training.journal.DeliveryJournal` (on disk) before it is
   answered, then its one flow run of ``ci-training/<pool>`` is created with the delivery's idempotency key
   (``Idempotency-Key``, else ``X-Gitlab-Event-UUID``, else a hash of the push). A run created within
   ``answer_within_s`` → 202 with its id and URL; otherwise 202 "queued" and the run is created in the
   background (retried until Prefect takes it, and after a restart of the receiver). The same delivery again,
   hours later or after restarts of this receiver and of the Prefect server → 200 "duplicate" with the first
   run: the journal knows the key, and Prefect's database keeps it unique per flow as a backstop;
6. once the run exists (no GitLab, git, test or Spark work inside the request): the Prefect event
   ``opsflow.gitlab.push`` and the ``pending`` commit statuses that link to the run.

The receiver starts the run itself rather than through a deployment trigger on the event: Prefect's event
dedup lives in an in-memory cache of five minutes, and a trigger's run gets a fresh idempotency key per firing,
so only a key set by the receiver makes "one run per delivery" hold across hours and restarts.

The I/O is injected (:class:`ProjectDirectory`, :class:`RunLauncher`, the journal, a ``pending`` callback), so
the app is the same against the local stack and a site; :mod:`ci_training.prefect_api` gives the Prefect
implementations and :mod:`ci_training.service` wires them.

Example:
    >>> constant_time_equal("s3cret", "s3cret"), constant_time_equal("s3cret", "guess")
    (True, False)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ci_training.journal import DeliveryJournal, JournalEntry
from ci_training.models import CiProject, PushEvent
from ci_training.rules import delivery_key, flow_run_name, ref_tag, run_parameters, triage
from opsflow.errors import InputError, OpsflowError

log = logging.getLogger("opsflow.ci.receiver")

#: The hook payloads of pushes are small (GitLab sends at most 20 commits); anything far bigger is not GitLab's.
MAX_BODY = 1 << 20
EVENT_PUSH = "opsflow.gitlab.push"
#: How long a request waits for its run before answering "queued" (GitLab's own limit is 10 s). An idle Prefect
#: creates a run in well under this; a busy one does not make the answer wait.
ANSWER_WITHIN_S = 0.25


def constant_time_equal(given: str, expected: str) -> bool:
    """True when the token matches (hmac.compare_digest: no timing leak of how much of it matched)."""
    return hmac.compare_digest(given.encode(), expected.encode())


@dataclass(frozen=True)
class KnownProject:
    """A project the receiver serves: the name of its Block and its settings."""

    block: str
    settings: CiProject


@dataclass(frozen=True)
class LaunchedRun:
    flow_run_id: str
    created: bool
    url: str


class ProjectDirectory(Protocol):
    async def find(self, project_id: int | None, path: str | None) -> KnownProject | None:
        """The project of a delivery by GitLab id or path with namespace; None when none is configured."""


class RunLauncher(Protocol):
    async def launch(
        self, deployment: str, parameters: dict[str, Any], key: str, tags: list[str], name: str
    ) -> LaunchedRun:
        """Create the flow run of ``deployment`` with idempotency key ``key``: created=False when it existed."""

    async def emit(self, event: str, resource: dict[str, str], payload: dict[str, Any], key: str) -> None:
        """Send a Prefect event (its id derived from ``key``, so a duplicate delivery repeats the same id)."""


#: Called once a delivery's new run exists, with its project, its journal entry and the run: posts ``pending``.
PendingCallback = Callable[[KnownProject, JournalEntry, LaunchedRun], Awaitable[None]]


class StaticDirectory:
    """A fixed mapping of project path → :class:`KnownProject` (tests, benchmarks)."""

    def __init__(self, projects: Mapping[str, KnownProject]) -> None:
        self.projects = dict(projects)

    async def find(self, project_id: int | None, path: str | None) -> KnownProject | None:
        for known in self.projects.values():
            if known.settings.project in (path, str(project_id)):
                return known
        return None


def _reply(status: int, result: str, reason: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"result": result, "reason": reason, **extra}, status_code=status)


def fallback_key(payload: Mapping[str, Any]) -> str:
    """A dedup key for a GitLab too old to send ``Idempotency-Key``: the push itself (project, ref, before, after).

    >>> fallback_key({"project_id": 7, "ref": "refs/heads/main", "before": "a", "after": "b"})[:12]
    'push-6984816'
    """
    fields = [str(payload.get(k, "")) for k in ("project_id", "ref", "before", "after")]
    return "push-" + hashlib.sha256("\0".join(fields).encode()).hexdigest()[:32]


class RunStarter:
    """Creates the run of each journaled delivery once: at most ``concurrency`` creations at a time (SQLite has
    one writer), each retried after ``retry_delays_s`` until Prefect takes it; then the event and ``pending``.
    """

    def __init__(
        self,
        journal: DeliveryJournal,
        directory: ProjectDirectory,
        launcher: RunLauncher,
        *,
        pending: PendingCallback | None = None,
        concurrency: int = 4,
        retry_delays_s: Sequence[float] = (1.0, 2.0, 5.0, 10.0, 30.0),
    ) -> None:
        self.journal, self.directory, self.launcher, self.pending = journal, directory, launcher, pending
        self.retry_delays_s = tuple(retry_delays_s)
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: dict[str, asyncio.Task[LaunchedRun]] = {}
        self._after: set[asyncio.Task[None]] = set()

    def start(self, entry: JournalEntry) -> asyncio.Task[LaunchedRun]:
        """The (one) task creating ``entry``'s run."""
        if entry.key not in self._tasks:
            task = asyncio.get_running_loop().create_task(self._create(entry))
            # Done, its run is in the journal (which answers from then on): no task kept per delivery.
            task.add_done_callback(lambda _: self._tasks.pop(entry.key, None))
            self._tasks[entry.key] = task
        return self._tasks[entry.key]

    def resume(self) -> int:
        """Start the deliveries a previous receiver accepted but did not get a run for."""
        waiting = self.journal.waiting()
        for entry in waiting:
            self.start(entry)
        return len(waiting)

    async def _create(self, entry: JournalEntry) -> LaunchedRun:
        attempt = 0
        while True:
            try:
                async with self._slots:
                    launched = await self.launcher.launch(
                        entry.deployment, entry.parameters, entry.key, entry.tags, entry.name
                    )
                break
            except OpsflowError as exc:
                delay = self.retry_delays_s[min(attempt, len(self.retry_delays_s) - 1)]
                log.warning("run of %s not created yet (%s); again in %.0f s", entry.key, exc, delay)
                attempt += 1
                await asyncio.sleep(delay)
        self.journal.started(entry.key, launched.flow_run_id, launched.url)
        log.info("delivery %s: run %s (%s)", entry.key, launched.flow_run_id, "new" if launched.created else "existed")
        if launched.created:
            after = asyncio.get_running_loop().create_task(self._announce(entry, launched))
            self._after.add(after)
            after.add_done_callback(self._after.discard)
        return launched

    async def _announce(self, entry: JournalEntry, launched: LaunchedRun) -> None:
        """The push event and the ``pending`` statuses: best effort (the flow posts its statuses itself)."""
        try:
            await self.launcher.emit(EVENT_PUSH, entry.event_resource, entry.event_payload, entry.key)
            known = await self.directory.find(None, entry.project)
            if self.pending is not None and known is not None:
                await self.pending(known, entry, launched)
        except Exception as exc:  # nothing here may take the receiver down
            log.warning("event or pending status of %s not sent: %s", entry.key, exc)


def build_app(
    directory: ProjectDirectory,
    launcher: RunLauncher,
    journal: DeliveryJournal,
    *,
    pending: PendingCallback | None = None,
    max_body: int = MAX_BODY,
    answer_within_s: float = ANSWER_WITHIN_S,
    retry_delays_s: Sequence[float] = (1.0, 2.0, 5.0, 10.0, 30.0),
) -> Starlette:
    """The receiver app: ``POST /hooks/gitlab`` and ``GET /healthz``."""
    starter = RunStarter(journal, directory, launcher, pending=pending, retry_delays_s=retry_delays_s)

    def accepted(entry: JournalEntry, status: int, result: str, reason: str) -> JSONResponse:
        return _reply(status, result, reason, idempotency_key=entry.key, flow_run_id=entry.flow_run_id, url=entry.url)

    async def hook(request: Request) -> JSONResponse:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body:
            return _reply(413, "refused", f"body over {max_body} bytes")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body:
                return _reply(413, "refused", f"body over {max_body} bytes")
        token = request.headers.get("x-gitlab-token")
        if not token:
            return _reply(401, "refused", "missing X-Gitlab-Token")
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return _reply(400, "refused", f"malformed JSON: {exc}")
        if not isinstance(payload, dict):
            return _reply(400, "refused", "the payload is not a JSON object")
        project_info = payload.get("project") if isinstance(payload.get("project"), dict) else {}
        raw_id = payload.get("project_id")
        path = project_info.get("path_with_namespace") if project_info else None
        known = await directory.find(
            raw_id if isinstance(raw_id, int) else None, path if isinstance(path, str) else None
        )
        if known is None:
            return _reply(404, "refused", f"no GitLabProject Block for project {path or raw_id!r}")
        if not constant_time_equal(token, known.settings.webhook_secret.get_secret_value()):
            log.warning("delivery for %s refused: wrong X-Gitlab-Token", known.block)
            return _reply(401, "refused", "wrong X-Gitlab-Token")
        try:
            verdict, push = triage(request.headers.get("x-gitlab-event"), payload, known.settings)
        except InputError as exc:
            return _reply(400, "refused", str(exc))
        if not verdict.accepted or push is None:
            return _reply(200, "ignored", verdict.reason)
        key = delivery_key(request.headers) or fallback_key(payload)
        # One key space per project Block: two projects may share a GitLab instance's delivery ids.
        run_key = f"gitlab:{known.block}:{key}"
        seen = journal.get(run_key)
        if seen is not None:
            return accepted(seen, 200, "duplicate", "this delivery already started a run")
        entry = _entry(known, push, key, run_key)
        try:
            journal.accept(entry)
        except OSError as exc:  # the disk is full or gone: not accepted, GitLab sends it again later
            log.error("delivery for %s not journaled: %s", known.block, exc)
            return _reply(503, "retry", f"cannot record the delivery: {exc}")
        log.info("delivery for %s %s@%s accepted (%s)", known.block, push.ref, push.after[:8], run_key)
        try:
            launched = await asyncio.wait_for(asyncio.shield(starter.start(entry)), answer_within_s)
        except TimeoutError:
            return accepted(entry, 202, "accepted", "queued: its run is being created")
        if not launched.created:  # Prefect knew the key: a journal that lost it (another host, a reset)
            return accepted(entry, 200, "duplicate", "this delivery already started a run")
        return accepted(entry, 202, "accepted", "run started")

    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "waiting": len(journal.waiting())})

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        resumed = starter.resume()
        if resumed:
            log.info("%d accepted deliveries had no run yet: creating them", resumed)
        yield

    return Starlette(
        routes=[Route("/hooks/gitlab", hook, methods=["POST"]), Route("/healthz", healthz)], lifespan=lifespan
    )


def _entry(known: KnownProject, push: PushEvent, key: str, run_key: str) -> JournalEntry:
    return JournalEntry(
        key=run_key,
        block=known.block,
        deployment=f"ci-training/{known.settings.pool}",
        parameters=run_parameters(known.block, push, key),
        tags=["opsflow", "ci", ref_tag(known.settings.project, push.ref)],
        name=flow_run_name(push),
        project=known.settings.project,
        sha=push.checkout_sha or push.after,
        branch=push.branch,
        event_resource={"prefect.resource.id": f"gitlab.project.{known.settings.project}", "gitlab.ref": push.ref},
        event_payload={
            "ref": push.ref,
            "checkout_sha": push.checkout_sha,
            "before": push.before,
            "block": known.block,
            "user": push.user_username or "",
        },
    )
