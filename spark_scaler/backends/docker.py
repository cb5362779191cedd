"""Spark workers as Docker containers, one per worker, through the docker SDK (Docker or podman's API).

Each container runs ``spark-class org.apache.spark.deploy.worker.Worker`` in the host's network namespace on a
loopback address of its own (``127.0.0.<index+2>``, indices from ``first_index`` up, so that they never meet
the local stack's process workers), labelled so that :meth:`DockerBackend.workers` finds them again.

An image with Java and Spark is the usual way. Where there is none (the local stack has only its busybox image
and no registry), :func:`host_runtime_volumes` bind-mounts the host's JDK, C libraries, Python and pyspark
read-only at their own paths, so a worker in a busybox container runs the host's Spark.

Graceful stop: SIGPWR to the container's main process (the worker JVM), then, on every poll, a constant shell
script run in the container (:data:`EXECUTOR_PWR_SCRIPT`) prints how many executors are left and signals any
that missed the decommission (see :mod:`spark_scaler.backends.base`); the container is stopped once none is
left and the master no longer lists the worker ALIVE.

Example:
    >>> parse_docker_time("2026-11-23T13:26:17.123456789Z")
    1795440377.123456
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import sys
import tarfile
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import docker
import requests
from docker.errors import DockerException, ImageNotFound, NotFound

from opsflow.adapters.docker_engine import DockerEngineClient, bind_specs
from opsflow.adapters.spark import (
    DAEMON_JVM_FLAGS,
    DAEMON_MEMORY,
    EXECUTOR_CLASS,
    SparkError,
    SparkMaster,
    worker_argv,
    worker_host,
)
from spark_scaler.backends.base import (
    DECOMMISSIONING_MARKER,
    EXECUTOR_GRACE_S,
    REGISTERED_MARKER,
    SIGPWR_MASK,
    BackendError,
    ensure_gpu_free,
    gpu_discovery_script,
    gpu_env,
    gpu_worker_opts,
    live_worker,
    next_index,
)
from spark_scaler.models import WorkerRef

log = logging.getLogger(__name__)

LABEL_SCOPE = "opsflow.spark.worker"
LABEL_INDEX = "opsflow.spark.index"
LABEL_HOST = "opsflow.spark.host"
LABEL_GPU = "opsflow.spark.gpu"
#: Where a pinned container's discovery script is copied before it starts (the root exists in every image).
GPU_SCRIPT_PATH = "/opsflow-gpu-discovery.sh"
#: Run in the container on every poll of a graceful stop (needs sh, cat, grep, sed, kill: busybox has them).
#: It counts the executor JVMs and sends SIGPWR once to each that registered with its driver, never started
#: decommissioning, catches SIGPWR and was first seen so by this script at least $1 seconds ago (the grace period;
#: see :mod:`spark_scaler.backends.base`). A constant: nothing from input is put into it.
EXECUTOR_PWR_SCRIPT = f"""\
n=0
for d in /proc/[0-9]*; do
  [ "$(cat "$d/comm" 2>/dev/null)" = java ] || continue
  grep -q {EXECUTOR_CLASS} "$d/cmdline" 2>/dev/null || continue
  n=$((n + 1))
  pid=${{d#/proc/}}
  [ -e "/tmp/.opsflow-pwr-$pid" ] && continue
  grep -q "{REGISTERED_MARKER}" "$d/cwd/stderr" 2>/dev/null || continue
  grep -q "{DECOMMISSIONING_MARKER}" "$d/cwd/stderr" 2>/dev/null && continue
  [ -e "/tmp/.opsflow-missed-$pid" ] || date +%s > "/tmp/.opsflow-missed-$pid"
  [ $(( $(date +%s) - $(cat "/tmp/.opsflow-missed-$pid") )) -ge "$1" ] || continue
  cgt=$(sed -n 's/^SigCgt:[[:space:]]*//p' "$d/status" 2>/dev/null)
  [ -n "$cgt" ] || continue
  if [ $(( 0x$cgt & {SIGPWR_MASK:#x} )) -ne 0 ]; then kill -PWR "$pid" && : > "/tmp/.opsflow-pwr-$pid"; fi
done
echo "executors $n"
"""
_EXECUTORS = re.compile(r"executors (\d+)")
_FRACTION = re.compile(r"(\.\d{1,6})\d*")

SYSTEM_PATHS = ("/usr", "/lib", "/lib64")


def parse_docker_time(text: str) -> float:
    """Epoch seconds of a Docker/podman timestamp (nanosecond fractions and ``Z`` included); 0.0 if unreadable."""
    try:
        clean = _FRACTION.sub(lambda m: m.group(1), text.strip()).replace("Z", "+00:00")
        return datetime.fromisoformat(clean).timestamp()
    except ValueError:
        return 0.0


def _outside(path: Path, roots: Iterable[Path]) -> bool:
    return not any(path == root or root in path.parents for root in roots)


def host_runtime_volumes(
    java_home: str, spark_home: str, conf_dir: str | Path | None = None, python_prefixes: Iterable[str] | None = None
) -> dict[str | Path, str]:
    """Read-only binds that let a container without Java run the host's Spark worker (same paths inside).

    /usr, /lib, /lib64 (the JDK, glibc, bash for spark-class), the directories the JDK's symlinks point to
    (Debian keeps its config in /etc/java-*), the Python installations (for PySpark executors), SPARK_HOME, the
    Spark conf dir and the stack's ``bin/`` beside it; read-write, its ``fallback/`` (shuffle blocks of
    decommissioned executors). Only paths that exist are returned.

    >>> "/usr" in host_runtime_volumes("/usr/lib/jvm/default-java", "/opt/spark", python_prefixes=[])
    True
    """
    roots = [Path(p) for p in SYSTEM_PATHS]
    paths: list[Path] = [*roots]
    java = Path(java_home)
    if java.exists():
        for item in java.rglob("*"):
            if item.is_symlink():
                target = item.resolve()
                if _outside(target, paths) and len(target.parts) > 2:
                    paths.append(Path(*target.parts[:3]))  # e.g. /etc/java-17-openjdk
    prefixes = [sys.prefix, sys.base_prefix] if python_prefixes is None else list(python_prefixes)
    # The stack keeps its PySpark Python wrapper (spark.pyspark.python of its spark-defaults.conf) in bin/ next to
    # the conf dir: executors in the container must find it at the same path.
    stack_dirs = [str(conf_dir), str(Path(conf_dir).parent / "bin")] if conf_dir else []
    for extra in [*prefixes, spark_home, *stack_dirs]:
        path = Path(extra).resolve()
        if _outside(path, paths):
            paths.append(path)
    binds: dict[str | Path, str] = {str(p): f"{p}:ro" for p in paths if p.exists()}
    # The stack's fallback storage for shuffle blocks a decommissioning executor could not hand to a peer: the
    # executors write it, the reducers (here or in other containers) read it at the same path.
    fallback = Path(conf_dir).parent / "fallback" if conf_dir else None
    if fallback is not None and fallback.is_dir():
        binds[str(fallback.resolve())] = f"{fallback.resolve()}:rw"
    return binds


class DockerBackend:
    """One container per Spark worker (see the module docstring).

    ``master_ui_url`` is read to wait for a new worker's registration and to see a leaving one decommissioned.
    ``gpu_device_requests``: ask the engine for the pinned GPU (NVIDIA container toolkit); off where the engine
    has no GPU support, then only ``CUDA_VISIBLE_DEVICES`` and the discovery script pin it.
    """

    graceful_scale_in = True

    def __init__(
        self,
        engine: DockerEngineClient,
        image: str,
        master_url: str,
        *,
        master_ui_url: str,
        spark_home: str,
        java_home: str | None = None,
        conf_dir: str | Path | None = None,
        volumes: Mapping[str | Path, str] | None = None,
        env: Mapping[str, str] | None = None,
        cores: int = 1,
        memory: str = "1g",
        ui_base_port: int = 8081,
        first_index: int = 100,
        name_prefix: str = "opsflow-spark-worker",
        gpu_device_requests: bool = True,
        register_timeout_s: float = 90.0,
        drain_timeout_s: float = 180.0,
        executor_grace_s: float = EXECUTOR_GRACE_S,
        poll_s: float = 1.0,
    ) -> None:
        if cores < 1:
            raise BackendError(f"cores: must be at least 1, got {cores}")
        if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", name_prefix):
            raise BackendError(f"name_prefix: {name_prefix!r} is not a valid container name prefix")
        self.engine = engine
        self.image = image
        self.master_url = master_url
        self.master = SparkMaster(master_ui_url, timeout_s=3.0)
        self.spark_home = spark_home
        self.java_home = java_home
        self.conf_dir = str(conf_dir) if conf_dir else None
        self.volumes = dict(volumes or {})
        self.env = dict(env or {})
        self.cores = cores
        self.memory = memory
        self.ui_base_port = ui_base_port
        self.first_index = first_index
        self.name_prefix = name_prefix
        self.gpu_device_requests = gpu_device_requests
        self.register_timeout_s = register_timeout_s
        self.drain_timeout_s = drain_timeout_s
        self.executor_grace_s = executor_grace_s
        self.poll_s = poll_s

    # --- helpers -----------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _client(self) -> Any:
        client = self.engine.client()
        try:
            yield client
        except (DockerException, requests.RequestException) as exc:
            raise BackendError(f"Docker API at {self.engine.base_url}: {exc}") from exc
        finally:
            client.close()

    def _containers(self, client: docker.DockerClient, *, all_states: bool = False) -> list[Any]:
        filters = {"label": f"{LABEL_SCOPE}={self.name_prefix}"}
        return list(client.containers.list(all=all_states, filters=filters))

    def container_env(self, host: str, gpu: str | None) -> dict[str, str]:
        """The environment of the worker container at ``host``."""
        env = {
            "SPARK_HOME": self.spark_home,
            "SPARK_LOCAL_IP": host,
            "SPARK_WORKER_DIR": "/tmp/spark-work",
            "SPARK_LOCAL_DIRS": "/tmp/spark-local",
            "SPARK_LOG_DIR": "/tmp/spark-logs",
            "SPARK_DAEMON_MEMORY": DAEMON_MEMORY,
            "SPARK_DAEMON_JAVA_OPTS": " ".join(["-Djava.io.tmpdir=/tmp", *DAEMON_JVM_FLAGS]),
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            **({"JAVA_HOME": self.java_home} if self.java_home else {}),
            **({"SPARK_CONF_DIR": self.conf_dir} if self.conf_dir else {}),
            **self.env,
        }
        if gpu is not None:
            opts = " ".join(filter(None, [env.get("SPARK_WORKER_OPTS"), gpu_worker_opts(GPU_SCRIPT_PATH)]))
            env.update({**gpu_env(gpu), "SPARK_WORKER_OPTS": opts})
        return env

    def worker_argv(self, host: str, index: int) -> list[str]:
        """The container's command: the worker JVM (spark-class execs it, so it is the main process)."""
        return worker_argv(self.spark_home, self.master_url, host, self.ui_base_port + index, self.cores, self.memory)

    def _state_at_master(self, host: str) -> str | None:
        try:
            entry = live_worker(self.master.state(), host)
        except SparkError:
            return "UNREACHABLE"
        return entry.state if entry else None

    # --- the interface -----------------------------------------------------------------------------------
    def workers(self) -> list[WorkerRef]:
        """The running worker containers of this backend (``name_prefix``)."""
        with self._client() as client:
            refs = []
            for c in self._containers(client):
                labels = c.labels or {}
                refs.append(
                    WorkerRef(
                        id=c.name,
                        host=labels.get(LABEL_HOST, ""),
                        gpu=labels.get(LABEL_GPU) or None,
                        started_at=parse_docker_time(str(c.attrs.get("Created", ""))),
                    )
                )
            return sorted(refs, key=lambda r: r.id)

    def start_worker(self, gpu: str | None = None) -> WorkerRef:
        """Create and start the next worker container; wait until the master lists it ALIVE."""
        ensure_gpu_free(self.workers(), gpu)
        with self._client() as client:
            used = [int((c.labels or {}).get(LABEL_INDEX, -1)) for c in self._containers(client)]
            index = next_index(used, first=self.first_index)
            host = worker_host(index)
            name = f"{self.name_prefix}-{index}"
            with contextlib.suppress(NotFound):
                client.containers.get(name).remove(force=True)  # a stopped leftover of ours
            labels = {LABEL_SCOPE: self.name_prefix, LABEL_INDEX: str(index), LABEL_HOST: host, LABEL_GPU: gpu or ""}
            kwargs: dict[str, Any] = {}
            if gpu is not None and self.gpu_device_requests:
                kwargs["device_requests"] = [docker.types.DeviceRequest(device_ids=[gpu], capabilities=[["gpu"]])]
            try:
                container = client.containers.create(
                    self.image,
                    self.worker_argv(host, index),
                    name=name,
                    labels=labels,
                    environment=self.container_env(host, gpu),
                    volumes=bind_specs(self.volumes),
                    network_mode="host",
                    detach=True,
                    **kwargs,
                )
            except ImageNotFound as exc:
                raise BackendError(f"image {self.image} is not on {self.engine.base_url} (nothing is pulled)") from exc
            try:
                if gpu is not None:
                    container.put_archive("/", _tar_file(GPU_SCRIPT_PATH.lstrip("/"), gpu_discovery_script(gpu)))
                container.start()
                ref = WorkerRef(id=name, host=host, gpu=gpu, started_at=time.time())
                if self.register_timeout_s > 0:
                    self._wait_registered(container, ref)
            except BaseException:
                with contextlib.suppress(DockerException, requests.RequestException):
                    container.remove(force=True)
                raise
        log.info("started Spark worker container %s on %s%s", name, host, f" pinned to GPU {gpu}" if gpu else "")
        return ref

    def _wait_registered(self, container: Any, ref: WorkerRef) -> None:
        deadline = time.monotonic() + self.register_timeout_s
        while True:
            container.reload()
            if container.status not in ("created", "running"):
                why = f"ended ({container.status})"
                break
            if self._state_at_master(ref.host) == "ALIVE":
                return
            if time.monotonic() > deadline:
                why = f"was not ALIVE at the master within {self.register_timeout_s:.0f} s"
                break
            time.sleep(self.poll_s)
        logs = container.logs(tail=20).decode(errors="replace")
        raise BackendError(f"Spark worker container {ref.id} ({ref.host}) {why}; it was removed. Last lines:\n{logs}")

    def stop_worker(self, ref: WorkerRef, graceful: bool) -> None:
        """Stop and remove the container ``ref.id``; with ``graceful`` decommission and drain it first."""
        with self._client() as client:
            try:
                container = client.containers.get(ref.id)
            except NotFound:
                return
            if (container.labels or {}).get(LABEL_SCOPE) != self.name_prefix:
                raise BackendError(f"container {ref.id} is not a worker of this backend ({self.name_prefix})")
            if graceful and container.status == "running" and not self._drain(container, ref.host):
                log.warning(
                    "Spark worker container %s did not drain within %.0f s; stopping it anyway",
                    ref.id,
                    self.drain_timeout_s,
                )
            with contextlib.suppress(NotFound):
                container.stop(timeout=10)
            with contextlib.suppress(NotFound):
                container.remove(force=True)
        how = " after decommissioning" if graceful else ""
        log.info("stopped Spark worker container %s (%s)%s", ref.id, ref.host, how)

    def _drain(self, container: Any, host: str) -> bool:
        # The worker JVM is the container's init: a signal it has no handler for yet is simply not delivered.
        container.kill(signal="SIGPWR")
        started = time.monotonic()
        grace = str(max(0, round(self.executor_grace_s)))
        while True:
            # The script's clock starts when it first sees an executor that missed the decommission, which is
            # never before the worker's decommission: one grace period covers both (see the local backend).
            result = container.exec_run(["sh", "-c", EXECUTOR_PWR_SCRIPT, "sh", grace])
            match = _EXECUTORS.search(result.output.decode(errors="replace") if result.output else "")
            left = int(match.group(1)) if match else -1
            if left == 0 and self._state_at_master(host) != "ALIVE":
                return True
            if time.monotonic() - started > self.drain_timeout_s:
                return False
            time.sleep(self.poll_s)


def _tar_file(name: str, text: str, mode: int = 0o755) -> bytes:
    data = text.encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = mode
        info.mtime = int(time.time())
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
