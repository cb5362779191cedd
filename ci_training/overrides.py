"""A repository's ``opsflow-ci.yaml``: the few project settings a commit may change (pure).

Rules (thesis §8.1, §8.2, §8.2.5: the CI pipeline had to be written "separately for each project … copying and
pasting boilerplate"; notes ``ci-training-anchors.md`` §6 "Config"):

- O1 the project's Block holds the whole configuration; the file is optional and, when present, may only replace
  ``test_command``, ``entry_point`` and ``arguments`` (no secrets, no cluster, no resources). An empty file
  (blank, comments only, ``---``) changes nothing.
- O2 every mistake is reported as ``opsflow-ci.yaml:<line>: <key>: <message>`` (ARCHITECTURE.md, "Errors and
  state"): unknown keys, wrong types, an entry point outside the checkout or not a ``.py`` file.

Example:
    >>> from ci_training.models import CiProject
    >>> project = CiProject(project="ml/loans", api_token="t", webhook_secret="s")
    >>> o = load_overrides("entry_point: jobs/train.py\\narguments: [--depth, '6']\\n")
    >>> p = apply_overrides(project, o)
    >>> p.entry_point, p.arguments, p.test_command
    ('jobs/train.py', ['--depth', '6'], ['pytest', '-q'])
    >>> load_overrides("test_command: [pytest]\\nexecutor_memory: 64g\\n")
    Traceback (most recent call last):
    ...
    opsflow.errors.InputError: opsflow-ci.yaml:2: executor_memory: unknown key (the file may set ...)
"""

from __future__ import annotations

import yaml
from pydantic import ValidationError

from ci_training.models import OVERRIDES_FILE, CiProject, RepoOverrides
from ci_training.submit import entry_point_problem
from opsflow.errors import InputError
from opsflow.yaml_lines import line_of, load_mapping, validation_problems

_KEYS = ", ".join(sorted(RepoOverrides.model_fields))


def _is_empty(text: str) -> bool:
    """No YAML document, or a null one (blank, comments only, a lone ``---``)."""
    try:
        return yaml.safe_load(text) is None
    except yaml.YAMLError:
        return False  # load_mapping reports it, with its line


def load_overrides(text: str, source: str = OVERRIDES_FILE) -> RepoOverrides:
    """O1, O2: the overrides of a repository's ``opsflow-ci.yaml`` text; errors name ``source``, line and key.

    >>> load_overrides("# nothing to change\\n")
    RepoOverrides(test_command=None, entry_point=None, arguments=None)
    >>> load_overrides("test_command: [pytest, -x]\\nentry_point: ../train.py\\n")
    Traceback (most recent call last):
    ...
    opsflow.errors.InputError: opsflow-ci.yaml:2: entry_point: must stay inside the checkout ... (got '../train.py')
    >>> load_overrides("test_command: pytest -q\\n").test_command
    Traceback (most recent call last):
    ...
    opsflow.errors.InputError: opsflow-ci.yaml:1: test_command: Input should be a valid list (got 'pytest -q')
    """
    if _is_empty(text):
        return RepoOverrides()
    node, data = load_mapping(text, source, "empty", f"expected a mapping of the keys {_KEYS}")
    try:
        overrides = RepoOverrides.model_validate(data)
    except ValidationError as exc:
        raise InputError(source, validation_problems(node, exc, f"unknown key (the file may set {_KEYS})")) from None
    if overrides.entry_point is not None:
        problem = entry_point_problem(overrides.entry_point)
        if problem:
            line = line_of(node, ("entry_point",))
            raise InputError(source, [(line, "entry_point", f"{problem} (got {overrides.entry_point!r})")])
    return overrides


def apply_overrides(project: CiProject, overrides: RepoOverrides) -> CiProject:
    """O1: ``project`` with the fields the file sets replaced; the Block itself is not changed.

    >>> from ci_training.models import CiProject
    >>> project = CiProject(project="ml/loans", api_token="t", webhook_secret="s", arguments=["--fast"])
    >>> apply_overrides(project, RepoOverrides(test_command=["pytest", "tests/unit"])).arguments
    ['--fast']
    >>> apply_overrides(project, RepoOverrides(arguments=[])).arguments
    []
    """
    update = {name: value for name, value in overrides.model_dump().items() if value is not None}
    return project.model_copy(update=update)
