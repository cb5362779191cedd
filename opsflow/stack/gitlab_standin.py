"""A stand-in for the few GitLab REST endpoints CI training uses, so the real python-gitlab client has a server.

No installable server speaks GitLab's REST API (anchors §5), so the local stack and the tests run this small
Starlette app instead. It is a stand-in, not an emulator, and implements only:

- ``GET /api/v4/projects/:id``: ``:id`` numeric or the URL-encoded path (``ml%2Floans``).
- ``POST /api/v4/projects/:id/statuses/:sha`` (JSON, urlencoded form or query string: ``state``, ``name``
  (default ``default``; ``context`` too), ``ref``, ``target_url``, ``description``) with GitLab's state machine
  per ``(sha, name, ref)``: a ``pending``/``running`` status moves to ``running``/``success``/``failed``/
  ``canceled``, never to its own state nor back to ``pending`` (400 ``Cannot transition status via :<event> from
  :<state>``, the event being ``enqueue``/``run``/``success``/``drop``/``cancel``); a status in a final state is
  followed by a NEW record, as GitLab does when a job is retried. 201 with the status JSON (``id``, ``sha``,
  ``ref``, ``status``, ``name``, ``target_url``, ``description``, ``created_at``, ...). An unknown state is 400.
- ``GET /api/v4/projects/:id/repository/commits/:sha/statuses``: the latest record per name and ref, every record
  with ``?all=true``; ``?name=`` and ``?ref=`` filter.

Authentication is the ``PRIVATE-TOKEN`` header (python-gitlab's) or ``Authorization: Bearer``: an unknown token
is 401 ``{"message": "401 Unauthorized"}``; a token of another project sees 404 ``404 Project Not Found``, as a
GitLab user without access does. Each project has its own token. Commits are not checked: any sha is accepted.

For the stack and the tests, outside ``/api/v4`` and without a token: ``GET /_standin/calls`` lists every call
(method, path, response code, posted state and name, time; never a token), ``POST /_standin/projects`` registers
a project (JSON as in the projects file; persisted atomically), ``POST /_standin/fail`` makes the next
``times`` API calls answer ``status`` (default 503), to exercise a client's retries.

Projects come from a JSON file (a list of ``{id, path_with_namespace, token, git_http_url, web_url,
default_branch}``; default ``<state-dir>/projects.json``). Statuses and calls are kept in memory and appended to
``<state-dir>/standin.jsonl``, which a restarted stand-in reads back.

Run it: ``python -m opsflow.stack.gitlab_standin --host 127.0.0.1 --port N --state-dir DIR [--projects FILE]``.

Example:
    >>> next_state(None, "running")
    'running'
    >>> next_state("running", "running")
    'Cannot transition status via :run from :running'
    >>> next_state("pending", "pending"), next_state("running", "success")
    ('Cannot transition status via :enqueue from :pending', 'success')
"""

from __future__ import annotations

import argparse
import hmac
import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from opsflow.files import append_line, atomic_write_text

STATES = ("pending", "running", "success", "failed", "canceled")
ACTIVE = ("pending", "running")
#: The state machine's event for each state posted (GitLab ``CommitStatus`` / ``API::CommitStatuses``).
EVENTS = {"pending": "enqueue", "running": "run", "success": "success", "failed": "drop", "canceled": "cancel"}
JOURNAL = "standin.jsonl"
PROJECTS = "projects.json"


def next_state(current: str | None, posted: str) -> str:
    """The state a status moves to when ``posted`` arrives, or the 400 message when it cannot move.

    ``current`` is the state of the latest record of that (sha, name, ref), None when there is none or it is
    final (then a new record starts; any state can begin it).
    """
    if current is None:
        return posted
    if posted == "pending" or posted == current:
        return f"Cannot transition status via :{EVENTS[posted]} from :{current}"
    return posted


class StandinProject(BaseModel):
    """One project the stand-in knows, with the one token that may use it."""

    model_config = ConfigDict(extra="forbid")

    id: int
    path_with_namespace: str
    token: str
    git_http_url: str | None = None
    web_url: str | None = None
    default_branch: str = "main"

    def public(self, base_url: str) -> dict[str, Any]:
        """GitLab's project JSON (the fields clients read); never the token."""
        namespace, _, path = self.path_with_namespace.rpartition("/")
        return {
            "id": self.id,
            "name": path,
            "path": path,
            "path_with_namespace": self.path_with_namespace,
            "namespace": {"full_path": namespace},
            "default_branch": self.default_branch,
            "web_url": self.web_url or f"{base_url}/{self.path_with_namespace}",
            "http_url_to_repo": self.git_http_url,
        }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _error(code: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=code)


class StandinState:
    """Projects, statuses and calls; every change is appended to the journal before it is answered."""

    def __init__(self, state_dir: Path, projects_file: Path | None = None) -> None:
        self.state_dir = state_dir
        self.projects_file = projects_file or state_dir / PROJECTS
        self.journal = state_dir / JOURNAL
        self.lock = threading.Lock()
        self.projects: dict[int, StandinProject] = {}
        self.statuses: dict[int, dict[str, Any]] = {}
        self.calls: list[dict[str, Any]] = []
        self.faults: list[int] = []
        state_dir.mkdir(parents=True, exist_ok=True)
        if self.projects_file.exists():
            for raw in json.loads(self.projects_file.read_text() or "[]"):
                project = StandinProject.model_validate(raw)
                self.projects[project.id] = project
        if self.journal.exists():
            for line in self.journal.read_text().splitlines():
                if not line.strip():
                    continue
                entry = json.loads(line)
                if entry.get("kind") == "status":
                    self.statuses[entry["status"]["id"]] = entry["status"]
                elif entry.get("kind") == "call":
                    self.calls.append(entry["call"])

    def project(self, ident: str) -> StandinProject | None:
        if ident.isdigit():
            return self.projects.get(int(ident))
        return next((p for p in self.projects.values() if p.path_with_namespace == ident), None)

    def token_known(self, token: str) -> bool:
        return any(hmac.compare_digest(token.encode(), p.token.encode()) for p in self.projects.values())

    def register(self, project: StandinProject) -> None:
        taken = self.project(project.path_with_namespace)
        if taken is not None and taken.id != project.id:
            raise ValueError(f"{project.path_with_namespace} is project {taken.id} already")
        self.projects[project.id] = project
        data = [p.model_dump() for p in sorted(self.projects.values(), key=lambda p: p.id)]
        atomic_write_text(self.projects_file, json.dumps(data, indent=2) + "\n", mode=0o600)

    def save_status(self, status: dict[str, Any]) -> None:
        self.statuses[status["id"]] = status
        append_line(self.journal, json.dumps({"kind": "status", "status": status}))

    def record_call(self, call: dict[str, Any]) -> None:
        self.calls.append(call)
        append_line(self.journal, json.dumps({"kind": "call", "call": call}))

    def records(self, project_id: int, sha: str) -> list[dict[str, Any]]:
        """Every status of a commit, oldest first."""
        found = [s for s in self.statuses.values() if s["project_id"] == project_id and s["sha"] == sha]
        return sorted(found, key=lambda s: s["id"])

    def latest(self, project_id: int, sha: str, name: str, ref: str | None) -> dict[str, Any] | None:
        same = [s for s in self.records(project_id, sha) if s["name"] == name and s["ref"] == ref]
        return same[-1] if same else None


def _segments(request: Request) -> list[str]:
    """The path after ``/api/v4/projects/``, split on the RAW path so ``ml%2Floans`` stays one segment."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    path = raw.decode("latin-1").split("?", 1)[0]
    rest = path.split("/api/v4/projects/", 1)[1] if "/api/v4/projects/" in path else ""
    return [unquote(s) for s in rest.split("/") if s]


def _token(request: Request) -> str | None:
    token = request.headers.get("private-token")
    if token:
        return token
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return None


async def _body(request: Request) -> dict[str, Any]:
    """The parameters of a POST: query string, then a JSON or urlencoded form body (GitLab reads all three).

    Multipart forms are not supported (they would need python-multipart).
    """
    params: dict[str, Any] = dict(request.query_params)
    raw = await request.body()
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind == "application/json":
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            data = None
        if isinstance(data, dict):
            params.update(data)
    elif kind == "application/x-www-form-urlencoded":
        params.update(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    return params


def build_app(state_dir: Path, projects_file: Path | None = None) -> Starlette:
    """The stand-in as an ASGI app; its state lives under ``state_dir`` (projects: ``projects_file``)."""
    state = StandinState(state_dir, projects_file)

    def base_url(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    async def api(request: Request) -> JSONResponse:
        posted: dict[str, Any] = {}
        response: JSONResponse | None = None
        try:
            response = await _api(request, posted)
            return response
        finally:  # every answer is recorded, a crash of the stand-in too (as 500)
            raw = request.scope.get("raw_path") or request.url.path.encode()
            with state.lock:
                state.record_call(
                    {
                        "method": request.method,
                        "path": raw.decode("latin-1").split("?", 1)[0],
                        "code": response.status_code if response is not None else 500,
                        "state": posted.get("state"),
                        "name": posted.get("name"),
                        "time": _now(),
                        "ts": time.time(),
                    }
                )

    async def _api(request: Request, posted: dict[str, Any]) -> JSONResponse:
        if request.method == "POST":
            body = await _body(request)
            posted["state"] = body.get("state")
            posted["name"] = body.get("name") or body.get("context") or "default"
        else:
            body = {}
        with state.lock:
            if state.faults:
                return _error(state.faults.pop(0), "stand-in fault (POST /_standin/fail)")
            token = _token(request)
            if token is None or not state.token_known(token):
                return _error(401, "401 Unauthorized")
            seg = _segments(request)
            project = state.project(seg[0]) if seg else None
            if project is None or not hmac.compare_digest(token.encode(), project.token.encode()):
                return _error(404, "404 Project Not Found")
            rest = seg[1:]
            if request.method == "GET" and not rest:
                return JSONResponse(project.public(base_url(request)))
            if request.method == "POST" and len(rest) == 2 and rest[0] == "statuses":
                return post_status(project, rest[1], body)
            if (
                request.method == "GET"
                and len(rest) == 4
                and rest[:2] == ["repository", "commits"]
                and (rest[3] == "statuses")
            ):
                return list_statuses(project, rest[2], request)
            return _error(404, "404 Not Found")

    def post_status(project: StandinProject, sha: str, body: dict[str, Any]) -> JSONResponse:
        posted = body.get("state")
        if posted not in STATES:
            return _error(400, "state does not have a valid value")
        name = str(body.get("name") or body.get("context") or "default")
        ref = body.get("ref") or None
        latest = state.latest(project.id, sha, name, ref)
        current = latest["status"] if latest is not None and latest["status"] in ACTIVE else None
        moved = next_state(current, posted)
        if moved not in STATES:
            return _error(400, moved)
        now = _now()
        if current is None:
            status: dict[str, Any] = {
                "id": max(state.statuses, default=0) + 1,
                "project_id": project.id,
                "sha": sha,
                "ref": ref,
                "name": name,
                "created_at": now,
                "started_at": None,
                "finished_at": None,
                "allow_failure": False,
                "coverage": None,
            }
        else:
            assert latest is not None
            status = dict(latest)
        status["status"] = moved
        for key in ("target_url", "description"):
            if body.get(key) is not None:
                status[key] = body[key]
            status.setdefault(key, None)
        if moved == "running" and status["started_at"] is None:
            status["started_at"] = now
        if moved not in ACTIVE:
            status["finished_at"] = now
        state.save_status(status)
        return JSONResponse(_public_status(status), status_code=201)

    def list_statuses(project: StandinProject, sha: str, request: Request) -> JSONResponse:
        records = state.records(project.id, sha)
        if request.query_params.get("all", "").lower() not in ("true", "1", "yes"):
            latest: dict[tuple[str, str | None], dict[str, Any]] = {}
            for s in records:
                latest[(s["name"], s["ref"])] = s
            records = sorted(latest.values(), key=lambda s: s["id"])
        for key in ("name", "ref"):
            wanted = request.query_params.get(key)
            if wanted is not None:
                records = [s for s in records if s[key] == wanted]
        return JSONResponse([_public_status(s) for s in records])

    async def calls(request: Request) -> JSONResponse:
        with state.lock:
            return JSONResponse(list(state.calls))

    async def projects(request: Request) -> JSONResponse:
        try:
            project = StandinProject.model_validate(await request.json())
        except (ValueError, ValidationError) as exc:
            return _error(400, f"bad project: {exc}")
        with state.lock:
            try:
                state.register(project)
            except ValueError as exc:
                return _error(409, str(exc))
        return JSONResponse(project.public(base_url(request)), status_code=201)

    async def fail(request: Request) -> JSONResponse:
        try:
            data = await request.json()
            code, times = int(data.get("status", 503)), int(data.get("times", 1))
        except (ValueError, TypeError, AttributeError):
            return _error(400, 'expected {"status": 503, "times": 1}')
        with state.lock:
            state.faults = [code] * max(times, 0)
        return JSONResponse({"status": code, "times": times})

    app = Starlette(
        routes=[
            Route("/api/v4/projects/{rest:path}", api, methods=["GET", "POST"]),
            Route("/_standin/calls", calls, methods=["GET"]),
            Route("/_standin/projects", projects, methods=["POST"]),
            Route("/_standin/fail", fail, methods=["POST"]),
        ]
    )
    app.state.standin = state
    return app


def _public_status(status: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in status.items() if k != "project_id"}


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m opsflow.stack.gitlab_standin", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--projects", type=Path, default=None, help="projects JSON (default <state-dir>/projects.json)")
    args = parser.parse_args(argv)
    uvicorn.run(build_app(args.state_dir, args.projects), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
