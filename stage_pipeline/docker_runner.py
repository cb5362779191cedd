"""Stages in containers: the `docker` SDK against Docker or podman's Docker API (the local stack's socket).

The container gets the attempt's workspace at /workspace (read-write) and the resource pool at /resources
(read-only), no capabilities (``cap_drop=["ALL"]``: container root cannot override sealed files), host
networking, the stage's ``cpus`` as a CPU quota (``nano_cpus``) and its ``memory`` as the container's memory limit
with no swap beyond it, and a device request for the GPUs it holds (or, unleased, for a count). Images are never
pulled.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound

from stage_pipeline.runners import (
    PROBE_S,
    STAGE_LABEL,
    STREAMING_ENV,
    Chunk,
    RunOutcome,
    StageJob,
    _now,
    _Output,
    _pump,
    area_env,
)


def _demuxed(frames: Iterable[tuple[bytes | None, bytes | None]]) -> Iterator[Chunk]:
    """The docker SDK's demultiplexed (stdout, stderr) pairs as chunks."""
    for out, err in frames:
        if out:
            yield 1, out
        if err:
            yield 2, err


def container_kwargs(job: StageJob, network_mode: str = "host") -> dict[str, Any]:
    """Keyword arguments of ``client.containers.create`` for ``job`` (pure).

    Container root gets no capabilities, so it cannot override the permissions of sealed input files.

    >>> from pathlib import Path
    >>> kw = container_kwargs(StageJob(image="busybox", argv=["true"], workdir=Path("/w"), gpus=1))
    >>> kw["volumes"], kw["device_requests"][0]["Count"]
    ({'/w': {'bind': '/workspace', 'mode': 'rw'}}, 1)
    >>> kw = container_kwargs(StageJob(image="busybox", workdir=Path("/w"), cpus=1.5, memory_bytes=64 << 20))
    >>> kw["nano_cpus"], kw["mem_limit"], kw["memswap_limit"]
    (1500000000, 67108864, 67108864)
    """
    if job.image is None:
        raise ValueError(f"stage {job.name}: no image to run in a container")
    volumes = {str(job.workdir): {"bind": "/workspace", "mode": "rw"}}
    if job.resources is not None:
        volumes[str(job.resources)] = {"bind": "/resources", "mode": "ro"}
    if job.inputs is not None:
        volumes[str(job.inputs)] = {"bind": "/input", "mode": "ro"}
    if job.asks is not None:
        volumes[str(job.asks)] = {"bind": "/opsflow-ask", "mode": "rw"}
    kwargs: dict[str, Any] = {
        "image": job.image,
        "command": list(job.argv) or None,  # None: the image's own CMD
        "environment": {
            **STREAMING_ENV,
            **area_env(job.resources and "/resources", job.inputs and "/input", job.asks and "/opsflow-ask"),
            **job.env,
        },
        "working_dir": "/workspace",
        "volumes": volumes,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "labels": {**job.labels, STAGE_LABEL: job.name},
        "network_mode": network_mode,
    }
    if job.cpus is not None:
        kwargs["nano_cpus"] = round(job.cpus * 1e9)
    if job.memory_bytes is not None:
        kwargs["mem_limit"] = job.memory_bytes
        kwargs["memswap_limit"] = job.memory_bytes  # memory + swap: no swap beyond the limit
    if job.gpu_ids:
        kwargs["device_requests"] = [docker.types.DeviceRequest(device_ids=list(job.gpu_ids), capabilities=[["gpu"]])]
    elif job.gpus > 0:
        kwargs["device_requests"] = [docker.types.DeviceRequest(count=job.gpus, capabilities=[["gpu"]])]
    return kwargs


class DockerRunner:
    """A stage as a container (Docker, or podman's Docker API). Images are never pulled: a missing one is an error.

    ``network_mode="host"`` is what podman on the local stack supports without extra network set-up. If the
    runner dies, its container runs on: it carries the :data:`STAGE_LABEL` label so it can be found and removed.
    """

    def __init__(self, client: docker.DockerClient, network_mode: str = "host", wait_s: float = 60.0) -> None:
        self.client = client
        self.network_mode = network_mode
        self.wait_s = wait_s

    def run(self, job: StageJob, on_line: Callable[[str], None], should_abort: Callable[[], bool]) -> RunOutcome:
        started = _now()
        try:
            container = self.client.containers.create(**container_kwargs(job, self.network_mode))
        except ImageNotFound as exc:
            return RunOutcome(error=f"image {job.image} is not present (nothing is pulled): {exc}", started=started,
                              ended=_now())  # fmt: skip
        except (DockerException, requests.RequestException) as exc:
            return RunOutcome(error=f"cannot create a container of {job.image}: {exc}", started=started, ended=_now())
        output = _Output(on_line)
        stream: Any = None
        next_probe = time.monotonic() + PROBE_S

        def exited() -> bool:
            # The attached stream ends when the container exits; in case an engine keeps it open, ask now and then.
            nonlocal next_probe
            if output.ended or time.monotonic() < next_probe:
                return output.ended
            next_probe = time.monotonic() + PROBE_S
            container.reload()
            return container.status in ("exited", "dead")

        try:
            # Attached before the start, as `docker run` does; demux keeps stdout and stderr lines apart. (The
            # logs endpoint would mix them, and podman answers it only once the first line exists.)
            stream = container.attach(stdout=True, stderr=True, stream=True, logs=True, demux=True)
            container.start()
            threading.Thread(target=_pump, args=(_demuxed(stream), output.chunks), daemon=True).start()
            how = output.watch(should_abort, exited, job.timeout_s)
            if how != "finished":
                with contextlib.suppress(APIError):  # it may have exited meanwhile
                    container.kill()
            status = container.wait(timeout=self.wait_s)
            output.drain(wait_s=5.0)
            return RunOutcome(
                exit_code=int(status.get("StatusCode", -1)), aborted=how == "aborted", timed_out=how == "timed_out",
                started=started, ended=_now(),
            )  # fmt: skip
        except (DockerException, requests.RequestException) as exc:
            return RunOutcome(error=f"container of {job.image} failed: {exc}", started=started, ended=_now())
        finally:
            if stream is not None:
                with contextlib.suppress(Exception):
                    stream.close()
            with contextlib.suppress(DockerException, requests.RequestException):
                container.remove(force=True)
