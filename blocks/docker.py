"""The Docker-API engine container work runs on (Docker, or podman's compatible service).

Example:
    >>> DockerEngine(base_url="tcp://127.0.0.1:2375").get_client().base_url
    'tcp://127.0.0.1:2375'
"""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field

from blocks._docs import readme_section
from opsflow.adapters.docker_engine import DockerEngineClient


class DockerEngine(Block):
    """A Docker-API endpoint and the small image used to check it.

    Examples:
        Load a saved engine and run a container of the check image:
        ```python
        from blocks import DockerEngine

        docker_engine = DockerEngine.load("BLOCK_NAME")
        result = docker_engine.get_client().run(docker_engine.check_image, ["echo", "hello"])
        ```
    """

    _block_type_name = "Docker Engine"
    _block_type_slug = "opsflow-docker-engine"
    _description = "A Docker-API engine (Docker or `podman system service`)."
    _documentation_url = readme_section("Pointing the same code at a site")

    base_url: str = Field(
        default="unix:///var/run/docker.sock",
        description="Docker API URL (unix:///path.sock or tcp://host:port).",
        examples=["unix:///var/run/docker.sock", "tcp://127.0.0.1:2375"],
    )
    check_image: str = Field(
        default="localhost/opsflow-busybox:latest", description="A small local image used by the stack check."
    )

    def get_client(self) -> DockerEngineClient:
        """The adapter talking to this engine (its ``client()`` is the docker SDK's client)."""
        return DockerEngineClient(base_url=self.base_url)
