"""A repository's opsflow-ci.yaml (ci_training.overrides): what it may change, and its errors with lines."""

from __future__ import annotations

import pytest

from ci_training.models import CiProject, RepoOverrides
from ci_training.overrides import apply_overrides, load_overrides
from opsflow.errors import InputError


def project() -> CiProject:
    return CiProject(
        project="ml/loans",
        api_token="glpat-secret",
        webhook_secret="hook-secret",
        test_command=["pytest", "-q"],
        entry_point="train.py",
        arguments=["--fast"],
        cpu_only=False,
    )


def errors(text: str) -> InputError:
    with pytest.raises(InputError) as info:
        load_overrides(text)
    return info.value


def test_all_three_keys() -> None:
    text = """# opsflow-ci.yaml
test_command: [pytest, -q, tests/unit]
entry_point: jobs/train_xgb.py
arguments:
  - --max-depth
  - "6"
"""
    o = load_overrides(text)
    assert o == RepoOverrides(
        test_command=["pytest", "-q", "tests/unit"], entry_point="jobs/train_xgb.py", arguments=["--max-depth", "6"]
    )


@pytest.mark.parametrize("text", ["", "\n\n", "# no overrides yet\n", "---\n"])
def test_an_empty_file_overrides_nothing(text: str) -> None:
    assert load_overrides(text) == RepoOverrides()


def test_an_unknown_key_is_an_error_with_its_line() -> None:
    e = errors("test_command: [pytest]\n\ncpu_only: true\n")
    assert e.source == "opsflow-ci.yaml"
    assert (e.line, e.field) == (3, "cpu_only")
    assert "unknown key" in e.problems[0][2] and "entry_point" in e.problems[0][2]


def test_secrets_and_resources_cannot_be_overridden() -> None:
    e = errors("api_token: x\nexecutor_memory: 64g\n")
    assert [(line, field) for line, field, _ in e.problems] == [(1, "api_token"), (2, "executor_memory")]


def test_a_wrong_type_names_the_key_and_value() -> None:
    e = errors("entry_point: train.py\ntest_command: pytest -q\n")
    assert (e.line, e.field) == (2, "test_command")
    assert "'pytest -q'" in e.problems[0][2]


def test_a_wrong_list_item_names_its_dotted_path_and_line() -> None:
    e = errors("arguments:\n  - --depth\n  - [6]\n")
    assert (e.line, e.field) == (3, "arguments.1")


def test_problems_are_sorted_by_line() -> None:
    e = errors("extra: 1\narguments: 5\nentry_point: [a]\n")
    assert [line for line, _, _ in e.problems] == [1, 2, 3]
    assert [f for _, f, _ in e.problems] == ["extra", "arguments", "entry_point"]


@pytest.mark.parametrize("entry", ["../secrets.py", "/etc/passwd.py", "train.sh"])
def test_a_bad_entry_point_is_reported_at_its_line(entry: str) -> None:
    e = errors(f"test_command: [pytest]\nentry_point: '{entry}'\n")
    assert (e.line, e.field) == (2, "entry_point")
    assert entry in e.problems[0][2]


def test_a_custom_source_name() -> None:
    with pytest.raises(InputError) as info:
        load_overrides("nope: 1\n", "repo@1a2b3c4d:opsflow-ci.yaml")
    assert str(info.value).startswith("repo@1a2b3c4d:opsflow-ci.yaml:1: nope: ")


def test_yaml_syntax_errors_have_lines() -> None:
    e = errors("test_command: [pytest\nentry_point: x.py\n")
    assert e.field == "(yaml)" and e.line >= 1


def test_a_list_document_is_an_error() -> None:
    e = errors("- pytest\n")
    assert (e.line, e.field) == (1, "(file)")


def test_a_key_given_twice_is_an_error() -> None:
    e = errors("entry_point: a.py\nentry_point: b.py\n")
    assert (e.line, e.field) == (2, "entry_point")


def test_apply_replaces_only_the_given_fields() -> None:
    base = project()
    changed = apply_overrides(base, RepoOverrides(entry_point="jobs/train.py"))
    assert changed.entry_point == "jobs/train.py"
    assert changed.test_command == ["pytest", "-q"] and changed.arguments == ["--fast"]
    assert changed.cpu_only is False and changed.api_token.get_secret_value() == "glpat-secret"
    assert base.entry_point == "train.py"


def test_an_empty_list_is_an_override() -> None:
    assert apply_overrides(project(), load_overrides("arguments: []\n")).arguments == []


def test_no_overrides_is_the_same_project() -> None:
    assert apply_overrides(project(), load_overrides("")) == project()
