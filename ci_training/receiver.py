"""The GitLab webhook receiver: an ASGI app that checks a delivery, answers at once and starts one run.

What it does with a ``POST /hooks/gitlab`` (the URL to paste into GitLab's webhook settings), in order:

1. a body over ``max_body`` bytes → 413; no ``X-Gitlab-Token`` → 401;
2. malformed JSON → 400; a project no ``GitLabProject`` Block knows → 404;
3. a token that is not the project's webhook secret (constant-time comparison) → 401: no run, no event, and the
   token is never logged;
4. :func:`ci_training.rules.triage`: anything but a push to a filtered branch → 200 with the reason. GitLab
   disables a hook after four failed deliveries in a row, so "ignored" is never an error;
5. an accepted push → one flow run of ``ci-training/<pool>`` created with the delivery's idempotency key
   (``Idempotency-Key``, else ``X-Gitlab-Event-UUID``, else a hash of the push). Prefect's database keeps the
   key unique per flow, so a delivery sent again, hours later or after restarts of this receiver and of the
   Prefect server, finds the first run: 200 "duplicate". A new run → 202 with its id and URL;
6. after the answer (no GitLab, git, test or Spark work inside the request): the Prefect event
   ``opsflow.gitlab.push`` and the ``pending`` commit statuses that link to the run.

The receiver starts the run itself rather than through a deployment trigger on the event: Prefect's event
dedup lives in an in-memory cache of five minutes, and a trigger's run gets a fresh idempotency key per firing,
so only a key set by the receiver makes "one run per delivery" hold across hours and restarts.

The I/O is injected (:class:`ProjectDirectory`, :class:`RunLauncher`, a ``pending`` callback), so the app is the
same against the local stack and a site; :mod:`ci_training.prefect_api` gives the Prefect implementations.

Example:
    >>> app = build_app(StaticDirectory({}), launcher=None)  # doctest: +SKIP
    >>> constant_time_equal("s3cret", "s3cret"), constant_time_equal("s3cret", "guess")
    (True, False)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.background import BackgroundTasks
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ci_training.models import CiProject, PushEvent
from ci_training.rules import delivery_key, flow_run_name, ref_tag, run_parameters, triage
from opsflow.errors import InputError, OpsflowError

log = logging.getLogger("opsflow.ci.receiver")

#: The hook payloads of pushes are small (GitLab sends at most 20 commits); anything far bigger is not GitLab's.
MAX_BODY = 1 << 20
EVENT_PUSH = "opsflow.gitlab.push"


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


#: Called after the answer with the project, the push and the new run: posts the ``pending`` statuses.
PendingCallback = Callable[[KnownProject, PushEvent, LaunchedRun], Awaitable[None]]


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


def build_app(
    directory: ProjectDirectory,
    launcher: RunLauncher,
    *,
    pending: PendingCallback | None = None,
    max_body: int = MAX_BODY,
) -> Starlette:
    """The receiver app: ``POST /hooks/gitlab`` and ``GET /healthz``."""

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
        try:
            launched = await launcher.launch(
                f"ci-training/{known.settings.pool}",
                run_parameters(known.block, push, key),
                run_key,
                ["opsflow", "ci", ref_tag(known.settings.project, push.ref)],
                flow_run_name(push),
            )
        except OpsflowError as exc:
            # 5xx: GitLab retries the delivery later, with the same Idempotency-Key.
            log.error("delivery for %s not started: %s", known.block, exc)
            return _reply(503, "retry", f"could not start the run: {exc}")
        if not launched.created:
            return _reply(
                200,
                "duplicate",
                "this delivery already started a run",
                flow_run_id=launched.flow_run_id,
                url=launched.url,
            )
        tasks = BackgroundTasks()
        tasks.add_task(
            launcher.emit,
            EVENT_PUSH,
            {"prefect.resource.id": f"gitlab.project.{known.settings.project}", "gitlab.ref": push.ref},
            {
                "ref": push.ref,
                "checkout_sha": push.checkout_sha,
                "before": push.before,
                "block": known.block,
                "flow_run_id": launched.flow_run_id,
                "user": push.user_username or "",
            },
            run_key,
        )
        if pending is not None:
            tasks.add_task(pending, known, push, launched)
        log.info("delivery for %s %s@%s: run %s", known.block, push.ref, push.after[:8], launched.flow_run_id)
        return JSONResponse(
            {"result": "accepted", "reason": "run started", "flow_run_id": launched.flow_run_id, "url": launched.url},
            status_code=202,
            background=tasks,
        )

    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/hooks/gitlab", hook, methods=["POST"]), Route("/healthz", healthz)])
