"""Helpers of the staged-pipeline end-to-end tests: define a pipeline, create a project, wait for a state."""

from __future__ import annotations

import textwrap
from collections.abc import Callable

from blocks import PipelineStore
from stage_pipeline.models import Project, ProjectStatus
from stage_pipeline.store import ProjectStore
from tests.support import wait_until


def define(store: PipelineStore, name: str, stages: str) -> None:
    """Save a pipeline ``name`` whose ``stages:`` block is ``stages`` (YAML, indented by 2)."""
    text = f"name: {name}\ndescription: test pipeline\nstages:\n{textwrap.indent(textwrap.dedent(stages), '  ')}"
    store.library().save(text)


def new_project(store: PipelineStore, project: str, pipeline: str) -> ProjectStore:
    projects = store.projects()
    library = store.library()
    projects.create(project, library.get(pipeline), library.text(pipeline))
    return projects


def wait_for(projects: ProjectStore, name: str, ok: Callable[[Project], bool], timeout_s: float = 120) -> Project:
    found = wait_until(lambda: ok(p := projects.get(name)) and p, timeout_s=timeout_s, every_s=0.5)
    assert found, f"{name}: {projects.get(name).status} {projects.get(name).reason}"
    return projects.get(name)


def status_is(*statuses: ProjectStatus) -> Callable[[Project], bool]:
    return lambda p: p.status in statuses
