"""Where staged pipelines keep their definitions, projects, workspaces and the shared resource pool (a Block).

Example:
    >>> PipelineStore(root="/shared/pipelines").pipelines_dir
    PosixPath('/shared/pipelines/pipelines')
"""

from __future__ import annotations

from pathlib import Path

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from blocks._docs import readme_section
from stage_pipeline.file_links import workspace_links
from stage_pipeline.library import PipelineLibrary
from stage_pipeline.store import ProjectStore


class PipelineStore(Block):
    """A shared filesystem path seen at the same place by every worker that runs stages.

    Layout under ``root``: ``pipelines/<name>.yaml`` (the definitions, edited as files), ``projects/<name>/``
    (project.json, stage workspaces, logs) and ``resources/`` (the read-only resource pool, mounted into stages).

    Examples:
        Load a saved store and list its projects:
        ```python
        from blocks import PipelineStore

        pipeline_store = PipelineStore.load("BLOCK_NAME")
        projects = pipeline_store.projects().list()
        ```
    """

    _block_type_name = "Pipeline Store"
    _block_type_slug = "opsflow-pipeline-store"
    _description = "Shared root of the staged pipelines: definitions, projects and their workspaces, resources."
    _documentation_url = readme_section("Staged video-tracking pipelines (the Winslow system)")

    root: str = Field(
        description="Shared directory (same path on every worker of the cpu and gpu pools).",
        examples=["/scratch/pipelines"],
    )
    docker_block: str | None = Field(
        default="local",
        description="DockerEngine block for stages with an image (None: the DOCKER_HOST of the worker).",
    )
    min_free_mb: int = Field(
        default=1024,
        ge=0,
        description="A stage starts only with this much free space (MiB) under root; else the project pauses.",
    )
    answer_grace_s: float = Field(
        default=120.0,
        ge=0,
        description="How long a run asking for a decision stays in its process: an answer within it continues at "
        "once; a later one restarts the run from the top (Prefect's suspend).",
    )
    file_service_url: str | None = Field(
        default=None,
        description="The file service over this root (uploads, downloads; the links in approval forms).",
        examples=["https://files.example.org"],
    )
    file_service_auth: SecretStr | None = Field(
        default=None,
        description="The service's 'user:password' (HTTP Basic); links in forms are signed with a key derived from it.",
    )

    @property
    def pipelines_dir(self) -> Path:
        """The pipeline definitions (``<name>.yaml``)."""
        return Path(self.root) / "pipelines"

    @property
    def resources_dir(self) -> Path:
        """The read-only resource pool mounted into every stage."""
        return Path(self.root) / "resources"

    def file_links(self, workspace: Path, title: str) -> str:
        """Markdown links to a workspace's viewable files through the file service ("" without a service)."""
        if not self.file_service_url or self.file_service_auth is None:
            return ""
        auth = self.file_service_auth.get_secret_value()
        return workspace_links(self.file_service_url, auth, Path(self.root), workspace, title)

    def library(self) -> PipelineLibrary:
        """The pipeline definitions under :attr:`pipelines_dir`."""
        return PipelineLibrary(self.pipelines_dir)

    def projects(self) -> ProjectStore:
        """The projects and their workspaces under ``root``."""
        return ProjectStore(Path(self.root))
