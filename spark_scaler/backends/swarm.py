"""Spark workers as the replicas of one Docker Swarm service: the thesis's own way (``service.scale(n)``).

Swarm chooses which task a scale-down removes, so this backend cannot decommission a chosen worker:
``graceful_scale_in`` is False and the scaler must not scale in while applications run (the thesis's rule). A
site that wants graceful scale-in on Swarm gives the service ``StopSignal: SIGPWR`` and a ``StopGracePeriod``
longer than a drain, so that every task Swarm removes is decommissioned first.

Not run against a real swarm here (podman has none): the contract test records the real docker SDK's HTTP
exchange with a local stand-in of the Engine API.

Example:
    >>> client = docker.DockerClient(base_url="tcp://127.0.0.1:1", version="1.41")  # nothing listens there
    >>> SwarmServiceBackend(client, "spark-worker").replicas()  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    spark_scaler.backends.base.BackendError: swarm service spark-worker: ...
"""

from __future__ import annotations

import logging
from typing import Any

import docker
import requests
from docker.errors import DockerException

from spark_scaler.backends.base import BackendError
from spark_scaler.backends.docker import parse_docker_time
from spark_scaler.models import WorkerRef

log = logging.getLogger(__name__)


def task_address(task: dict[str, Any]) -> str:
    """The first network address of a swarm task, without its prefix length ('' when it has none).

    >>> task_address({"NetworksAttachments": [{"Addresses": ["10.0.1.7/24"]}]})
    '10.0.1.7'
    """
    for attachment in task.get("NetworksAttachments") or []:
        for address in attachment.get("Addresses") or []:
            return str(address).split("/", 1)[0]
    return ""


class SwarmServiceBackend:
    """Scales the replicated service ``service_name`` through ``client`` (a ``docker.DockerClient``)."""

    graceful_scale_in = False

    def __init__(self, client: docker.DockerClient, service_name: str) -> None:
        if not service_name:
            raise BackendError("service_name: must not be empty")
        self.client = client
        self.service_name = service_name

    def _service(self) -> Any:
        try:
            service = self.client.services.get(self.service_name)
        except (DockerException, requests.RequestException) as exc:
            raise BackendError(f"swarm service {self.service_name}: {exc}") from exc
        if "Replicated" not in service.attrs.get("Spec", {}).get("Mode", {}):
            raise BackendError(f"swarm service {self.service_name} is not replicated; it cannot be scaled")
        return service

    def replicas(self) -> int:
        """The service's desired replica count."""
        return int(self._service().attrs["Spec"]["Mode"]["Replicated"].get("Replicas", 0))

    def scale(self, replicas: int) -> None:
        """Set the desired replica count (the thesis's ``service.scale``)."""
        if replicas < 0:
            raise BackendError(f"replicas: must not be negative, got {replicas}")
        service = self._service()
        try:
            service.scale(replicas)
        except (DockerException, requests.RequestException) as exc:
            raise BackendError(f"swarm service {self.service_name}: scaling to {replicas} failed: {exc}") from exc
        log.info("scaled swarm service %s to %d replicas", self.service_name, replicas)

    def workers(self) -> list[WorkerRef]:
        """The service's tasks that should run (desired state running)."""
        try:
            tasks = self.client.api.tasks(filters={"service": self.service_name, "desired-state": "running"})
        except (DockerException, requests.RequestException) as exc:
            raise BackendError(f"swarm service {self.service_name}: cannot list tasks: {exc}") from exc
        return [
            WorkerRef(id=str(t["ID"]), host=task_address(t), started_at=parse_docker_time(str(t.get("CreatedAt", ""))))
            for t in tasks
        ]

    def start_worker(self, gpu: str | None = None) -> WorkerRef:
        """One replica more; Swarm starts the task (no GPU pinning: use generic resources on the service)."""
        if gpu is not None:
            raise BackendError("gpu: the Swarm backend cannot pin a worker to a GPU")
        target = self.replicas() + 1
        self.scale(target)
        return WorkerRef(id=f"{self.service_name}.{target}", host="")

    def stop_worker(self, ref: WorkerRef, graceful: bool) -> None:
        """One replica less; Swarm picks the task to remove (``ref`` only says that one should go)."""
        current = self.replicas()
        if current > 0:
            self.scale(current - 1)
