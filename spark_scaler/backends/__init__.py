"""Worker backends of the auto-scaler behind one interface, :class:`WorkerBackend`.

- :class:`LocalProcessBackend`: Spark Worker JVMs as local processes, each on its own loopback address.
- :class:`DockerBackend`: one container per worker through the docker SDK (Docker, or podman's API).
- :class:`SwarmServiceBackend`: the replicas of a Docker Swarm service (``service.scale``, as in the thesis).

Example:
    >>> issubclass(BackendError, RuntimeError)
    True
"""

from spark_scaler.backends.base import BackendError, WorkerBackend, live_worker, next_index
from spark_scaler.backends.docker import DockerBackend, host_runtime_volumes
from spark_scaler.backends.local import LocalProcessBackend
from spark_scaler.backends.swarm import SwarmServiceBackend

__all__ = [
    "BackendError",
    "DockerBackend",
    "LocalProcessBackend",
    "SwarmServiceBackend",
    "WorkerBackend",
    "host_runtime_volumes",
    "live_worker",
    "next_index",
]
