"""GitLab ``Push Hook`` payloads for tests, shaped after GitLab's ``lib/gitlab/data_builder/push.rb`` and the
example in ``doc/user/project/integrations/webhook_events.md`` (extra fields included: receivers must ignore them).

>>> p = push_payload("1a2b3c4d" * 5)
>>> p["object_kind"], p["ref"], p["checkout_sha"] == p["after"], p["commits"][-1]["title"]
('push', 'refs/heads/main', True, 'Train')
>>> d = push_payload("0" * 40, deleted=True)
>>> d["after"], d["checkout_sha"], d["commits"]
('0000000000000000000000000000000000000000', None, [])
"""

from __future__ import annotations

from typing import Any

ZERO = "0" * 40
#: A previous head of the branch (the ``before`` of an ordinary push).
BEFORE = "95790bf891e76fee5e1747ab589903a6a1f80f22"
#: The commit pushed before the head commit in the same push (GitLab lists commits oldest first).
PARENT = "b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327"


def push_payload(
    sha: str,
    ref: str = "refs/heads/main",
    project: str = "ml/loans",
    message: str = "Train",
    before: str = BEFORE,
    push_options: dict[str, Any] | None = None,
    git_http_url: str | None = None,
    *,
    project_id: int = 15,
    deleted: bool = False,
) -> dict[str, Any]:
    """A ``Push Hook`` body: ``sha`` is the new head (``after``/``checkout_sha``) and the last of two commits.

    ``deleted`` builds a branch deletion as GitLab sends it: ``after`` forty zeros, ``checkout_sha`` null and
    no commits. ``git_http_url`` defaults to ``https://gitlab.example.com/<project>.git``.
    """
    namespace, _, name = project.rpartition("/")
    web_url = f"https://gitlab.example.com/{project}"
    http_url = git_http_url or f"{web_url}.git"
    ssh_url = f"git@gitlab.example.com:{project}.git"
    author = {"name": "Ada Lovelace", "email": "ada@example.com"}
    commits: list[dict[str, Any]] = []
    if not deleted:
        for commit_id, text, stamp in (
            (PARENT, "Prepare the loans data set\n\nSplit train/test 80/20.", "2026-12-01T12:30:00+01:00"),
            (sha, message, "2026-12-01T12:34:56+01:00"),
        ):
            commits.append(
                {
                    "id": commit_id,
                    "message": text,
                    "title": text.split("\n", 1)[0],
                    "timestamp": stamp,
                    "url": f"{web_url}/-/commit/{commit_id}",
                    "author": author,
                    "added": [],
                    "modified": ["train.py"],
                    "removed": [],
                }
            )
    after = ZERO if deleted else sha
    return {
        "object_kind": "push",
        "event_name": "push",
        "before": before,
        "after": after,
        "ref": ref,
        "ref_protected": ref == "refs/heads/main",
        "checkout_sha": None if deleted else sha,
        "message": None,
        "user_id": 4,
        "user_name": "Ada Lovelace",
        "user_username": "ada",
        "user_email": "",
        "user_avatar": "https://gitlab.example.com/uploads/-/system/user/avatar/4/avatar.png",
        "project_id": project_id,
        "project": {
            "id": project_id,
            "name": name,
            "description": "Loan default model",
            "web_url": web_url,
            "avatar_url": None,
            "git_ssh_url": ssh_url,
            "git_http_url": http_url,
            "namespace": namespace,
            "visibility_level": 0,
            "path_with_namespace": project,
            "default_branch": "main",
            "ci_config_path": None,
            "homepage": web_url,
            "url": ssh_url,
            "ssh_url": ssh_url,
            "http_url": http_url,
        },
        "commits": commits,
        "total_commits_count": len(commits),
        "push_options": push_options if push_options is not None else {},
        "repository": {
            "name": name,
            "url": ssh_url,
            "description": "Loan default model",
            "homepage": web_url,
            "git_http_url": http_url,
            "git_ssh_url": ssh_url,
            "visibility_level": 0,
        },
    }
