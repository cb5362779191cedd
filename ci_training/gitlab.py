"""GitLab commit statuses through the real python-gitlab client: the one place CI training talks to GitLab.

The flow reports each stage (``opsflow/test``, ``opsflow/train``) as a commit status so the result shows next
to the commit in GitLab. Three GitLab habits shape this adapter:

- Posting a state a status already has (or one it cannot move to, e.g. back to ``pending``) answers
  ``400 Cannot transition status via :run from :running``. A level-triggered flow re-posts freely, so this is
  a no-op: :meth:`GitLabStatuses.post` returns False and never raises.
- A status post is infrastructure, not a verdict: connection errors and 5xx are retried (3 attempts, short
  backoff) before a :class:`GitLabError`; a refusal (401/403/404) fails at once with a message that names the
  project and the HTTP status but never the token.
- GitLab keeps at most 255 characters of a description (:func:`truncate_description`).

The project is looked up lazily: a status post is one HTTP request (``lazy=True`` objects carry only the
project's id or path), and :meth:`GitLabStatuses.project_info` fetches the project once per instance.

Example:
    >>> truncate_description("ok")
    'ok'
    >>> d = truncate_description("x" * 300)
    >>> len(d), d[-1]
    (255, '…')
    >>> str(GitLabError("GitLab refused the status of ml/loans@abc1234 (401: 401 Unauthorized)"))
    'GitLab refused the status of ml/loans@abc1234 (401: 401 Unauthorized)'
    >>> is_no_transition(400, "Cannot transition status via :run from :running")
    True
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import gitlab
import gitlab.exceptions
import requests
from gitlab.v4.objects import Project

from ci_training.models import CiProject, CommitState
from opsflow.errors import AdapterError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: GitLab's limit on a commit status description (``GenericCommitStatus`` validation).
DESCRIPTION_LIMIT = 255
#: Waits between attempts of a retried call (so 3 attempts in all).
DEFAULT_BACKOFF_S: tuple[float, ...] = (0.5, 1.0)


class GitLabError(AdapterError):
    """GitLab failed or refused: unreachable, 5xx after retries, a refused token, an unknown project."""


def truncate_description(text: str, limit: int = DESCRIPTION_LIMIT) -> str:
    """``text`` cut to GitLab's ``limit`` characters, its last one an ellipsis when something was cut.

    >>> truncate_description("abcdef", limit=4)
    'abc…'
    """
    return text if len(text) <= limit else text[: limit - 1] + "…"


def is_no_transition(code: int | None, message: str) -> bool:
    """Whether a GitLab answer is the 400 of a status that already has the state posted (or cannot move to it).

    >>> is_no_transition(400, "Cannot transition status via :enqueue from :pending")
    True
    >>> is_no_transition(400, "state is invalid")
    False
    """
    return code == 400 and "Cannot transition status" in message


def _retryable(exc: Exception) -> bool:
    """Connection trouble, timeouts and 5xx are worth another attempt; any other answer is GitLab's verdict."""
    if isinstance(exc, requests.RequestException):
        return True
    if isinstance(exc, gitlab.exceptions.GitlabError):
        code = exc.response_code
        return code is not None and 500 <= code < 600
    return False


class GitLabStatuses:
    """Commit statuses of one GitLab project (``project``: path with namespace or numeric id).

    ``backoff_s`` are the waits between attempts (its length + 1 attempts in all); ``sleep`` is for tests.
    """

    def __init__(
        self,
        url: str,
        token: str,
        project: str | int,
        timeout_s: float = 10,
        *,
        backoff_s: Sequence[float] = DEFAULT_BACKOFF_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url.rstrip("/")
        self.project = project
        self._token = token
        self._backoff_s = tuple(backoff_s)
        self._sleep = sleep
        # Retries are ours (bounded, logged); python-gitlab still honours 429 Retry-After on its own.
        self._gl = gitlab.Gitlab(self.url, private_token=token, timeout=timeout_s, retry_transient_errors=False)
        self._project: Project | None = None
        self._info: dict[str, Any] | None = None

    @classmethod
    def of(cls, project: CiProject) -> GitLabStatuses:
        """The adapter of a project's GitLab, with its API token."""
        return cls(project.gitlab_url, project.api_token.get_secret_value(), project.project)

    def __repr__(self) -> str:  # never the token
        return f"GitLabStatuses(url={self.url!r}, project={self.project!r})"

    @property
    def attempts(self) -> int:
        return len(self._backoff_s) + 1

    def _lazy_project(self) -> Project:
        """The project object without an API call (python-gitlab URL-encodes a path id)."""
        if self._project is None:
            self._project = self._gl.projects.get(self.project, lazy=True)
        return self._project

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """``fn`` with retries of transient failures; every failure becomes a :class:`GitLabError`."""
        last: Exception | None = None
        for attempt in range(self.attempts):
            try:
                return fn()
            except (gitlab.exceptions.GitlabError, requests.RequestException) as exc:
                if not _retryable(exc):
                    raise GitLabError(self._scrub(f"GitLab refused {what} at {self.url} ({exc})")) from None
                last = exc
                if attempt < len(self._backoff_s):
                    log.debug(
                        "GitLab %s failed (attempt %d of %d): %s",
                        what,
                        attempt + 1,
                        self.attempts,
                        self._scrub(str(exc)),
                    )
                    self._sleep(self._backoff_s[attempt])
        kind = type(last).__name__
        raise GitLabError(
            self._scrub(f"GitLab {what} at {self.url} failed after {self.attempts} attempts ({kind}: {last})")
        ) from None

    def project_info(self) -> dict[str, Any]:
        """``id``, ``path_with_namespace``, ``web_url`` and ``http_url_to_repo`` (clone URL), one API call per instance.

        Raises :class:`GitLabError` for an unknown project or a refused token.
        """
        if self._info is None:
            project = self._call(f"the project {self.project}", lambda: self._gl.projects.get(self.project))
            self._info = {
                "id": project.id,
                "path_with_namespace": project.path_with_namespace,
                "web_url": project.web_url,
                "http_url_to_repo": getattr(project, "http_url_to_repo", None),
            }
            self._project = project
        return dict(self._info)

    def post(
        self,
        sha: str,
        name: str,
        state: CommitState,
        *,
        ref: str | None = None,
        target_url: str | None = None,
        description: str | None = None,
    ) -> bool:
        """Set the status ``name`` of commit ``sha`` to ``state``; True when posted, False when it was a no-op.

        A state the status already has (GitLab's 400 "Cannot transition status") is the no-op: logged at debug,
        never raised.
        """
        data: dict[str, Any] = {"state": CommitState(state).value, "name": name}
        if ref is not None:
            data["ref"] = ref
        if target_url is not None:
            data["target_url"] = target_url
        if description is not None:
            data["description"] = truncate_description(description)
        commit = self._lazy_project().commits.get(sha, lazy=True)

        def create() -> bool:
            try:
                commit.statuses.create(data)
            except gitlab.exceptions.GitlabError as exc:
                if is_no_transition(exc.response_code, str(exc.error_message)):
                    log.debug(
                        "status %s of %s@%s not moved to %s: %s",
                        name,
                        self.project,
                        sha[:12],
                        data["state"],
                        exc.error_message,
                    )
                    return False
                raise
            return True

        return self._call(f"the status {name}={data['state']} of {self.project}@{sha[:12]}", create)

    def statuses(self, sha: str, *, all_records: bool = False) -> list[dict[str, Any]]:
        """The statuses of commit ``sha``: the latest per name (``all_records``: every one, retried included).

        Each is ``{"name", "status", "ref", "target_url", "description"}``.
        """
        commit = self._lazy_project().commits.get(sha, lazy=True)
        extra: dict[str, Any] = {"all": True} if all_records else {}
        records = self._call(
            f"the statuses of {self.project}@{sha[:12]}",
            lambda: commit.statuses.list(get_all=True, **extra),
        )
        return [
            {
                "name": r.attributes.get("name"),
                "status": r.attributes.get("status"),
                "ref": r.attributes.get("ref"),
                "target_url": r.attributes.get("target_url"),
                "description": r.attributes.get("description"),
            }
            for r in records
        ]
