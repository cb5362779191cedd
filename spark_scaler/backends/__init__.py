"""Worker backends of the auto-scaler behind one interface, :class:`WorkerBackend`.

- :class:`LocalProcessBackend`: Spark Worker JVMs as local processes, each on its own loopback address.
- :class:`DockerBackend`: one container per worker through the docker SDK (Docker, or podman's API).
- :class:`SwarmServiceBackend`: the replicas of a Docker Swarm service (``service.scale``, as in the thesis).

The names are imported on first use, so a tick with the local backend never loads the docker SDK.

Example:
    >>> from spark_scaler.backends import BackendError
    >>> issubclass(BackendError, RuntimeError)
    True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opsflow.lazy import lazy_exports

if TYPE_CHECKING:
    from spark_scaler.backends.base import BackendError, WorkerBackend, live_worker, next_index
    from spark_scaler.backends.docker import DockerBackend, host_runtime_volumes
    from spark_scaler.backends.local import LocalProcessBackend
    from spark_scaler.backends.swarm import SwarmServiceBackend

#: Public name → the submodule defining it.
_WHERE = {
    "BackendError": "base",
    "WorkerBackend": "base",
    "live_worker": "base",
    "next_index": "base",
    "DockerBackend": "docker",
    "host_runtime_volumes": "docker",
    "LocalProcessBackend": "local",
    "SwarmServiceBackend": "swarm",
}

# Spelled out (not derived from _WHERE) so that linters see the TYPE_CHECKING imports above as the exports.
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

__getattr__ = lazy_exports(__name__, _WHERE)
