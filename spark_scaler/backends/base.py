"""What every worker backend shares: the interface, its error, and small pure helpers.

A backend starts and stops Spark workers; it never counts them for the scaler: the active worker count comes
from the Spark master (see :mod:`spark_scaler.metrics`). ``workers()`` lists what the backend runs right now,
read from the world each time (pid files, container labels, swarm tasks), so a restarted controller and the
backend never drift apart.

Safe scale-in (``stop_worker(ref, graceful=True)``) is Spark's decommissioning: SIGPWR makes the worker tell
the master it is leaving (the master lists it DECOMMISSIONED and places no executor on it any more); the master
tells each application's driver, which tells its executors there to take no more tasks, finish the running
ones, migrate their shuffle and cached blocks to other executors and exit. The backend waits (bounded) until no
executor is left and only then stops the worker, so no task fails. (The master's ``coresused`` of a
DECOMMISSIONED worker is not updated any more, so the executors are counted on the worker itself.)

An executor the driver was never told about is signalled ourselves. This closes a race seen on Spark 4.3: an
executor launched just before the worker's decommission but registered at the driver just after it is ignored
by the driver's decommission (it did not know it yet) and keeps taking tasks until the application ends. The
signal must reach *only* such executors: an executor's SIGPWR handler asks the driver to decommission it, and
when the driver answers no (already decommissioning, or not registered yet) the handler falls through to the
JVM's native one, which throws, and the executor dies with its running tasks (exit code 50, an
ExecutorLostFailure; seen here too). So an executor is signalled only when its own log (``stderr`` in its
working directory) says it registered with the driver and does not say it started decommissioning, after a
grace period for the driver's own notice to arrive, and only once it catches SIGPWR (bit 30 of ``SigCgt`` in
``/proc/<pid>/status``). Where the log says neither (another log level), no executor is signalled and the drain
relies on Spark alone, bounded by the drain timeout.

Example:
    >>> next_index([0, 1, 3])
    4
    >>> gpu_discovery_script("GPU-1234").splitlines()[-1]
    'echo \\'{"name": "gpu", "addresses": ["0"]}\\''
"""

from __future__ import annotations

import signal
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from opsflow.adapters.spark import MAX_WORKERS, MasterState, WorkerInfo
from opsflow.errors import AdapterError
from spark_scaler.models import WorkerRef

#: Worker states at the master of a worker whose process still runs.
LIVE_STATES = ("ALIVE", "DECOMMISSIONED")
#: The ``SigCgt`` bit of SIGPWR (signal 30 on x86-64 and arm64: bit 29).
SIGPWR_MASK = 1 << (int(signal.SIGPWR) - 1)
#: Lines of an executor's log (Spark 4.x, INFO): it registered with its driver; it started decommissioning.
REGISTERED_MARKER = "Successfully registered with driver"
DECOMMISSIONING_MARKER = "Decommission executor"
#: How long after the worker's decommission an executor is given to hear of it from its driver.
EXECUTOR_GRACE_S = 10.0
#: The resource address a pinned worker reports for its one GPU: with ``CUDA_VISIBLE_DEVICES`` set to that GPU
#: alone, it is device 0 for every process of the worker, whatever its index on the host.
GPU_ADDRESS = "0"


class BackendError(AdapterError):
    """A worker could not be started or stopped; nothing was left half-done (the message says what happened)."""


@runtime_checkable
class WorkerBackend(Protocol):
    """Starts and stops Spark workers (local processes, Docker containers, Swarm replicas).

    Example:
        >>> isinstance(object(), WorkerBackend)
        False
    """

    def workers(self) -> list[WorkerRef]:
        """The workers this backend runs now (read from the world, not remembered)."""
        ...

    def start_worker(self, gpu: str | None = None) -> WorkerRef:
        """Start one worker, pinned to the GPU with UUID ``gpu`` if given; raises :class:`BackendError`."""
        ...

    def stop_worker(self, ref: WorkerRef, graceful: bool) -> None:
        """Stop ``ref``: after decommissioning it (``graceful``) or at once. Stopping a gone worker is a no-op."""
        ...


def next_index(used: Iterable[int], first: int = 0, limit: int = MAX_WORKERS) -> int:
    """The worker index to start next: one above the highest in use (or ``first``), else the lowest free one.

    Taking the next index rather than a just-freed one keeps a new worker off the address that the master may
    still list for a stopped one.

    >>> next_index([], first=5)
    5
    >>> next_index([0, 252])
    1
    """
    taken = {i for i in used if i >= first}
    candidate = max(taken) + 1 if taken else first
    if candidate < limit:
        return candidate
    free = [i for i in range(first, limit) if i not in taken]
    if not free:
        raise BackendError(f"no free worker index in {first}..{limit - 1}: every loopback address is taken")
    return free[0]


def live_worker(state: MasterState, host: str) -> WorkerInfo | None:
    """The master's entry of the worker process now running at ``host`` (ALIVE or DECOMMISSIONED), if any.

    The master keeps DEAD entries of earlier workers at the same address; among live ones the most recent
    heartbeat wins.

    >>> s = MasterState(status="ALIVE", workers=[WorkerInfo(id="a", host="127.0.0.3", state="DEAD")])
    >>> live_worker(s, "127.0.0.3") is None
    True
    """
    live = [w for w in state.workers if w.host == host and w.state in LIVE_STATES]
    return max(live, key=lambda w: w.lastheartbeat) if live else None


def catches_sigpwr(proc_status: str) -> bool:
    """True when a process's ``/proc/<pid>/status`` text shows a SIGPWR handler (``SigCgt``).

    >>> catches_sigpwr("Name:\\tjava\\nSigCgt:\\t2000000121005ccf\\n")
    True
    >>> catches_sigpwr("SigCgt:\\t0000000101005ccf\\n")
    False
    """
    for line in proc_status.splitlines():
        if line.startswith("SigCgt:"):
            try:
                return bool(int(line.split(":", 1)[1].strip(), 16) & SIGPWR_MASK)
            except ValueError:
                return False
    return False


def executor_missed_decommission(log_text: str) -> bool:
    """Whether an executor's log shows it registered with its driver but never started decommissioning (pure).

    >>> executor_missed_decommission("... Successfully registered with driver ...")
    True
    >>> executor_missed_decommission("Successfully registered with driver\\nDecommission executor 0.")
    False
    """
    return REGISTERED_MARKER in log_text and DECOMMISSIONING_MARKER not in log_text


def gpu_discovery_script(gpu: str) -> str:
    """The resource discovery script of a worker pinned to GPU ``gpu`` (Spark runs it once at worker start).

    It reports one GPU at address :data:`GPU_ADDRESS`: the worker and its executors see only that GPU,
    through ``CUDA_VISIBLE_DEVICES``.
    """
    if not gpu or any(c.isspace() or c in "'\"\\" for c in gpu):
        raise BackendError(f"gpu: {gpu!r} is not a GPU UUID or index")
    return (
        "#!/bin/sh\n"
        f"# Generated by opsflow: this worker's one GPU is {gpu} (CUDA_VISIBLE_DEVICES), device 0 inside.\n"
        f'echo \'{{"name": "gpu", "addresses": ["{GPU_ADDRESS}"]}}\'\n'
    )


def gpu_worker_opts(script_path: str) -> str:
    """``SPARK_WORKER_OPTS`` giving a worker one GPU found by ``script_path`` (no spaces: the launcher splits).

    >>> gpu_worker_opts("/h/gpu.sh")
    '-Dspark.worker.resource.gpu.amount=1 -Dspark.worker.resource.gpu.discoveryScript=/h/gpu.sh'
    """
    if any(c.isspace() for c in script_path):
        raise BackendError(f"GPU discovery script path {script_path!r} contains whitespace")
    return f"-Dspark.worker.resource.gpu.amount=1 -Dspark.worker.resource.gpu.discoveryScript={script_path}"


#: What an application sets to run its executors and tasks on the workers' GPUs (Listing C.5, the thesis's
#: submit script): one GPU per executor and per task, so a task sees the one GPU of its worker.
GPU_APP_CONF: dict[str, str] = {"spark.executor.resource.gpu.amount": "1", "spark.task.resource.gpu.amount": "1"}


def gpu_env(gpu: str) -> dict[str, str]:
    """Environment that confines a worker and its executors to GPU ``gpu`` (UUIDs keep NVML's order)."""
    return {"CUDA_VISIBLE_DEVICES": gpu, "NVIDIA_VISIBLE_DEVICES": gpu, GPU_ENV_VAR: gpu}


#: Our own record of a worker's GPU, in its environment (CUDA_VISIBLE_DEVICES may come from elsewhere).
GPU_ENV_VAR = "OPSFLOW_WORKER_GPU"


def ensure_gpu_free(refs: Iterable[WorkerRef], gpu: str | None) -> None:
    """Never two workers on one GPU: raise when ``gpu`` is already pinned to one of ``refs``.

    >>> ensure_gpu_free([WorkerRef(id="w", host="h", gpu="GPU-1")], "GPU-2")
    """
    if gpu is None:
        return
    for ref in refs:
        if ref.gpu == gpu:
            raise BackendError(f"gpu: {gpu} is already pinned to worker {ref.id} ({ref.host})")
