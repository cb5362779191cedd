"""Where staged pipelines keep their definitions, projects, workspaces and the shared resource pool (a Block)."""

from __future__ import annotations

from pathlib import Path

from prefect.blocks.core import Block
from pydantic import Field

from stage_pipeline.library import PipelineLibrary
from stage_pipeline.store import ProjectStore


class PipelineStore(Block):
    """A shared filesystem path seen at the same place by every worker that runs stages.

    Layout under ``root``: ``pipelines/<name>.yaml`` (the definitions, edited as files), ``projects/<name>/``
    (project.json, stage workspaces, logs) and ``resources/`` (the read-only resource pool, mounted into stages).
    """

    _block_type_name = "Pipeline Store"
    _block_type_slug = "opsflow-pipeline-store"
    _description = "Shared root of the staged pipelines: definitions, projects and their workspaces, resources."

    root: str = Field(description="Shared directory (same path on every worker of the cpu and gpu pools)")
    docker_block: str | None = Field(
        default="local", description="DockerEngine block for stages with an image (None: the DOCKER_HOST of the worker)"
    )

    @property
    def pipelines_dir(self) -> Path:
        return Path(self.root) / "pipelines"

    @property
    def resources_dir(self) -> Path:
        return Path(self.root) / "resources"

    def library(self) -> PipelineLibrary:
        return PipelineLibrary(self.pipelines_dir)

    def projects(self) -> ProjectStore:
        return ProjectStore(Path(self.root))
