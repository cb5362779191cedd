"""Spark workers as local processes: each a Worker JVM on its own loopback address (the local stack's way).

Worker ``i`` is the local stack's ``spark-worker-<i>`` (:meth:`SparkComponent.worker_spec`): host
``127.0.0.<i+2>``, UI port ``spark_worker_ui_base_port + i``, pid file ``<home>/run/spark-worker-<i>.pid``. The
backend finds its workers through those pid files, so the stack's own workers and the ones added here are one
set, and ``SparkComponent.stop()`` ends them all.

Example:
    >>> from pathlib import Path
    >>> from opsflow.stack.config import StackConfig
    >>> LocalProcessBackend(StackConfig(home=Path("/tmp/h")), {}).workers()  # doctest: +SKIP
    [WorkerRef(id='spark-worker-0', host='127.0.0.2', gpu=None, started_at=1795439621.5)]
"""

from __future__ import annotations

import logging
import re
import signal
import time
from collections.abc import Mapping
from pathlib import Path

import psutil

from opsflow.adapters.spark import SparkError, SparkMaster
from opsflow.files import atomic_write_text
from opsflow.stack.config import StackConfig
from opsflow.stack.process import exit_code, log_file, port_owner, running_process, start_process, stop_process, tail
from opsflow.stack.spark import EXECUTOR_CLASS, SparkComponent, worker_host, worker_key
from spark_scaler.backends.base import (
    EXECUTOR_GRACE_S,
    GPU_ENV_VAR,
    BackendError,
    catches_sigpwr,
    ensure_gpu_free,
    executor_missed_decommission,
    gpu_discovery_script,
    gpu_env,
    gpu_worker_opts,
    live_worker,
    next_index,
)
from spark_scaler.models import WorkerRef

log = logging.getLogger(__name__)

_KEY = re.compile(r"^spark-worker-(\d+)$")


def worker_index(key: str) -> int:
    """The index in a worker's process key.

    >>> worker_index("spark-worker-7")
    7
    """
    match = _KEY.match(key)
    if not match:
        raise BackendError(f"worker id {key!r} is not a local worker (expected spark-worker-<n>)")
    return int(match.group(1))


def proc_catches_sigpwr(proc: psutil.Process) -> bool:
    """Whether ``proc`` has installed a SIGPWR handler yet (False when it is gone)."""
    try:
        return catches_sigpwr(Path(f"/proc/{proc.pid}/status").read_text())
    except OSError:
        return False


def executor_log(executor: psutil.Process, limit: int = 4 * 2**20) -> str:
    """The start of an executor's log: ``stderr`` in its working directory (the worker sets it); '' if unreadable."""
    try:
        with open(Path(executor.cwd()) / "stderr", "rb") as fh:
            return fh.read(limit).decode(errors="replace")
    except (OSError, psutil.Error):
        return ""


def executor_processes(worker: psutil.Process) -> list[psutil.Process]:
    """The live executor JVMs a worker process launched."""
    found = []
    try:
        children = worker.children(recursive=False)
    except psutil.Error:
        return []
    for child in children:
        try:
            if child.status() != psutil.STATUS_ZOMBIE and EXECUTOR_CLASS in child.cmdline():
                found.append(child)
        except psutil.Error:
            continue
    return found


class LocalProcessBackend:
    """Real Spark Worker JVMs started with :func:`opsflow.stack.process.start_process`.

    ``register_timeout_s``: how long :meth:`start_worker` waits for the master to list the new worker ALIVE
    (0: do not wait). ``drain_timeout_s``: how long a graceful stop waits for the worker's executors to finish
    their tasks and migrate their blocks; past it the worker is stopped anyway (choose it above
    ``spark.executor.decommission.forceKillTimeout``, after which Spark kills such an executor itself).
    """

    graceful_scale_in = True

    def __init__(
        self,
        cfg: StackConfig,
        env: Mapping[str, str],
        *,
        register_timeout_s: float = 90.0,
        drain_timeout_s: float = 180.0,
        executor_grace_s: float = EXECUTOR_GRACE_S,
        poll_s: float = 1.0,
    ) -> None:
        self.cfg = cfg
        self.executor_grace_s = executor_grace_s
        self.spark = SparkComponent(cfg, env)
        self.master = SparkMaster(cfg.spark_master_ui_url, timeout_s=3.0)
        self.register_timeout_s = register_timeout_s
        self.drain_timeout_s = drain_timeout_s
        self.poll_s = poll_s

    @property
    def home(self) -> Path:
        return self.cfg.home

    def _running(self) -> list[tuple[int, psutil.Process]]:
        found = []
        for pid in self.home.joinpath("run").glob("spark-worker-*.pid"):
            match = _KEY.match(pid.stem)
            proc = running_process(self.home, pid.stem) if match else None
            if match and proc is not None:
                found.append((int(match.group(1)), proc))
        return sorted(found, key=lambda item: item[0])

    def workers(self) -> list[WorkerRef]:
        """Every running ``spark-worker-<i>`` of this home, with the GPU it was pinned to."""
        refs = []
        for index, proc in self._running():
            try:
                gpu = proc.environ().get(GPU_ENV_VAR) or None
                started = proc.create_time()
            except psutil.Error:
                continue
            refs.append(WorkerRef(id=worker_key(index), host=worker_host(index), gpu=gpu, started_at=started))
        return refs

    def start_worker(self, gpu: str | None = None) -> WorkerRef:
        """Start the next worker (one index above the running ones); wait until the master lists it ALIVE.

        On failure (port taken, JVM exits, never registers) nothing is left running and BackendError says why.
        """
        ensure_gpu_free(self.workers(), gpu)
        index = next_index(i for i, _ in self._running())
        spec = self.spark.worker_spec(index)
        port = self.cfg.spark_worker_ui_base_port + index
        owner = port_owner(port)
        if owner is not None:
            raise BackendError(f"cannot start {spec.key}: its UI port {port} is taken by {owner}")
        if gpu is not None:
            script = self.spark.root / "gpu" / f"{spec.key}.sh"
            atomic_write_text(script, gpu_discovery_script(gpu), mode=0o755)
            base_opts = spec.env.get("SPARK_WORKER_OPTS") or self.spark.env.get("SPARK_WORKER_OPTS")
            opts = " ".join(filter(None, [base_opts, gpu_worker_opts(str(script))]))
            spec.env.update({**gpu_env(gpu), "SPARK_WORKER_OPTS": opts})
        self.spark.root.joinpath("tmp").mkdir(parents=True, exist_ok=True)
        proc = start_process(self.home, spec, self.spark.env)
        ref = WorkerRef(id=spec.key, host=worker_host(index), gpu=gpu, started_at=proc.create_time())
        if self.register_timeout_s > 0:
            self._wait_registered(proc, ref)
        log.info("started Spark worker %s on %s%s", ref.id, ref.host, f" pinned to GPU {gpu}" if gpu else "")
        return ref

    def restore_stack_workers(self) -> None:
        """Back to what `opsflow up` made: the stack's own workers (restarted if stopped) and no others."""
        for ref in self.workers():
            if worker_index(ref.id) >= self.cfg.spark_workers:
                self.stop_worker(ref, graceful=False)
        self.spark.start()

    def _wait_registered(self, proc: psutil.Process, ref: WorkerRef) -> None:
        deadline = time.monotonic() + self.register_timeout_s
        while True:
            code = exit_code(proc)
            if code is not None:
                why = f"exited with code {code}"
                break
            if self._state_at_master(ref.host) == "ALIVE":
                return
            if time.monotonic() > deadline:
                why = f"was not ALIVE at the master within {self.register_timeout_s:.0f} s"
                break
            time.sleep(self.poll_s)
        stop_process(self.home, ref.id)
        logf = log_file(self.home, ref.id)
        raise BackendError(f"Spark worker {ref.id} ({ref.host}) {why}; it was stopped. {logf}:\n{tail(logf)}")

    def _state_at_master(self, host: str) -> str | None:
        """The worker's state at the master: ALIVE, DECOMMISSIONED, None (not listed) or 'UNREACHABLE'."""
        try:
            entry = live_worker(self.master.state(), host)
        except SparkError:
            return "UNREACHABLE"
        return entry.state if entry else None

    def stop_worker(self, ref: WorkerRef, graceful: bool) -> None:
        """Stop ``ref``; with ``graceful`` decommission it first and wait (bounded) until it has drained."""
        worker_index(ref.id)
        proc = running_process(self.home, ref.id)
        if proc is not None and graceful:
            drained = self._drain(proc, ref.host)
            if not drained:
                log.warning(
                    "Spark worker %s did not drain within %.0f s; stopping it anyway", ref.id, self.drain_timeout_s
                )
        stop_process(self.home, ref.id)
        log.info("stopped Spark worker %s (%s)%s", ref.id, ref.host, " after decommissioning" if graceful else "")

    def _drain(self, worker: psutil.Process, host: str) -> bool:
        """SIGPWR the worker (and any executor its driver did not hear of); True once no executor is left and the
        master has it out of ALIVE (or cannot be reached: then it places nothing anywhere)."""
        if not proc_catches_sigpwr(worker):
            # Still starting: not registered at the master, so it has no executor to lose.
            return True
        worker.send_signal(signal.SIGPWR)
        signalled: set[int] = set()
        missed_since: dict[int, float] = {}
        started = time.monotonic()
        while True:
            executors = executor_processes(worker)
            now = time.monotonic()
            for executor in executors:
                if executor.pid in signalled or not executor_missed_decommission(executor_log(executor)):
                    continue
                # A grace period from the first sight of it (never before the worker's decommission): for the
                # driver's own notice to arrive, and for the application's other executors, the peers its blocks
                # migrate to, to register too (with no peer Spark drops the migration and the map output is lost).
                since = missed_since.setdefault(executor.pid, now)
                if now - since >= self.executor_grace_s and proc_catches_sigpwr(executor):
                    try:
                        executor.send_signal(signal.SIGPWR)
                    except psutil.Error:
                        continue
                    signalled.add(executor.pid)
                    log.info("executor pid %d on %s missed the decommission; signalled it", executor.pid, host)
            if not executors and self._state_at_master(host) != "ALIVE":
                return True
            if time.monotonic() - started > self.drain_timeout_s:
                return False
            time.sleep(self.poll_s)
