"""Triage of GitLab deliveries (ci_training.rules): dedup key, every ignore reason, bad bodies, run naming."""

from __future__ import annotations

from typing import Any

import pytest

from ci_training.models import ZERO_SHA, CiProject, PushEvent
from ci_training.rules import delivery_key, flow_run_name, ref_tag, run_parameters, triage
from opsflow.errors import InputError
from tests.unit.ci_payloads import BEFORE, PARENT, push_payload

SHA = "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b"


def project(**fields: Any) -> CiProject:
    return CiProject(project="ml/loans", api_token="glpat-secret", webhook_secret="hook-secret", **fields)


def accepted(payload: dict[str, Any], proj: CiProject | None = None) -> PushEvent:
    verdict, push = triage("Push Hook", payload, proj or project())
    assert verdict.accepted, verdict.reason
    assert verdict.reason == "accepted"
    assert push is not None
    return push


# --- dedup key -------------------------------------------------------------------------------------------------


def test_idempotency_key_wins_over_event_uuid() -> None:
    headers = {"Idempotency-Key": "9b1d-idem", "X-Gitlab-Event-UUID": "event-uuid", "X-Gitlab-Webhook-UUID": "w"}
    assert delivery_key(headers) == "9b1d-idem"


@pytest.mark.parametrize("name", ["idempotency-key", "IDEMPOTENCY-KEY", "Idempotency-Key"])
def test_header_lookup_ignores_case(name: str) -> None:
    assert delivery_key({name: "k1"}) == "k1"


def test_event_uuid_is_the_fallback() -> None:
    assert delivery_key({"x-gitlab-event-uuid": " e-1 "}) == "e-1"
    assert delivery_key({"Idempotency-Key": "   ", "X-Gitlab-Event-UUID": "e-2"}) == "e-2"


def test_no_key_without_either_header() -> None:
    assert delivery_key({}) is None
    assert delivery_key({"Idempotency-Key": "", "X-Gitlab-Event-UUID": " \t"}) is None
    # New on every request: never a dedup key.
    assert delivery_key({"X-Gitlab-Webhook-UUID": "0190-new"}) is None


# --- triage ----------------------------------------------------------------------------------------------------


def test_a_push_to_a_matching_branch_is_accepted() -> None:
    push = accepted(push_payload(SHA))
    assert push.checkout_sha == SHA and push.branch == "main" and push.before == BEFORE
    assert push.project.path_with_namespace == "ml/loans"
    assert push.head_commit is not None and push.head_commit.id == SHA


@pytest.mark.parametrize("event", ["Tag Push Hook", "Merge Request Hook", "Pipeline Hook", "Note Hook"])
def test_other_events_are_ignored_by_name(event: str) -> None:
    verdict, push = triage(event, push_payload(SHA), project())
    assert not verdict.accepted and push is None
    assert verdict.reason == f"ignored: event {event!r}"


def test_other_events_are_ignored_even_with_a_body_that_is_no_push() -> None:
    verdict, _ = triage("Issue Hook", {"object_kind": "issue"}, project())
    assert not verdict.accepted and verdict.reason.startswith("ignored:")


def test_a_missing_event_header_is_ignored() -> None:
    verdict, push = triage(None, push_payload(SHA), project())
    assert not verdict.accepted and push is None and verdict.reason.startswith("ignored:")


def test_branch_deletion_is_ignored() -> None:
    payload = push_payload(SHA, deleted=True)
    assert payload["after"] == ZERO_SHA and payload["checkout_sha"] is None
    verdict, push = triage("Push Hook", payload, project())
    assert not verdict.accepted and push is not None
    assert verdict.reason == "ignored: branch deleted (main)"


def test_zero_after_alone_is_a_deletion() -> None:
    payload = {**push_payload(SHA), "after": ZERO_SHA}
    verdict, _ = triage("Push Hook", payload, project())
    assert verdict.reason == "ignored: branch deleted (main)"


def test_a_ref_that_is_no_branch_is_ignored() -> None:
    verdict, _ = triage("Push Hook", push_payload(SHA, ref="refs/tags/v1.0"), project())
    assert not verdict.accepted and verdict.reason == "ignored: not a branch push (refs/tags/v1.0)"


def test_branch_filters_are_globs() -> None:
    proj = project(branches=["main", "release/*"])
    accepted(push_payload(SHA, ref="refs/heads/release/2.0"), proj)
    verdict, _ = triage("Push Hook", push_payload(SHA, ref="refs/heads/feature/x"), proj)
    assert not verdict.accepted
    assert verdict.reason == "ignored: branch 'feature/x' matches none of main, release/*"


def test_branch_filters_are_case_sensitive() -> None:
    verdict, _ = triage("Push Hook", push_payload(SHA, ref="refs/heads/Main"), project(branches=["main"]))
    assert not verdict.accepted and "'Main'" in verdict.reason


def test_the_default_filter_builds_every_branch() -> None:
    accepted(push_payload(SHA, ref="refs/heads/feature/deep/x"))


@pytest.mark.parametrize("skip", [True, "true", 1])
def test_push_option_ci_skip_is_ignored(skip: object) -> None:
    verdict, _ = triage("Push Hook", push_payload(SHA, push_options={"ci": {"skip": skip}}), project())
    assert not verdict.accepted and verdict.reason == "ignored: push option ci.skip"


@pytest.mark.parametrize("options", [{}, {"ci": {"skip": False}}, {"ci": {"variable": ["X=1"]}}])
def test_other_push_options_do_not_skip(options: dict[str, Any]) -> None:
    accepted(push_payload(SHA, push_options=options))


@pytest.mark.parametrize(
    "message", ["Tune depth [skip ci]", "[CI SKIP] docs only", "Docs\n\nNothing to train. [Skip CI]"]
)
def test_skip_markers_in_the_head_commit_are_ignored(message: str) -> None:
    verdict, _ = triage("Push Hook", push_payload(SHA, message=message), project())
    assert not verdict.accepted
    assert verdict.reason.startswith("ignored: [") and verdict.reason.endswith("] in the commit message")


def test_a_skip_marker_in_an_older_commit_of_the_push_does_not_skip() -> None:
    payload = push_payload(SHA, message="Tune depth")
    assert payload["commits"][0]["id"] == PARENT
    payload["commits"][0]["message"] = "WIP [skip ci]"
    accepted(payload)


def test_skip_ci_without_brackets_does_not_skip() -> None:
    accepted(push_payload(SHA, message="explain why we skip ci sometimes"))


def test_every_ignore_reason_starts_with_ignored() -> None:
    proj = project(branches=["main"])
    cases = [
        ("Tag Push Hook", push_payload(SHA)),
        ("Push Hook", push_payload(SHA, deleted=True)),
        ("Push Hook", push_payload(SHA, ref="refs/tags/v1")),
        ("Push Hook", push_payload(SHA, ref="refs/heads/dev")),
        ("Push Hook", push_payload(SHA, push_options={"ci": {"skip": True}})),
        ("Push Hook", push_payload(SHA, message="x [skip ci]")),
    ]
    reasons = [triage(event, payload, proj)[0].reason for event, payload in cases]
    assert all(r.startswith("ignored: ") for r in reasons)
    assert len(set(reasons)) == len(reasons)


def test_a_push_body_that_is_no_push_is_input_error() -> None:
    payload = push_payload(SHA)
    del payload["project_id"]
    with pytest.raises(InputError) as info:
        triage("Push Hook", payload, project())
    assert info.value.source == "payload"
    assert info.value.problems[0][0] == 0 and info.value.field == "project_id"


def test_input_error_names_nested_fields() -> None:
    payload = push_payload(SHA)
    payload["project"] = {"id": 15}
    payload["commits"][1]["id"] = None
    with pytest.raises(InputError) as info:
        triage("Push Hook", payload, project())
    fields = [field for _, field, _ in info.value.problems]
    assert fields == ["project.path_with_namespace", "commits.1.id"]
    assert all(line == 0 for line, _, _ in info.value.problems)


def test_an_empty_body_is_input_error() -> None:
    with pytest.raises(InputError) as info:
        triage("Push Hook", {}, project())
    assert {"ref", "after", "project_id", "project"} <= {f for _, f, _ in info.value.problems}


# --- naming and parameters -------------------------------------------------------------------------------------


def test_ref_tag_groups_one_project_and_ref() -> None:
    assert ref_tag("ml/loans", "refs/heads/main") == "ci-ref:ml/loans:refs/heads/main"
    assert ref_tag("ml/loans", "refs/heads/dev") != ref_tag("ml/loans", "refs/heads/main")


def test_run_parameters_carry_the_push_and_no_secret() -> None:
    push = accepted(push_payload(SHA, message="Tune depth\n\nfrom 4 to 6"))
    params = run_parameters("ml-loans", push, "idem-7")
    assert params == {
        "project": "ml-loans",
        "ref": "refs/heads/main",
        "checkout_sha": SHA,
        "before": BEFORE,
        "commit_title": "Tune depth",
        "delivery": "idem-7",
    }
    text = repr(params)
    assert "glpat-secret" not in text and "hook-secret" not in text


def test_commit_title_is_empty_without_commits() -> None:
    payload = push_payload(SHA)
    payload["commits"] = []
    push = accepted(payload)
    assert run_parameters("ml-loans", push, "k")["commit_title"] == ""


def test_commit_title_falls_back_to_the_message_first_line() -> None:
    payload = push_payload(SHA, message="Retrain\n\nbody")
    del payload["commits"][1]["title"]
    assert run_parameters("b", accepted(payload), "k")["commit_title"] == "Retrain"


def test_flow_run_name() -> None:
    assert flow_run_name(accepted(push_payload(SHA))) == "ml-loans-main-1a2b3c4d"


def test_flow_run_name_uses_safe_characters_only() -> None:
    push = accepted(push_payload(SHA, ref="refs/heads/feat/ü näme", project="Data Team/loans+v2"))
    name = flow_run_name(push)
    assert name == "Data-Team-loans-v2-feat-n-me-1a2b3c4d"
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in name)
