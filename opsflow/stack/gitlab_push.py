"""What GitLab does on a push, for the local stack: commit to the project's repository and deliver the hook.

The payload has the shape of GitLab's ``Push Hook`` (``lib/gitlab/data_builder/push.rb``; the newest 20 commits,
``checkout_sha`` null on a branch deletion) and the delivery GitLab's headers (``X-Gitlab-Event``,
``X-Gitlab-Token``, ``Idempotency-Key``, ``X-Gitlab-Event-UUID``, ``X-Gitlab-Webhook-UUID``; see
``WebHookService#build_headers``). Used by ``opsflow demo``, the end-to-end tests and the webhook benchmark.

Example:
    >>> p = push_payload("ml/loans", 1, "refs/heads/main", "0" * 40, "a" * 40, [("a" * 40, "Train")], "/r.git")
    >>> p["object_kind"], p["checkout_sha"] == "a" * 40, p["commits"][0]["title"]
    ('push', True, 'Train')
    >>> headers("s3cret", key="k1")["Idempotency-Key"], headers("s3cret", key="k1")["X-Gitlab-Event"]
    ('k1', 'Push Hook')
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from ci_training.models import ZERO_SHA

#: The author of the local stack's commits (git needs one; GitLab reports it in the payload).
AUTHOR = {
    "GIT_AUTHOR_NAME": "Ada Operator",
    "GIT_AUTHOR_EMAIL": "ada@example.invalid",
    "GIT_COMMITTER_NAME": "Ada Operator",
    "GIT_COMMITTER_EMAIL": "ada@example.invalid",
}


#: The web address the payloads name (GitLab's own pages; nothing here serves them).
GITLAB_WEB = "https://gitlab.invalid"


def push_payload(
    project: str,
    project_id: int,
    ref: str,
    before: str,
    after: str,
    commits: Sequence[tuple[str, str]],
    git_http_url: str,
    *,
    push_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``Push Hook`` body: ``commits`` are (sha, message), oldest first; ``after`` of zeros deletes the ref."""
    deleted = after == ZERO_SHA
    namespace, _, name = project.rpartition("/")
    web_url = f"{GITLAB_WEB}/{project}"
    ssh_url = f"git@{GITLAB_WEB.removeprefix('https://')}:{project}.git"
    author = {"name": AUTHOR["GIT_AUTHOR_NAME"], "email": AUTHOR["GIT_AUTHOR_EMAIL"]}
    return {
        "object_kind": "push",
        "event_name": "push",
        "before": before,
        "after": after,
        "ref": ref,
        "ref_protected": ref == "refs/heads/main",
        "checkout_sha": None if deleted else after,
        "message": None,
        "user_id": 4,
        "user_name": author["name"],
        "user_username": "ada",
        "user_email": "",
        "user_avatar": f"{GITLAB_WEB}/uploads/-/system/user/avatar/4/avatar.png",
        "project_id": project_id,
        "project": {
            "id": project_id,
            "name": name,
            "description": "",
            "web_url": web_url,
            "avatar_url": None,
            "git_ssh_url": ssh_url,
            "git_http_url": git_http_url,
            "namespace": namespace,
            "visibility_level": 0,
            "path_with_namespace": project,
            "default_branch": "main",
            "ci_config_path": None,
            "homepage": web_url,
            "url": ssh_url,
            "ssh_url": ssh_url,
            "http_url": git_http_url,
        },
        "commits": [
            {
                "id": sha,
                "message": message,
                "title": message.split("\n", 1)[0],
                "timestamp": "2026-12-01T12:00:00+00:00",
                "url": f"{web_url}/-/commit/{sha}",
                "author": author,
                "added": [],
                "modified": [],
                "removed": [],
            }
            for sha, message in ([] if deleted else commits[-20:])
        ],
        "total_commits_count": 0 if deleted else len(commits),
        "push_options": dict(push_options or {}),
        "repository": {
            "name": name,
            "url": ssh_url,
            "description": "",
            "homepage": web_url,
            "git_http_url": git_http_url,
            "git_ssh_url": ssh_url,
            "visibility_level": 0,
        },
    }


def headers(secret: str | None, *, event: str = "Push Hook", key: str | None = None) -> dict[str, str]:
    """GitLab's delivery headers; ``key`` is the Idempotency-Key (kept on a retry or a resend), else a new one."""
    out = {
        "Content-Type": "application/json",
        "User-Agent": "GitLab/18.6.0",
        "X-Gitlab-Event": event,
        "X-Gitlab-Instance": "https://gitlab.invalid",
        "X-Gitlab-Webhook-UUID": str(uuid.uuid4()),
        "X-Gitlab-Event-UUID": str(uuid.uuid4()),
        "Idempotency-Key": key or str(uuid.uuid4()),
    }
    if secret is not None:
        out["X-Gitlab-Token"] = secret
    return out


def deliver(url: str, payload: Mapping[str, Any], secret: str | None, **kwargs: Any) -> httpx.Response:
    """POST one delivery as GitLab does (10 s timeout, GitLab's default)."""
    return httpx.post(url, json=dict(payload), headers=headers(secret, **kwargs), timeout=10.0)


class LocalRepository:
    """A working clone of a bare repository, to commit and push like a developer."""

    def __init__(self, bare: Path, work: Path) -> None:
        self.bare, self.work = bare, work

    def git(self, *args: str) -> str:
        import os

        env = {**os.environ, **AUTHOR}
        done = subprocess.run(["git", *args], cwd=self.work, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)}: {done.stderr.strip()[-500:]}")
        return done.stdout.strip()

    def ensure(self) -> None:
        if not (self.work / ".git").exists():
            self.work.mkdir(parents=True, exist_ok=True)
            self.git("init", "-q", "-b", "main")
            self.git("remote", "add", "origin", str(self.bare))

    def head(self, branch: str = "main") -> str:
        out = subprocess.run(
            ["git", "rev-parse", "--verify", "-q", f"refs/remotes/origin/{branch}"],
            cwd=self.work, capture_output=True, text=True, check=False,
        )  # fmt: skip
        return out.stdout.strip() or ZERO_SHA

    def commit(self, message: str, files: Mapping[str, str] | None = None, tree: Path | None = None) -> str:
        """Copy ``tree`` in (replacing tracked files), write ``files``, commit everything; the new SHA."""
        self.ensure()
        if tree is not None:
            shutil.copytree(
                tree,
                self.work,
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "metrics.json", "model"),
            )
        for rel, text in (files or {}).items():
            path = self.work / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")

    def push(self, branch: str = "main") -> tuple[str, str]:
        """Push HEAD to ``branch``: (before, after) as GitLab reports them."""
        before = self.head(branch)
        self.git("push", "-q", "-f", "origin", f"HEAD:refs/heads/{branch}")
        self.git("fetch", "-q", "origin")
        return before, self.git("rev-parse", "HEAD")
