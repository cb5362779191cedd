"""GitLab ``Push Hook`` payloads for the unit tests: two commits (a parent and the head), built by the one
payload builder, :func:`opsflow.stack.gitlab_push.push_payload`.

>>> p = push_payload("1a2b3c4d" * 5)
>>> p["object_kind"], p["ref"], p["checkout_sha"] == p["after"], p["commits"][-1]["title"]
('push', 'refs/heads/main', True, 'Train')
>>> d = push_payload("0" * 40, deleted=True)
>>> d["after"], d["checkout_sha"], d["commits"]
('0000000000000000000000000000000000000000', None, [])
"""

from __future__ import annotations

from typing import Any

from ci_training.models import ZERO_SHA
from opsflow.stack import gitlab_push

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
    web_url = f"https://gitlab.example.com/{project}"
    commits = [(PARENT, "Prepare the loans data set\n\nSplit train/test 80/20."), (sha, message)]
    return gitlab_push.push_payload(
        project,
        project_id,
        ref,
        before,
        ZERO_SHA if deleted else sha,
        commits,
        git_http_url or f"{web_url}.git",
        push_options=push_options,
    )
