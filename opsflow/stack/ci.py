"""CI training on the local stack: the webhook receiver, and a stand-in for the GitLab API it reports to.

``webhook`` is the real receiver (:mod:`ci_training.service`), the same process a site runs. ``gitlab`` is a
stand-in: no GitLab server installs on these machines, so a small server implements the endpoints opsflow uses
(project lookup, commit statuses) and the example project ``ml/loans`` lives in a bare git repository under
``<home>/gitlab/repos``. Once both are up, the ``GitLabProject`` Block ``loans`` points at them (its secrets are
generated once and kept in ``<home>/gitlab/secrets.json``, mode 0600).

Example:
    >>> cfg = StackConfig(home=Path("/srv/h"))
    >>> local_repo(cfg)
    PosixPath('/srv/h/gitlab/repos/ml/loans.git')
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import httpx

from opsflow.files import atomic_write_text
from opsflow.stack.base import Component, StackError
from opsflow.stack.config import StackConfig
from opsflow.stack.process import ProcessSpec

PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: The example project of the local stack: path, id, and the Block that configures it.
EXAMPLE_PROJECT = "ml/loans"
EXAMPLE_PROJECT_ID = 1
EXAMPLE_BLOCK = "loans"


def local_repo(cfg: StackConfig) -> Path:
    """The bare repository of the example project (what GitLab would host)."""
    return cfg.home / "gitlab" / "repos" / f"{EXAMPLE_PROJECT}.git"


def local_secrets(cfg: StackConfig) -> dict[str, str]:
    """The stand-in's API token and the example project's webhook secret, generated on first use."""
    path = cfg.home / "gitlab" / "secrets.json"
    if path.exists():
        data: dict[str, str] = json.loads(path.read_text())
        return data
    data = {"api_token": f"glpat-{secrets.token_urlsafe(20)}", "webhook_secret": secrets.token_urlsafe(24)}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data))
    os.chmod(path, 0o600)
    return data


class GitLabStandInComponent(Component):
    """The stand-in GitLab REST API (commit statuses) with the example project registered."""

    name = "gitlab"
    start_timeout_s = 60.0

    def processes(self) -> list[ProcessSpec]:
        argv = [
            sys.executable, "-m", "opsflow.stack.gitlab_standin",
            "--host", "127.0.0.1", "--port", str(self.cfg.gitlab_port),
            "--state-dir", str(self.cfg.home / "gitlab" / "state"),
        ]  # fmt: skip
        return [ProcessSpec(key="gitlab-standin", argv=argv, cwd=PROJECT_ROOT, stop_grace_s=5.0)]

    def ports(self) -> list[int]:
        return [self.cfg.gitlab_port]

    def url(self) -> str:
        return self.cfg.gitlab_url

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.cfg.gitlab_url}/_standin/calls", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def after_start(self) -> None:
        repo = local_repo(self.cfg)
        if not (repo / "HEAD").exists():
            repo.mkdir(parents=True, exist_ok=True)
            subprocess.run(["git", "init", "--bare", "-q", "-b", "main", str(repo)], check=True, capture_output=True)
        project = {
            "id": EXAMPLE_PROJECT_ID,
            "path_with_namespace": EXAMPLE_PROJECT,
            "token": local_secrets(self.cfg)["api_token"],
            "git_http_url": str(repo),
            "web_url": f"{self.cfg.gitlab_url}/{EXAMPLE_PROJECT}",
            "default_branch": "main",
        }
        r = httpx.post(f"{self.cfg.gitlab_url}/_standin/projects", json=project, timeout=10.0)
        if r.status_code >= 400:
            raise StackError(f"gitlab: the stand-in refused the example project: {r.status_code} {r.text[:200]}")


class WebhookComponent(Component):
    """The GitLab webhook receiver; its ``after_start`` saves the example project's ``GitLabProject`` Block."""

    name = "webhook"
    requires = ("prefect", "gitlab")
    start_timeout_s = 60.0

    def processes(self) -> list[ProcessSpec]:
        argv = [
            sys.executable, "-m", "ci_training.service",
            "--host", "127.0.0.1", "--port", str(self.cfg.webhook_port),
            "--journal", str(self.cfg.home / "ci" / "deliveries.jsonl"),
        ]  # fmt: skip
        return [ProcessSpec(key="webhook-receiver", argv=argv, cwd=PROJECT_ROOT, stop_grace_s=5.0)]

    def ports(self) -> list[int]:
        return [self.cfg.webhook_port]

    def url(self) -> str:
        return self.cfg.webhook_url

    def healthy(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.cfg.webhook_port}/healthz", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def after_start(self) -> None:
        from opsflow.stack.blocks import example_gitlab_project
        from opsflow.stack.env import prefect_client_settings

        with prefect_client_settings(self.cfg):
            example_gitlab_project(self.cfg).save(EXAMPLE_BLOCK, overwrite=True)
