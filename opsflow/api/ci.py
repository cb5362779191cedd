"""CI-triggered training from a notebook or a script: ``opsflow.connect().ci``.

Every ``opsflow ci`` command is one call of :class:`CiAPI`:

- :meth:`~CiAPI.projects`: the ``GitLabProject`` Blocks of the site (secrets never shown);
- :meth:`~CiAPI.runs`: the recent ``ci-training`` runs (project, ref, commit, state, link);
- :meth:`~CiAPI.statuses`: the commit statuses GitLab has for a commit of a project (python-gitlab);
- :meth:`~CiAPI.webhook_url`: what to paste into GitLab's webhook settings (the local stack's receiver).

Example:
    >>> import opsflow, tempfile
    >>> opsflow.connect(tempfile.mkdtemp()).ci.webhook_url().endswith("/hooks/gitlab")
    True
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from opsflow.errors import AdapterError
from opsflow.tables import Records

if TYPE_CHECKING:
    from opsflow.api import Site

GITLAB_PROJECT_SLUG = "opsflow-gitlab-project"


class CiProjectRow(BaseModel):
    block: str
    project: str
    gitlab_url: str
    branches: list[str]
    mode: str = Field(description="cpu or gpu (CPU_ONLY)")
    test_command: list[str]
    entry_point: str


class CiRunRow(BaseModel):
    run: str
    project: str
    ref: str
    commit: str
    state: str
    started: str
    url: str


class CommitStatusRow(BaseModel):
    name: str
    status: str
    description: str
    target_url: str


class CiAPI:
    """CI training of one site (see the module docstring)."""

    def __init__(self, site: Site) -> None:
        self.site = site

    def webhook_url(self) -> str:
        """The receiver's URL on the local stack (at a site: wherever ``python -m ci_training.service`` runs)."""
        from opsflow.stack.config import StackConfig

        return StackConfig.load(self.site.home).webhook_url

    def projects(self) -> Records[CiProjectRow]:
        """The ``GitLabProject`` Blocks, read over the REST API (secrets stay obfuscated)."""
        import httpx

        url = f"{self.site.api_url}/block_documents/filter"
        body = {"block_types": {"slug": {"any_": [GITLAB_PROJECT_SLUG]}}, "include_secrets": False}
        try:
            r = httpx.post(url, json=body, auth=self.site._http_auth(), timeout=10.0)
            r.raise_for_status()
        except httpx.HTTPError as exc:
            raise AdapterError(f"cannot read the GitLabProject Blocks at {self.site.api_url}: {exc}") from exc
        rows = []
        for doc in r.json():
            d: dict[str, Any] = doc.get("data") or {}
            rows.append(
                CiProjectRow(
                    block=doc["name"],
                    project=str(d.get("project", "")),
                    gitlab_url=str(d.get("gitlab_url", "")),
                    branches=list(d.get("branches") or ["*"]),
                    mode="cpu" if d.get("cpu_only", True) else "gpu",
                    test_command=list(d.get("test_command") or []),
                    entry_point=str(d.get("entry_point", "")),
                )
            )
        return Records(rows)

    def runs(self, project: str | None = None, limit: int = 20) -> Records[CiRunRow]:
        """The newest ``ci-training`` runs (of the Block ``project`` only, when given)."""
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowFilter, FlowFilterName
        from prefect.client.schemas.sorting import FlowRunSort

        from ci_training.prefect_api import ui_url

        with self.site.prefect(), get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["ci-training"])),
                sort=FlowRunSort.START_TIME_DESC,
                limit=200,
            )
        rows = [
            CiRunRow(
                run=r.name,
                project=str(r.parameters.get("project", "")),
                ref=str(r.parameters.get("ref", "")),
                commit=str(r.parameters.get("checkout_sha", ""))[:8],
                state=r.state.name if r.state else "",
                started=r.start_time.isoformat(timespec="seconds") if r.start_time else "",
                url=ui_url(self.site.api_url, str(r.id)),
            )
            for r in runs
            if project is None or r.parameters.get("project") == project
        ]
        return Records(rows[:limit])

    def statuses(self, project: str, sha: str) -> Records[CommitStatusRow]:
        """The commit statuses of ``sha`` on the GitLab of the Block ``project`` (the latest per name)."""
        from blocks import GitLabProject

        block = self.site.load_block(GitLabProject, project)
        return Records(
            [
                CommitStatusRow(
                    name=str(s.get("name", "")),
                    status=str(s.get("status", "")),
                    description=str(s.get("description") or ""),
                    target_url=str(s.get("target_url") or ""),
                )
                for s in block.get_client().statuses(sha)
            ]
        )
