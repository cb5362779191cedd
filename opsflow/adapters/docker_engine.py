"""Docker Engine API adapter (the docker SDK): run a container to completion and collect its output.

Works against Docker itself and against podman's Docker-compatible service (the local stack's ``DOCKER_HOST``).
:meth:`DockerEngineClient.run` never pulls: images must already be present (the local stack has no registry), and a
missing one is a :class:`DockerEngineError` at once.

Example:
    >>> bind_specs({"/srv/data": "/data", "/etc/hosts": "/etc/hosts:ro"})
    ['/srv/data:/data', '/etc/hosts:/etc/hosts:ro']
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import docker
import requests
from docker.errors import DockerException, ImageNotFound, NotFound
from pydantic import BaseModel, Field

from opsflow.errors import AdapterError

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"


class DockerEngineError(AdapterError):
    """The engine could not be reached, the image is missing, or the container did not finish in time."""


class ContainerResult(BaseModel):
    """How a container ended."""

    exit_code: int = Field(description="The main process's exit status (128 + signal when killed)")
    logs: str = Field(description="stdout and stderr, interleaved as written")


def bind_specs(volumes: Mapping[str | Path, str]) -> list[str]:
    """Docker ``Binds`` from ``{host path: container path}``; a container path may end in ``:ro``.

    >>> bind_specs({Path("/a"): "/b:ro"})
    ['/a:/b:ro']
    """
    specs = []
    for host, target in volumes.items():
        if not Path(host).is_absolute() or not target.startswith("/"):
            raise ValueError(f"bind mount {host} -> {target}: both paths must be absolute")
        specs.append(f"{host}:{target}")
    return specs


class DockerEngineClient:
    """A Docker Engine API endpoint, e.g. ``DockerEngineClient("unix:///home/x/.state/podman/podman.sock")``.

    The ``DockerEngine`` Block (``blocks.docker``) holds the URL; its ``get_client()`` returns one of these.

    Example:
        >>> DockerEngineClient("tcp://127.0.0.1:2375").base_url
        'tcp://127.0.0.1:2375'
    """

    def __init__(self, base_url: str, api_timeout_s: float = 60.0) -> None:
        self.base_url = base_url
        self.api_timeout_s = api_timeout_s

    @classmethod
    def from_env(cls) -> DockerEngineClient:
        """The engine ``DOCKER_HOST`` names (the local stack exports it), else Docker's default socket."""
        return cls(os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST)

    def client(self) -> docker.DockerClient:
        """A docker SDK client of this engine; ``close()`` it when done."""
        try:
            return docker.DockerClient(base_url=self.base_url, timeout=int(self.api_timeout_s))
        except DockerException as exc:
            raise DockerEngineError(f"cannot connect to the Docker API at {self.base_url}: {exc}") from exc

    def ping(self) -> bool:
        try:
            with contextlib.closing(self.client()) as client:
                return bool(client.ping())
        except (DockerException, DockerEngineError, requests.RequestException):
            return False

    def image_exists(self, image: str) -> bool:
        with contextlib.closing(self.client()) as client:
            try:
                client.images.get(image)
            except ImageNotFound:
                return False
            except (DockerException, requests.RequestException) as exc:
                raise DockerEngineError(f"{self.base_url}: cannot inspect image {image}: {exc}") from exc
            return True

    def run(
        self,
        image: str,
        command: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        volumes: Mapping[str | Path, str] | None = None,
        workdir: str | None = None,
        network_mode: str = "host",
        timeout: float = 600.0,
    ) -> ContainerResult:
        """Run ``command`` in a new container of ``image``, wait up to ``timeout`` s, return its exit code and logs.

        The container is always removed. ``network_mode="host"`` lets it reach the stack's 127.0.0.1 services
        and needs no bridge or firewall set-up; pass ``"bridge"`` or ``"none"`` for isolation.
        """
        with contextlib.closing(self.client()) as client:
            try:
                container = client.containers.create(
                    image,
                    list(command),
                    environment=dict(env or {}),
                    volumes=bind_specs(volumes or {}),
                    working_dir=workdir,
                    network_mode=network_mode,
                )
            except ImageNotFound as exc:
                raise DockerEngineError(f"image {image} is not on {self.base_url} (nothing is pulled)") from exc
            except (DockerException, requests.RequestException) as exc:
                raise DockerEngineError(f"{self.base_url}: cannot create a container of {image}: {exc}") from exc
            try:
                container.start()
                try:
                    status = container.wait(timeout=timeout)
                except requests.RequestException as exc:
                    # The SDK's wait timeout surfaces as a read timeout (or a ConnectionError wrapping one).
                    with contextlib.suppress(DockerException, requests.RequestException):
                        container.kill()
                    raise DockerEngineError(f"{image} {list(command)} did not finish within {timeout:.0f} s") from exc
                logs = container.logs(stdout=True, stderr=True).decode(errors="replace")
                return ContainerResult(exit_code=int(status.get("StatusCode", -1)), logs=logs)
            except DockerException as exc:
                raise DockerEngineError(f"{self.base_url}: container of {image} failed: {exc}") from exc
            finally:
                with contextlib.suppress(NotFound, DockerException, requests.RequestException):
                    container.remove(force=True)
