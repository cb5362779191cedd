"""Prefect's side of CI training: the Blocks the receiver serves, runs created once per delivery, events,
and the superseded runs of a ref.

The receiver talks to Prefect's REST API with one shared ``httpx.AsyncClient`` (it must answer GitLab within a
second, and importing a Prefect client per request would not); the flow side uses Prefect's own client.

- :class:`PrefectDirectory`: ``GitLabProject`` Block documents (secrets included: the receiver compares the
  webhook secret), cached for ``ttl_s`` so that an edit in the UI is seen within seconds.
- :class:`PrefectLauncher`: ``POST /deployments/{id}/create_flow_run`` with the delivery's idempotency key. The
  server answers 201 for a new run and 200 with the existing run when the key was used before — that is how a
  duplicate is told apart, durably (the key is a unique column of the flow-run table).
- :func:`superseded_runs` / :func:`cancel_flow_run`: the older live runs of the same project and ref.

Example:
    >>> basic_auth("admin:pass")
    ('admin', 'pass')
    >>> event_id("gitlab:loans:abc") == event_id("gitlab:loans:abc")
    True
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from ci_training.models import CiProject
from ci_training.receiver import KnownProject, LaunchedRun
from opsflow.adapters.prefect_runs import ui_url
from opsflow.errors import AdapterError

GITLAB_PROJECT_SLUG = "opsflow-gitlab-project"
_EVENT_NAMESPACE = uuid.UUID("6f1b3c1e-9a53-4d35-9f51-0c4a4a1d2e77")
#: Flow-run states of a run that may still post statuses or hold a Spark application.
LIVE_STATES = ("SCHEDULED", "PENDING", "RUNNING", "PAUSED")
#: Answers of a busy Prefect server that its own client retries, and our waits before each retry.
RETRY_STATUSES = (429, 502, 503)
RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0)


def basic_auth(auth_string: str | None) -> tuple[str, str] | None:
    """``user:password`` of PREFECT_API_AUTH_STRING as httpx's auth tuple (None without one)."""
    if not auth_string:
        return None
    user, _, password = auth_string.partition(":")
    return user, password


def event_id(key: str) -> uuid.UUID:
    """The Prefect event id of a delivery: the same for every redelivery of it."""
    return uuid.uuid5(_EVENT_NAMESPACE, key)


class PrefectAPI:
    """The shared async HTTP client of the receiver, with the API's errors turned into AdapterError."""

    def __init__(self, api_url: str, auth_string: str | None, *, ui_base: str | None = None) -> None:
        self.api_url = api_url.rstrip("/")
        self.ui_base = ui_base
        self.client = httpx.AsyncClient(base_url=self.api_url, auth=basic_auth(auth_string), timeout=10.0)

    async def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One API call; a busy server (429/502/503: SQLite locked, say) is asked again, as Prefect's client does.

        The retries stay well inside GitLab's 10 s timeout; what still fails is answered 503 and GitLab
        redelivers later with the same key.
        """
        for delay in (*RETRY_DELAYS_S, None):
            try:
                r = await self.client.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if delay is None:
                    raise AdapterError(f"cannot reach the Prefect API at {self.api_url}: {exc}") from exc
                await asyncio.sleep(delay)
                continue
            if r.status_code in RETRY_STATUSES and delay is not None:
                await asyncio.sleep(delay)
                continue
            break
        if r.status_code >= 400:
            raise AdapterError(f"the Prefect API answered {r.status_code} to {method} {path}: {r.text[:300]}")
        return r

    async def aclose(self) -> None:
        await self.client.aclose()


class PrefectDirectory:
    """The receiver's projects: every ``GitLabProject`` Block document, refreshed after ``ttl_s``."""

    def __init__(self, api: PrefectAPI, ttl_s: float = 2.0) -> None:
        self.api = api
        self.ttl_s = ttl_s
        self._loaded_at = -1e9
        self._projects: list[KnownProject] = []
        self._lock = asyncio.Lock()

    async def refresh(self) -> list[KnownProject]:
        r = await self.api.call(
            "POST",
            "/block_documents/filter",
            json={"block_types": {"slug": {"any_": [GITLAB_PROJECT_SLUG]}}, "include_secrets": True, "limit": 200},
        )
        found = []
        for doc in r.json():
            data = {k: v for k, v in (doc.get("data") or {}).items() if k in CiProject.model_fields}
            try:
                found.append(KnownProject(block=doc["name"], settings=CiProject.model_validate(data)))
            except ValueError:
                continue  # a Block saved by another version of the form: not servable, not fatal
        return found

    async def find(self, project_id: int | None, path: str | None) -> KnownProject | None:
        async with self._lock:
            if time.monotonic() - self._loaded_at > self.ttl_s:
                self._projects = await self.refresh()
                self._loaded_at = time.monotonic()
        for known in self._projects:
            if known.settings.project in (path, str(project_id)):
                return known
        return None


class PrefectLauncher:
    """Creates the run of a delivery once (idempotency key) and emits the push event."""

    def __init__(self, api: PrefectAPI) -> None:
        self.api = api
        self._deployments: dict[str, str] = {}

    async def deployment_id(self, name: str) -> str:
        if name not in self._deployments:
            r = await self.api.call("GET", f"/deployments/name/{name}")
            self._deployments[name] = str(r.json()["id"])
        return self._deployments[name]

    async def launch(
        self, deployment: str, parameters: dict[str, Any], key: str, tags: list[str], name: str
    ) -> LaunchedRun:
        dep = await self.deployment_id(deployment)
        r = await self.api.call(
            "POST",
            f"/deployments/{dep}/create_flow_run",
            json={"parameters": parameters, "idempotency_key": key, "tags": tags, "name": name},
        )
        run = r.json()
        run_id = str(run["id"])
        return LaunchedRun(flow_run_id=run_id, created=r.status_code == 201, url=ui_url(self.api.api_url, run_id))

    async def emit(self, event: str, resource: dict[str, str], payload: dict[str, Any], key: str) -> None:
        body = [
            {
                "id": str(event_id(key)),
                "occurred": datetime.now(UTC).isoformat(),
                "event": event,
                "resource": resource,
                "related": [],
                "payload": payload,
            }
        ]
        await self.api.call("POST", "/events", json=body)


# --- the flow's side (Prefect's own client) ----------------------------------------------------------------
def superseded_runs(tag: str, this_run: str) -> list[Any]:
    """The live runs tagged ``tag`` created before ``this_run`` (oldest first)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        me = client.read_flow_run(uuid.UUID(this_run))
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=[tag]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType[s] for s in LIVE_STATES])),
            ),
            limit=50,
        )
    older = [r for r in runs if r.id != me.id and r.created is not None and me.created and r.created < me.created]
    return sorted(older, key=lambda r: r.created)


def cancel_flow_run(flow_run_id: uuid.UUID, message: str, wait_s: float = 60.0) -> str:
    """Ask for the cancellation of a run (its worker kills its processes) and wait for it to end.

    A run that was never picked up goes straight to Cancelled; the state name it ends in is returned.
    """
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled, Cancelling

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
        if run.state is not None and run.state.is_final():
            return str(run.state.name)
        # A run no worker has taken yet has no process to stop: Cancelled at once. Any other goes through
        # Cancelling, which its worker answers by killing the run's process group (spark-submit included).
        waiting = run.state is None or run.state.is_scheduled()
        target: Any = Cancelled(message=message) if waiting else Cancelling(message=message)
        client.set_flow_run_state(flow_run_id, target, force=True)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            state = client.read_flow_run(flow_run_id).state
            if state is not None and state.is_final():
                return str(state.name)
            time.sleep(1.0)
        # The worker did not confirm (it is gone?): the run is recorded Cancelled so nothing waits on it.
        client.set_flow_run_state(flow_run_id, Cancelled(message=f"{message} (no worker confirmed)"), force=True)
        return "Cancelled"
