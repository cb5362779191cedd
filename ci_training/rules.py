"""Which GitLab deliveries start a CI training run, and what the run is called and given (pure, no I/O).

Rules (notes ``ci-training-anchors.md`` §1 and §6, acceptance checks 2, 3, 5, 12, 13):

- R1 dedup key: the ``Idempotency-Key`` header, kept by GitLab when it retries or resends a delivery (GitLab
  17.4+); else ``X-Gitlab-Event-UUID``, the recursion-detection UUID (a fallback only: it is not a per-delivery
  id). ``X-Gitlab-Webhook-UUID`` is new on every request, so it never deduplicates anything.
- R2 only a ``Push Hook`` starts work. Everything else is *ignored*, never refused: GitLab counts every non-2xx
  answer and disables a hook after 4 failed deliveries in a row (40: for good), so an ignored delivery is a 2xx
  with the reason. Only a ``Push Hook`` body that is not a push at all is bad input (the receiver's 400).
- R3 a branch deletion (``after`` forty zeros, ``checkout_sha`` null: "Checkout sha is nil when we remove branch
  or tag") has nothing to build; neither has a ref outside ``refs/heads/`` (tags come as ``Tag Push Hook``).
- R4 the branch must match one of the project's ``branches`` globs (``fnmatch.fnmatchcase``: ``main``,
  ``release/*``), the thesis's ``only: master`` made configurable (§6.5).
- R5 ``git push -o ci.skip`` (payload ``push_options: {ci: {skip: true}}``) and ``[skip ci]``/``[ci skip]`` in the
  head commit's message skip the push, as GitLab CI itself does.
- R6 a run's parameters name the project's Block, never a secret (check 13): the flow loads tokens itself.

Example:
    >>> from ci_training.models import CiProject
    >>> p = CiProject(project="ml/loans", api_token="t", webhook_secret="s", branches=["main"])
    >>> body = {"ref": "refs/heads/main", "before": "0" * 40, "after": "1a2b3c4d" * 5,
    ...     "checkout_sha": "1a2b3c4d" * 5, "project_id": 7, "project": {"path_with_namespace": "ml/loans"},
    ...     "commits": [{"id": "1a2b3c4d" * 5, "message": "Tune depth", "title": "Tune depth"}]}
    >>> verdict, push = triage("Push Hook", body, p)
    >>> verdict.reason, flow_run_name(push)
    ('accepted', 'ml-loans-main-1a2b3c4d')
    >>> triage("Tag Push Hook", body, p)[0].reason
    "ignored: event 'Tag Push Hook'"
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from ci_training.models import ZERO_SHA, CiProject, PushEvent, Verdict
from opsflow.errors import InputError

#: The one ``X-Gitlab-Event`` that starts work (R2).
PUSH_HOOK = "Push Hook"
#: Dedup headers, most trusted first (R1).
KEY_HEADERS = ("Idempotency-Key", "X-Gitlab-Event-UUID")
#: The commit-message markers GitLab CI honours (R5).
SKIP_MARKERS = re.compile(r"\[(?:skip ci|ci skip)\]", re.IGNORECASE)
#: Prefix of the flow-run tag of one project and ref (superseded-run lookup).
REF_TAG_PREFIX = "ci-ref"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_FALSE_WORDS = frozenset({"", "0", "false", "no", "off"})


def delivery_key(headers: Mapping[str, str]) -> str | None:
    """R1: the delivery's dedup key, ``Idempotency-Key`` else ``X-Gitlab-Event-UUID`` (any header case).

    >>> delivery_key({"idempotency-key": " 5f0c ", "X-Gitlab-Event-UUID": "e1"})
    '5f0c'
    >>> delivery_key({"Idempotency-Key": "  ", "X-GITLAB-EVENT-UUID": "e1"})
    'e1'
    >>> delivery_key({"X-Gitlab-Webhook-UUID": "new-every-time"}) is None
    True
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    for name in KEY_HEADERS:
        value = (lowered.get(name.lower()) or "").strip()
        if value:
            return value
    return None


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE_WORDS
    return bool(value)


def _ci_skip(push_options: Mapping[str, Any]) -> bool:
    ci = push_options.get("ci")
    if isinstance(ci, Mapping):
        return _truthy(ci.get("skip"))
    # ``git push -o ci.skip`` as a flat key, should a GitLab version ever send it so.
    return _truthy(push_options.get("ci.skip"))


def _parse(payload: Mapping[str, Any]) -> PushEvent:
    try:
        return PushEvent.model_validate(payload)
    except ValidationError as exc:
        problems = [
            (0, ".".join(str(p) for p in err["loc"]) or "(body)", str(err["msg"]).removeprefix("Value error, "))
            for err in exc.errors()
        ]
        raise InputError("payload", problems) from None


def ignored(why: str) -> Verdict:
    """A delivery answered 2xx without a run (R2).

    >>> ignored("branch deleted (main)")
    Verdict(accepted=False, reason='ignored: branch deleted (main)')
    """
    return Verdict(accepted=False, reason=f"ignored: {why}")


def triage(event: str | None, payload: Mapping[str, Any], project: CiProject) -> tuple[Verdict, PushEvent | None]:
    """R2-R5: whether a delivery (``X-Gitlab-Event`` and JSON body) starts a run, and the push if it was one.

    Raises :class:`~opsflow.errors.InputError` (source ``payload``, line 0, the field) when a ``Push Hook`` body
    is not a push; every other reason not to run is a :class:`Verdict` with ``accepted=False``.

    >>> from ci_training.models import CiProject
    >>> p = CiProject(project="ml/loans", api_token="t", webhook_secret="s", branches=["main", "release/*"])
    >>> body = {"ref": "refs/heads/feature/x", "after": "a" * 40, "checkout_sha": "a" * 40, "project_id": 7,
    ...     "project": {"path_with_namespace": "ml/loans"}}
    >>> triage("Push Hook", body, p)[0].reason
    "ignored: branch 'feature/x' matches none of main, release/*"
    >>> triage("Push Hook", {**body, "after": "0" * 40, "checkout_sha": None}, p)[0].reason
    'ignored: branch deleted (feature/x)'
    >>> triage("Push Hook", {"ref": "refs/heads/main"}, p)
    Traceback (most recent call last):
    ...
    opsflow.errors.InputError: payload: after: Field required
    payload: checkout_sha: Field required
    payload: project_id: Field required
    payload: project: Field required
    """
    if event != PUSH_HOOK:
        return ignored(f"event {event!r}" if event else "no X-Gitlab-Event header"), None
    push = _parse(payload)
    branch = push.branch
    if branch is None:
        return ignored(f"not a branch push ({push.ref})"), push
    if push.after == ZERO_SHA or push.checkout_sha is None:
        return ignored(f"branch deleted ({branch})"), push
    if not any(fnmatch.fnmatchcase(branch, pattern) for pattern in project.branches):
        return ignored(f"branch {branch!r} matches none of {', '.join(project.branches) or '(no branches)'}"), push
    if _ci_skip(push.push_options):
        return ignored("push option ci.skip"), push
    head = push.head_commit
    if head is not None:
        marker = SKIP_MARKERS.search(head.message or head.title)
        if marker:
            return ignored(f"{marker.group(0)} in the commit message"), push
    return Verdict(accepted=True, reason="accepted"), push


def ref_tag(project: str, ref: str) -> str:
    """The tag shared by every run of one project and ref: a newer push cancels the older runs that carry it.

    >>> ref_tag("ml/loans", "refs/heads/main")
    'ci-ref:ml/loans:refs/heads/main'
    """
    return f"{REF_TAG_PREFIX}:{project}:{ref}"


def run_parameters(project_block: str, push: PushEvent, key: str) -> dict[str, Any]:
    """R6: the ci-training flow's parameters. ``project_block`` is the project's Block name; no secrets.

    >>> push = PushEvent.model_validate({"ref": "refs/heads/main", "before": "b" * 40, "after": "a" * 40,
    ...     "checkout_sha": "a" * 40, "project_id": 7, "project": {"path_with_namespace": "ml/loans"},
    ...     "commits": [{"id": "a" * 40, "message": "Train\\n\\nlonger", "title": "Train"}]})
    >>> params = run_parameters("ml-loans", push, "idem-1")
    >>> sorted(params), params["commit_title"], params["delivery"]
    (['before', 'checkout_sha', 'commit_title', 'delivery', 'project', 'ref'], 'Train', 'idem-1')
    """
    head = push.head_commit
    title = ""
    if head is not None:
        title = head.title or (head.message.split("\n", 1)[0] if head.message else "")
    return {
        "project": project_block,
        "ref": push.ref,
        "checkout_sha": push.checkout_sha,
        "before": push.before,
        "commit_title": title,
        "delivery": key,
    }


def _safe(text: str) -> str:
    return _UNSAFE.sub("-", text).strip("-.") or "x"


def flow_run_name(push: PushEvent) -> str:
    """``<project>-<branch>-<sha8>`` in the characters ``A-Za-z0-9._-`` only.

    >>> push = PushEvent.model_validate({"ref": "refs/heads/release/2.0", "after": "1a2b3c4d" * 5,
    ...     "checkout_sha": "1a2b3c4d" * 5, "project_id": 7, "project": {"path_with_namespace": "ml/Loans v2"}})
    >>> flow_run_name(push)
    'ml-Loans-v2-release-2.0-1a2b3c4d'
    """
    ref = push.branch if push.branch is not None else push.ref.removeprefix("refs/")
    sha = (push.checkout_sha or push.after)[:8]
    return "-".join(_safe(part) for part in (push.project.path_with_namespace, ref, sha))
