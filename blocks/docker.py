"""The Docker-API engine container work runs on (Docker, or podman's compatible service)."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field

from opsflow.adapters.docker_engine import DockerEngine as DockerEngineAdapter


class DockerEngine(Block):
    """A Docker-API endpoint and the small image used to check it."""

    _block_type_name = "Docker Engine"
    _block_type_slug = "opsflow-docker-engine"
    _description = "A Docker-API engine (Docker or `podman system service`)."

    base_url: str = Field(
        default="unix:///var/run/docker.sock", description="Docker API URL (unix:///path.sock or tcp://host:port)"
    )
    check_image: str = Field(
        default="localhost/opsflow-busybox:latest", description="A small local image used by the stack check"
    )

    def engine(self) -> DockerEngineAdapter:
        """The adapter talking to this engine."""
        return DockerEngineAdapter(base_url=self.base_url)
