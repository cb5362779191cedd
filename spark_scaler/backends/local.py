"""Spark workers as local processes: each a Worker JVM on its own loopback address (the local stack's way).

Worker ``i`` is :func:`opsflow.adapters.spark.local_worker_process` ``(i)``, exactly as the local stack starts
its own: host ``127.0.0.<i+2>``, UI port ``ui_base_port + i``, pid file ``<home>/run/spark-worker-<i>.pid``, log
``<home>/logs/spark-worker-<i>.log``, work and local dirs under ``<home>/spark``. The backend finds its workers
through those pid files, so the stack's own workers and the ones added here are one set, and stopping the
stack's Spark ends them all. It takes plain values (a home, the master's URLs, the worker shape), no stack object.

Example:
    >>> backend = LocalProcessBackend(Path("/nonexistent"), "spark://127.0.0.1:7077", "http://127.0.0.1:8080",
    ...                               env={}, spark_home="/opt/spark")
    >>> backend.workers(), backend.ui_base_port, backend.worker_spec(2).argv[2:4]
    ([], 8081, ['--host', '127.0.0.4'])
"""

from __future__ import annotations

import logging
import os
import re
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from opsflow.adapters.spark import (
    EXECUTOR_CLASS,
    SparkError,
    SparkMaster,
    local_worker_process,
    worker_host,
    worker_key,
)
from opsflow.adapters.spark import spark_home as default_spark_home
from opsflow.files import atomic_write_text
from opsflow.processes import (
    ProcessSpec,
    exit_code,
    log_file,
    port_owner,
    running_process,
    start_process,
    stop_process,
    tail,
)
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


def default_ui_base_port(master_ui_url: str) -> int:
    """The first worker UI port when none is given: the one after the master's UI port (the local stack's rule,
    which keeps holding when all its ports are shifted together).

    >>> default_ui_base_port("http://127.0.0.1:18080")
    18081
    """
    return (urlsplit(master_ui_url).port or 8080) + 1


class LocalProcessBackend:
    """Real Spark Worker JVMs started with :func:`opsflow.processes.start_process` under ``home``.

    ``master_url``: the ``spark://`` URL new workers register with; ``master_ui_url``: read to see them ALIVE.
    ``env``: the base environment of the worker processes (default: this process's; it needs Java: ``JAVA_HOME``
    or ``java`` on PATH). ``conf_dir``: their ``SPARK_CONF_DIR`` (default ``<spark_dir>/conf``, the stack's, which
    enables decommissioning); ``spark_dir``: where their work, local, temporary and log dirs go (default
    ``<home>/spark``). ``ui_base_port``: worker ``i``'s UI listens on ``ui_base_port + i`` (default: the master's
    UI port + 1). ``cores``, ``memory``: what each worker offers.

    ``register_timeout_s``: how long :meth:`start_worker` waits for the master to list the new worker ALIVE
    (0: do not wait). ``drain_timeout_s``: how long a graceful stop waits for the worker's executors to finish
    their tasks and migrate their blocks; past it the worker is stopped anyway (choose it above
    ``spark.executor.decommission.forceKillTimeout``, after which Spark kills such an executor itself).
    """

    graceful_scale_in = True

    def __init__(
        self,
        home: Path,
        master_url: str,
        master_ui_url: str,
        *,
        env: Mapping[str, str] | None = None,
        spark_home: str | None = None,
        conf_dir: str | Path | None = None,
        spark_dir: Path | None = None,
        ui_base_port: int | None = None,
        cores: int = 1,
        memory: str = "1g",
        register_timeout_s: float = 90.0,
        drain_timeout_s: float = 180.0,
        executor_grace_s: float = EXECUTOR_GRACE_S,
        poll_s: float = 1.0,
    ) -> None:
        if cores < 1:
            raise BackendError(f"cores: must be at least 1, got {cores}")
        self.home = Path(home)
        self.master_url = master_url
        self.env = dict(os.environ if env is None else env)
        self._spark_home = spark_home
        self.spark_dir = spark_dir or self.home / "spark"
        self.conf_dir = Path(conf_dir) if conf_dir else self.spark_dir / "conf"
        self.ui_base_port = ui_base_port if ui_base_port is not None else default_ui_base_port(master_ui_url)
        self.cores = cores
        self.memory = memory
        self.master = SparkMaster(master_ui_url, timeout_s=3.0)
        self.register_timeout_s = register_timeout_s
        self.drain_timeout_s = drain_timeout_s
        self.executor_grace_s = executor_grace_s
        self.poll_s = poll_s

    @property
    def spark_home(self) -> str:
        """SPARK_HOME of the workers: the one given, else ``env``'s, else pyspark's (found on first use: a tick
        that starts no worker does not import pyspark)."""
        if self._spark_home is None:
            self._spark_home = default_spark_home(self.env)
        return self._spark_home

    def worker_spec(self, index: int) -> ProcessSpec:
        """The process of worker ``index`` (the same as the local stack's worker ``index``)."""
        return local_worker_process(
            index,
            root=self.spark_dir,
            spark_home=self.spark_home,
            conf_dir=self.conf_dir,
            master_url=self.master_url,
            webui_port=self.ui_base_port + index,
            cores=self.cores,
            memory=self.memory,
        )

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
        return self._start(next_index(i for i, _ in self._running()), gpu)

    def _start(self, index: int, gpu: str | None) -> WorkerRef:
        spec = self.worker_spec(index)
        port = self.ui_base_port + index
        owner = port_owner(port)
        if owner is not None:
            raise BackendError(f"cannot start {spec.key}: its UI port {port} is taken by {owner}")
        if gpu is not None:
            script = self.spark_dir / "gpu" / f"{spec.key}.sh"
            atomic_write_text(script, gpu_discovery_script(gpu), mode=0o755)
            base_opts = spec.env.get("SPARK_WORKER_OPTS") or self.env.get("SPARK_WORKER_OPTS")
            opts = " ".join(filter(None, [base_opts, gpu_worker_opts(str(script))]))
            spec.env.update({**gpu_env(gpu), "SPARK_WORKER_OPTS": opts})
        self.spark_dir.joinpath("tmp").mkdir(parents=True, exist_ok=True)
        proc = start_process(self.home, spec, self.env)
        ref = WorkerRef(id=spec.key, host=worker_host(index), gpu=gpu, started_at=proc.create_time())
        if self.register_timeout_s > 0:
            self._wait_registered(proc, ref)
        log.info("started Spark worker %s on %s%s", ref.id, ref.host, f" pinned to GPU {gpu}" if gpu else "")
        return ref

    def restore(self, count: int) -> None:
        """Back to workers ``0 .. count-1`` alone (what `opsflow up` starts): the others are stopped at once, the
        missing ones started."""
        running = self.workers()
        for ref in running:
            if worker_index(ref.id) >= count:
                self.stop_worker(ref, graceful=False)
        have = {worker_index(ref.id) for ref in running}
        for index in range(count):
            if index not in have:
                self._start(index, None)

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
