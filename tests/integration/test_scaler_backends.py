"""The auto-scaler's adapters on the real local Spark, Prometheus and podman (plus a Swarm API stand-in).

One Spark master with one worker, Prometheus with the process exporter and podman, in a home of this module's
own on ports shifted by 25000. The safe scale-in tests run a real PySpark job with its event log on, take one
worker away while the job runs and read every task's end reason from that log: the job must succeed with no
failed task and no re-run stage.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import docker
import httpx
import psutil
import pytest

from opsflow.adapters.docker_engine import DockerEngineClient
from opsflow.adapters.prometheus import PrometheusAPI
from opsflow.adapters.spark import JOB_JVM_FLAGS, MasterState, SparkMaster
from opsflow.gpu import MIB, GpuInfo
from opsflow.stack.config import StackConfig
from opsflow.stack.env import child_env, java_home, spark_home
from opsflow.stack.podman import BUSYBOX_IMAGE, PodmanComponent
from opsflow.stack.process import running_process, stack_processes
from opsflow.stack.prometheus import PrometheusComponent
from opsflow.stack.spark import SparkComponent, local_worker_backend, spark_fallback_dir
from spark_scaler.backends import (
    BackendError,
    DockerBackend,
    LocalProcessBackend,
    SwarmServiceBackend,
    WorkerBackend,
    host_runtime_volumes,
    live_worker,
)
from spark_scaler.backends.base import GPU_APP_CONF, REGISTERED_MARKER
from spark_scaler.backends.docker import LABEL_SCOPE
from spark_scaler.backends.local import executor_log, executor_processes
from spark_scaler.config import EXAMPLE_THESIS_YAML, Endpoints, bind_endpoints, load_config_text
from spark_scaler.controller import backend_for, execute
from spark_scaler.gpus import GpuInventory
from spark_scaler.metrics import DEFAULT_QUERIES, MASTER_QUERIES, observe
from spark_scaler.models import Action, Decision, Observation, WorkerRef
from tests.support import start_or_unavailable, wait_for_state, wait_until

PORT_OFFSET = 25000
DOCKER_PREFIX = "opsflow-scaler-test"

# A job of ~60 core-seconds in Python (several partitions that each keep one core busy), then a shuffle: the
# decommissioned executor's map output must be migrated, not recomputed.
BUSY_JOB = """\
import json, sys, time
from pyspark.sql import SparkSession

partitions, seconds = int(sys.argv[1]), float(sys.argv[2])
spark = SparkSession.builder.appName("scaler-busy").getOrCreate()
sc = spark.sparkContext

def busy(i):
    end = time.time() + seconds
    while time.time() < end:
        pass
    return (i % 3, 1)

try:
    out = sc.parallelize(range(partitions), partitions).map(busy).reduceByKey(lambda a, b: a + b, 4).collect()
    print("RESULT " + json.dumps({"app_id": sc.applicationId, "counts": dict(out)}), flush=True)
finally:
    spark.stop()
"""


# --- fixtures ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> StackConfig:
    return StackConfig(home=tmp_path_factory.mktemp("scaler"), spark_workers=1).shifted(PORT_OFFSET)


@pytest.fixture(scope="module")
def spark(cfg: StackConfig) -> Iterator[SparkComponent]:
    comp = SparkComponent(cfg, child_env(cfg))
    start_or_unavailable(comp)
    yield comp
    comp.stop()
    left = [p for p in stack_processes(cfg.home) if "spark" in " ".join(p.cmdline())]
    assert not left, f"Spark processes left behind: {left}"


@pytest.fixture(scope="module")
def prometheus(cfg: StackConfig, spark: SparkComponent) -> Iterator[PrometheusComponent]:
    comp = PrometheusComponent(cfg, child_env(cfg))
    start_or_unavailable(comp)
    yield comp
    comp.stop()


@pytest.fixture(scope="module")
def podman(cfg: StackConfig, spark: SparkComponent) -> Iterator[PodmanComponent]:
    comp = PodmanComponent(cfg, child_env(cfg))
    start_or_unavailable(comp)
    yield comp
    comp.stop()


@pytest.fixture(scope="module")
def backend(cfg: StackConfig, spark: SparkComponent) -> LocalProcessBackend:
    return local_worker_backend(cfg, child_env(cfg), drain_timeout_s=150.0, poll_s=0.5)


@pytest.fixture
def master(spark: SparkComponent) -> SparkMaster:
    return spark.master


@pytest.fixture(scope="module")
def docker_backend(cfg: StackConfig, spark: SparkComponent, podman: PodmanComponent) -> Iterator[DockerBackend]:
    jh = java_home()
    if jh is None:
        pytest.skip("no JDK to bind-mount into the container")
    engine = DockerEngineClient(cfg.docker_host)
    backend = DockerBackend(
        engine,
        BUSYBOX_IMAGE,
        cfg.spark_master_url,
        master_ui_url=cfg.spark_master_ui_url,
        spark_home=spark.spark_home,
        java_home=jh,
        conf_dir=spark.conf_dir,
        volumes=host_runtime_volumes(jh, spark.spark_home, spark.conf_dir),
        ui_base_port=cfg.spark_worker_ui_base_port,
        name_prefix=DOCKER_PREFIX,
        gpu_device_requests=False,
        drain_timeout_s=150.0,
        poll_s=0.5,
    )
    yield backend
    for ref in backend.workers():
        backend.stop_worker(ref, graceful=False)


# --- helpers -----------------------------------------------------------------------------------------------------
def alive_hosts(state: MasterState) -> list[str]:
    return sorted(w.host for w in state.alive_workers)


def ensure_workers(backend: LocalProcessBackend, master: SparkMaster, count: int) -> list[WorkerRef]:
    """Exactly ``count`` local workers, all ALIVE at the master (tests may run alone or in any order)."""
    refs = backend.workers()
    while len(refs) > count:
        backend.stop_worker(refs.pop(), graceful=False)
    while len(refs) < count:
        refs.append(backend.start_worker())
    hosts = sorted(r.host for r in refs)
    assert alive_hosts(wait_for_state(master, lambda s: alive_hosts(s) == hosts)) == hosts
    return refs


class Job:
    """A spark-submit running in the background against the module's cluster, with its event log."""

    def __init__(
        self, cfg: StackConfig, tmp: Path, script: str, *args: str, conf: dict[str, str] | None = None
    ) -> None:
        self.dir = tmp
        self.events = tmp / "events"
        self.events.mkdir(parents=True, exist_ok=True)
        (tmp / "job.py").write_text(script)
        conf = {
            "spark.ui.enabled": "false",
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.driver.extraJavaOptions": JOB_JVM_FLAGS,
            "spark.pyspark.driver.python": sys.executable,
            "spark.eventLog.enabled": "true",
            "spark.eventLog.dir": str(self.events),
            "spark.eventLog.compress": "false",
            "spark.eventLog.rolling.enabled": "false",
            **(conf or {}),
        }
        argv = [f"{spark_home()}/bin/spark-submit", "--master", cfg.spark_master_url]
        for key, value in conf.items():
            argv += ["--conf", f"{key}={value}"]
        argv += [str(tmp / "job.py"), *args]
        self.stdout = open(tmp / "stdout.txt", "w")  # noqa: SIM115 - closed in wait()
        self.stderr = open(tmp / "stderr.txt", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            argv, env=child_env(cfg), cwd=tmp, stdout=self.stdout, stderr=self.stderr, stdin=subprocess.DEVNULL
        )

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout_s: float = 400.0) -> dict[str, Any]:
        try:
            code = self.proc.wait(timeout=timeout_s)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.stdout.close()
            self.stderr.close()
        err = (self.dir / "stderr.txt").read_text()
        assert code == 0, f"spark-submit exited with {code}:\n{err[-3000:]}"
        lines = [x for x in (self.dir / "stdout.txt").read_text().splitlines() if x.startswith("RESULT ")]
        assert lines, f"the job printed no result:\n{err[-3000:]}"
        result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
        return result

    def event_log(self) -> list[dict[str, Any]]:
        [log] = [p for p in self.events.iterdir() if p.is_file() and not p.name.startswith(".")]
        return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for fh in (self.stdout, self.stderr):
            fh.close()


def task_outcomes(events: list[dict[str, Any]]) -> dict[str, Any]:
    """What the event log says about the job: task end reasons, hosts, stage attempts, removed executors."""
    ends = [e for e in events if e["Event"] == "SparkListenerTaskEnd"]
    return {
        "reasons": Counter(e["Task End Reason"]["Reason"] for e in ends),
        "hosts": Counter(e["Task Info"]["Host"] for e in ends),
        "stage_attempts": sorted(
            {e["Stage Info"]["Stage Attempt ID"] for e in events if e["Event"] == "SparkListenerStageSubmitted"}
        ),
        "job_results": [e["Job Result"]["Result"] for e in events if e["Event"] == "SparkListenerJobEnd"],
        "removed": [e.get("Removed Reason", "") for e in events if e["Event"] == "SparkListenerExecutorRemoved"],
    }


def no_task_lost(job: Job, result: dict[str, Any], partitions: int) -> dict[str, Any]:
    """Assert the job's whole result came back with no failed, killed, lost or resubmitted task; its outcome."""
    assert sum(result["counts"].values()) == partitions
    outcome = task_outcomes(job.event_log())
    assert outcome["job_results"] == ["JobSucceeded"]
    assert set(outcome["reasons"]) == {"Success"}, outcome["reasons"]
    assert outcome["stage_attempts"] == [0], "a stage was re-run (lost shuffle output)"
    return outcome


def decommission_during_job(
    cfg: StackConfig,
    tmp: Path,
    master: SparkMaster,
    backend: WorkerBackend,
    victim: WorkerRef,
    ready_to_remove: Callable[[], bool],
    removed_reason: str = "worker decommissioned",
) -> None:
    """Run the busy job on two workers, stop ``victim`` gracefully once ``ready_to_remove()``, check no task failed.

    ``removed_reason``: how the driver's event log must explain the victim's executor leaving ("worker
    decommissioned" when the driver heard it from the master, "is decommissioned" when the executor told it).
    """
    partitions, seconds = 20, 2.5
    job = Job(cfg, tmp, BUSY_JOB, str(partitions), str(seconds))
    try:
        assert wait_until(ready_to_remove, timeout_s=120, every_s=0.1), "the victim never got to the state wanted"
        backend.stop_worker(victim, graceful=True)
        # The worker left while the job still ran: it drained, it was not waited out.
        assert job.running(), "the job ended before the worker was stopped: nothing was tested"
        assert victim.host not in alive_hosts(master.state())
        result = job.wait()
    finally:
        job.stop()
    outcome = no_task_lost(job, result, partitions)
    assert outcome["hosts"][victim.host] >= 1
    assert any(removed_reason in reason for reason in outcome["removed"]), outcome["removed"]
    state = wait_for_state(master, lambda s: live_worker(s, victim.host) is None)
    assert live_worker(state, victim.host) is None


# --- local process backend ----------------------------------------------------------------------------------------
#: A decommission on 2 busy cores has races of its own (an executor starting while its worker leaves). The known
#: cause of a lost map output, Spark giving up on a block its one peer refused, is closed by the stack's fallback
#: storage (test_graceful_stop_with_no_peer_executor_...). One rerun from fresh workers, never more: a
#: decommission that loses work every time still fails.
RERUN_ONCE = pytest.mark.flaky(reruns=1)


@pytest.mark.stack
def test_local_backend_adds_a_worker_the_master_lists_alive(
    backend: LocalProcessBackend, master: SparkMaster, cfg: StackConfig
) -> None:
    ensure_workers(backend, master, 1)
    ref = backend.start_worker()
    assert ref.id == "spark-worker-1" and ref.host == "127.0.0.3"
    state = master.state()
    assert alive_hosts(state) == ["127.0.0.2", "127.0.0.3"]
    assert [(r.id, r.host) for r in backend.workers()] == [
        ("spark-worker-0", "127.0.0.2"),
        ("spark-worker-1", "127.0.0.3"),
    ]
    assert running_process(cfg.home, ref.id) is not None


@pytest.mark.stack
@RERUN_ONCE
def test_graceful_stop_during_a_job_loses_no_task(
    backend: LocalProcessBackend, master: SparkMaster, cfg: StackConfig, tmp_path: Path
) -> None:
    _, victim = ensure_workers(backend, master, 2)
    work = cfg.home / "spark" / "work" / victim.id

    def victim_runs_tasks() -> bool:
        apps = master.state().activeapps
        if [a.cores for a in apps] != [2]:
            return False
        # Only this job's executor logs: a rerun reuses the worker id, and the first try's logs are still there.
        logs = work.glob(f"{apps[0].id}/*/stderr")
        return any("Got assigned task" in f.read_text(errors="replace") for f in logs)

    decommission_during_job(cfg, tmp_path, master, backend, victim, victim_runs_tasks)
    assert running_process(cfg.home, victim.id) is None
    assert [r.id for r in backend.workers()] == ["spark-worker-0"]


@pytest.mark.stack
@RERUN_ONCE
def test_graceful_stop_while_an_executor_starts_still_loses_no_task(
    backend: LocalProcessBackend, master: SparkMaster, cfg: StackConfig, tmp_path: Path
) -> None:
    # The race: the worker is decommissioned while its executor JVM starts, so the driver, which learns of the
    # executor only afterwards, never tells it; the backend must signal that executor itself.
    _, victim = ensure_workers(backend, master, 2)
    proc = running_process(cfg.home, victim.id)
    assert proc is not None

    def executor_starting() -> bool:
        return any(REGISTERED_MARKER not in executor_log(e) for e in executor_processes(proc))

    decommission_during_job(
        cfg, tmp_path, master, backend, victim, executor_starting, removed_reason="is decommissioned"
    )
    assert [r.id for r in backend.workers()] == ["spark-worker-0"]


@pytest.mark.stack
def test_graceful_stop_with_no_peer_executor_keeps_the_map_output_in_the_fallback_storage(
    backend: LocalProcessBackend, master: SparkMaster, cfg: StackConfig, tmp_path: Path
) -> None:
    # One executor in all (spark.cores.max 1): while it decommissions, no other executor exists to take its
    # shuffle blocks. Spark then gives up on them and the executor exits with them (the finished map tasks come
    # back "Resubmitted"): the stack's fallback storage is where they go instead, and the reducers read them there.
    refs = ensure_workers(backend, master, 2)
    partitions = 8
    job = Job(cfg, tmp_path, BUSY_JOB, str(partitions), "1.5", conf={"spark.cores.max": "1"})

    def worker_with_finished_tasks() -> WorkerRef | None:
        apps = master.state().activeapps
        if len(apps) != 1:
            return None
        for ref in refs:
            logs = (cfg.home / "spark" / "work" / ref.id).glob(f"{apps[0].id}/*/stderr")
            if any(f.read_text(errors="replace").count("Finished task") >= 2 for f in logs):
                return ref
        return None

    try:
        assert wait_until(lambda: worker_with_finished_tasks() is not None, timeout_s=120, every_s=0.1)
        victim = worker_with_finished_tasks()
        assert victim is not None
        backend.stop_worker(victim, graceful=True)
        assert job.running(), "the job ended before the worker was stopped: nothing was tested"
        result = job.wait()
    finally:
        job.stop()
    outcome = no_task_lost(job, result, partitions)
    assert outcome["hosts"][victim.host] >= 2
    assert len(outcome["hosts"]) == 2, "the remaining tasks ran on the other worker"
    assert not any(spark_fallback_dir(cfg.home).rglob("*.data")), "the application removes its fallback blocks"


@pytest.mark.stack
def test_forced_stop_ends_the_worker_at_once(
    backend: LocalProcessBackend, master: SparkMaster, cfg: StackConfig
) -> None:
    ensure_workers(backend, master, 1)
    ref = backend.start_worker()
    proc = running_process(cfg.home, ref.id)
    assert proc is not None
    backend.stop_worker(ref, graceful=False)
    assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    state = wait_for_state(master, lambda s: live_worker(s, ref.host) is None)
    assert live_worker(state, ref.host) is None
    backend.stop_worker(ref, graceful=False)  # a gone worker: nothing to do, no error


#: Each task reports the GPU addresses Spark gave it and the CUDA_VISIBLE_DEVICES its Python worker sees.
GPU_TASKS = """\
import json, os
from pyspark import TaskContext
from pyspark.sql import SparkSession

spark = SparkSession.builder.appName("opsflow-gpu-tasks").getOrCreate()


def seen(_):
    return TaskContext.get().resources()["gpu"].addresses, os.environ.get("CUDA_VISIBLE_DEVICES")


print("RESULT " + json.dumps(spark.sparkContext.parallelize(range(2), 2).map(seen).collect()), flush=True)
spark.stop()
"""


@pytest.mark.stack
def test_the_controller_pins_each_new_worker_to_a_free_gpu_and_holds_when_none_is_left(
    backend: LocalProcessBackend, master: SparkMaster, cfg: StackConfig, tmp_path: Path
) -> None:
    # Through the controller's Execute phase with opsflow.gpu on, an injected inventory (this machine may have no
    # GPU) and the real local backend: the Spark side of the pinning is real all the same.
    inventory = GpuInventory(
        [
            GpuInfo(
                index=0,
                name="Test GPU",
                uuid="GPU-test-0",
                memory_total_bytes=16000 * MIB,
                memory_used_bytes=0,
                processes=1,
            ),
            GpuInfo(index=1, name="Test GPU", uuid="GPU-test-1", memory_total_bytes=16000 * MIB, memory_used_bytes=0),
        ]
    )
    ensure_workers(backend, master, 1)
    scaler_cfg = load_config_text(EXAMPLE_THESIS_YAML + "opsflow:\n  gpu: true\n", "gpu.yaml")
    decision = Decision(at=0, action=Action.SCALE_OUT, current=1, target=3, reason="test: two more")
    result = execute(decision, Observation(at=0, active_workers=1), backend, scaler_cfg, gpus=inventory)
    try:
        [ref] = result.started  # GPU 0 runs a foreign process; GPU 1 is taken by the first new worker
        assert ref.gpu == "GPU-test-1"
        assert result.error is not None and "no free GPU for a new worker" in result.error, result
        assert "taken: GPU-test-1 by " + ref.id in result.error and "no CPU worker is started" in result.error
        assert len(backend.workers()) == 2  # no CPU worker in place of the missing GPU
        raw = httpx.get(f"{cfg.spark_master_ui_url}/json/", timeout=5).json()
        [entry] = [w for w in raw["workers"] if w["host"] == ref.host and w["state"] == "ALIVE"]
        assert entry["resources"]["gpu"]["addresses"] == ["0"]
        proc = running_process(cfg.home, ref.id)
        assert proc is not None and proc.environ()["CUDA_VISIBLE_DEVICES"] == "GPU-test-1"
        opts = proc.environ()["SPARK_WORKER_OPTS"]  # Listing 6.11's worker options
        assert "-Dspark.worker.resource.gpu.amount=1" in opts and "spark.worker.resource.gpu.discoveryScript=" in opts
        before = backend.workers()
        with pytest.raises(BackendError, match="GPU-test-1 is already pinned"):
            backend.start_worker(gpu="GPU-test-1")
        assert backend.workers() == before
        # An application with Listing C.5's GPU amounts: its executor can only go to the pinned worker, and each
        # task is handed that worker's one GPU and sees only it.
        seen = Job(cfg, tmp_path, GPU_TASKS, conf=GPU_APP_CONF).wait(timeout_s=180)
        assert seen == [[["0"], "GPU-test-1"], [["0"], "GPU-test-1"]], seen
    finally:
        for started in result.started:
            backend.stop_worker(started, graceful=True)
    assert [r.id for r in backend.workers()] == ["spark-worker-0"]


# --- metrics -----------------------------------------------------------------------------------------------------
@pytest.mark.stack
def test_observe_reads_cpu_utilization_during_a_cpu_bound_job(
    backend: LocalProcessBackend, master: SparkMaster, prometheus: PrometheusComponent, cfg: StackConfig, tmp_path: Path
) -> None:
    ensure_workers(backend, master, 1)
    api = PrometheusAPI(cfg.prometheus_url)
    queries = {**DEFAULT_QUERIES, **MASTER_QUERIES}

    def idle_reads_zero() -> bool:
        cpu = observe(master, api, queries, backend, time.time()).metrics["cpu"]
        return cpu is not None and cpu < 0.1

    # Idle, with no executor series in this Prometheus yet: a value near 0, not missing data.
    assert wait_until(idle_reads_zero, timeout_s=60, every_s=2)
    # Python code on the executor: its CPU is spent in PySpark's Python workers, not in the executor JVM.
    job = Job(cfg, tmp_path, BUSY_JOB, "4", "25")
    try:
        seen: list[float] = []

        def busy_enough() -> bool:
            obs = observe(master, api, queries, backend, time.time())
            if obs.metrics.get("cpu") is not None:
                seen.append(obs.metrics["cpu"] or 0.0)
            return (obs.metrics.get("cpu") or 0.0) > 0.3 and obs.running_apps == 1

        assert wait_until(busy_enough, timeout_s=150, every_s=2), f"cpu utilisation seen: {seen}"
        obs = observe(master, api, queries, backend, time.time())
        assert obs.problems == []
        assert obs.active_workers == 1 and [r.id for r in obs.workers] == ["spark-worker-0"]
        assert obs.metrics["cores"] == 1.0 and obs.cores_free == 0
        assert obs.waiting_apps == 0 and obs.cores_wanted == 0
    finally:
        job.stop()


@pytest.mark.stack
def test_observe_holds_with_a_problem_when_prometheus_is_stopped(
    backend: LocalProcessBackend, master: SparkMaster, prometheus: PrometheusComponent, cfg: StackConfig
) -> None:
    api = PrometheusAPI(cfg.prometheus_url, timeout_s=2.0)
    queries = {**DEFAULT_QUERIES, **MASTER_QUERIES}
    assert observe(master, api, queries, backend, time.time()).metrics["cpu"] is not None
    prometheus.stop()
    obs = observe(master, api, queries, backend, time.time())
    assert obs.metrics["cpu"] is None
    assert any(p.startswith("cpu: cannot reach Prometheus") for p in obs.problems), obs.problems
    assert obs.metrics["cores"] is not None  # the master-only source still answers
    assert obs.active_workers == len(master.state().alive_workers) >= 1


@pytest.mark.stack
def test_observe_with_the_master_unreachable_reports_zero_active_workers(
    backend: LocalProcessBackend, cfg: StackConfig
) -> None:
    nowhere = SparkMaster(f"http://127.0.0.1:{cfg.spark_master_ui_port + 400}", timeout_s=1.0)
    obs = observe(nowhere, None, {**DEFAULT_QUERIES, **MASTER_QUERIES}, backend, 123.0)
    assert obs.at == 123.0 and obs.active_workers == 0
    assert obs.metrics == {"cpu": None, "cores": None}
    assert obs.problems[0].startswith("Spark master unreachable")
    assert obs.workers  # the backend still lists what it runs


# --- docker backend (podman's API; busybox + the host's JDK and pyspark bind-mounted read-only) -----------------
@pytest.mark.stack
def test_docker_worker_registers_and_is_decommissioned_before_it_stops(
    docker_backend: DockerBackend, master: SparkMaster, cfg: StackConfig
) -> None:
    ref = docker_backend.start_worker()
    assert ref.host == "127.0.0.102" and ref.id == f"{DOCKER_PREFIX}-100"
    assert ref.host in alive_hosts(master.state())
    assert [r.id for r in docker_backend.workers()] == [ref.id]
    states: list[str] = []

    def watch() -> None:
        entry = live_worker(master.state(), ref.host)
        states.append(entry.state if entry else "gone")

    stopper = threading.Thread(target=docker_backend.stop_worker, args=(ref, True))
    stopper.start()
    while stopper.is_alive():
        watch()
        time.sleep(0.2)
    stopper.join()
    assert "DECOMMISSIONED" in states, states
    assert docker_backend.workers() == []
    with contextlib.closing(DockerEngineClient(cfg.docker_host).client()) as client:
        assert client.containers.list(all=True, filters={"label": f"{LABEL_SCOPE}={DOCKER_PREFIX}"}) == []
    assert live_worker(wait_for_state(master, lambda s: live_worker(s, ref.host) is None), ref.host) is None


@pytest.mark.stack
@RERUN_ONCE
def test_docker_graceful_stop_during_a_job_loses_no_task(
    docker_backend: DockerBackend, backend: LocalProcessBackend, master: SparkMaster, cfg: StackConfig, tmp_path: Path
) -> None:
    ensure_workers(backend, master, 1)
    victim = docker_backend.start_worker()
    engine = DockerEngineClient(cfg.docker_host)

    def victim_runs_tasks() -> bool:
        if [a.cores for a in master.state().activeapps] != [2]:
            return False
        with contextlib.closing(engine.client()) as client:
            out = client.containers.get(victim.id).exec_run(["sh", "-c", "cat /tmp/spark-work/*/*/stderr"]).output
        return b"Got assigned task" in (out or b"")

    decommission_during_job(cfg, tmp_path, master, docker_backend, victim, victim_runs_tasks)
    assert docker_backend.workers() == []


@pytest.mark.stack
def test_a_docker_config_bound_to_blocks_starts_workers_on_the_blocks_engine(
    cfg: StackConfig, spark: SparkComponent, podman: PodmanComponent, master: SparkMaster
) -> None:
    # The way the flow and the API build it: the YAML, the Blocks' URLs bound over it, then backend_for. The
    # worker's environment says another DOCKER_HOST: the Block's engine is used, that variable left as it is.
    prefix = f"{DOCKER_PREFIX}-cfg"
    text = f"""
general: {{interval_seconds: 5, cooldown_period_seconds: 5, recurrence_factor: 2, prometheus_url: "http://x"}}
metrics: {{cores: {{query: "spark:cores", target_utilization: 0.5, thresholds: {{min: 0.2, max: 0.6}}}}}}
worker: {{service_name: {prefix}, thresholds: {{min: 1, max: 3}}}}
opsflow: {{backend: docker, worker_image: "{BUSYBOX_IMAGE}", local_stack: true}}
"""
    endpoints = Endpoints(
        prometheus_url=cfg.prometheus_url,
        spark_master_url=cfg.spark_master_url,
        spark_master_ui_url=cfg.spark_master_ui_url,
        docker_host=cfg.docker_host,
    )
    scaler_cfg = bind_endpoints(load_config_text(text), endpoints)
    env = {**child_env(cfg), "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    backend = backend_for(scaler_cfg, home=cfg.home, env=env, conf_dir=spark.conf_dir)
    assert isinstance(backend, DockerBackend) and backend.engine.base_url == cfg.docker_host
    ref = backend.start_worker()
    try:
        assert ref.id == f"{prefix}-100" and ref.host in alive_hosts(master.state())
        assert [r.id for r in backend.workers()] == [ref.id]
    finally:
        backend.stop_worker(ref, graceful=False)
    assert backend.workers() == []
    assert env["DOCKER_HOST"] == "unix:///nonexistent/docker.sock"


# --- swarm backend: contract test against recorded Engine API calls ----------------------------------------------
def replicas_of(spec: dict[str, Any]) -> int:
    """Replicas of a service spec as the Engine reads it: Go's JSON decoding matches keys case-insensitively, and
    the SDK's ServiceMode sends ``{"replicated": {"Replicas": n}}``."""
    modes = {key.lower(): value for key, value in spec["Mode"].items()}
    return int(modes["replicated"]["Replicas"])


class SwarmStandIn(BaseHTTPRequestHandler):
    """Answers the Engine API calls of the SDK's services.get / service.scale / api.tasks, recording each."""

    calls: list[dict[str, Any]]
    replicas: int
    mode: str

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _service(self) -> dict[str, Any]:
        mode = {"Replicated": {"Replicas": self.replicas}} if self.mode == "replicated" else {"Global": {}}
        spec = {
            "Name": "spark-worker",
            "Mode": mode,
            "TaskTemplate": {"ContainerSpec": {"Image": "spark-worker:4.3", "StopSignal": "SIGPWR"}},
        }
        return {"ID": "svc123", "Version": {"Index": 41}, "Spec": spec}

    def do_GET(self) -> None:
        url = urlparse(self.path)
        type(self).calls.append({"method": "GET", "path": url.path, "query": parse_qs(url.query)})
        if url.path.endswith("/services/spark-worker") or url.path.endswith("/services/svc123"):
            self._reply(200, self._service())
        elif url.path.endswith("/tasks"):
            tasks = [
                {"ID": f"task{i}", "CreatedAt": "2026-11-23T13:26:17.123456789Z",
                 "NetworksAttachments": [{"Addresses": [f"10.0.1.{i + 10}/24"]}]}
                for i in range(self.replicas)
            ]  # fmt: skip
            self._reply(200, tasks)
        else:
            self._reply(404, {"message": f"no such path {url.path}"})

    def do_POST(self) -> None:
        url = urlparse(self.path)
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        type(self).calls.append({"method": "POST", "path": url.path, "query": parse_qs(url.query), "body": body})
        if url.path.endswith("/services/svc123/update"):
            type(self).replicas = replicas_of(body)
            self._reply(200, {"Warnings": None})
        else:
            self._reply(404, {"message": f"no such path {url.path}"})

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def swarm_api() -> Iterator[tuple[type[SwarmStandIn], docker.DockerClient]]:
    handler = type("Handler", (SwarmStandIn,), {"calls": [], "replicas": 2, "mode": "replicated"})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    client = docker.DockerClient(base_url=f"tcp://127.0.0.1:{server.server_address[1]}", version="1.41")
    yield handler, client
    client.close()
    server.shutdown()
    server.server_close()


def test_swarm_backend_scales_the_service_through_the_real_sdk(
    swarm_api: tuple[type[SwarmStandIn], docker.DockerClient],
) -> None:
    api, client = swarm_api
    backend = SwarmServiceBackend(client, "spark-worker")
    assert backend.replicas() == 2
    refs = backend.workers()
    assert [(r.id, r.host) for r in refs] == [("task0", "10.0.1.10"), ("task1", "10.0.1.11")]
    tasks_call = [c for c in api.calls if c["path"].endswith("/tasks")][-1]
    assert json.loads(tasks_call["query"]["filters"][0]) == {"service": ["spark-worker"], "desired-state": ["running"]}

    backend.start_worker()
    backend.stop_worker(refs[0], graceful=False)
    updates = [c for c in api.calls if c["method"] == "POST"]
    assert [u["path"] for u in updates] == ["/v1.41/services/svc123/update"] * 2
    assert [u["query"]["version"] for u in updates] == [["41"], ["41"]]
    assert [replicas_of(u["body"]) for u in updates] == [3, 2]
    # fetch_current_spec: the rest of the service is sent back unchanged.
    assert all(u["body"]["TaskTemplate"]["ContainerSpec"]["Image"] == "spark-worker:4.3" for u in updates)
    assert backend.replicas() == 2


def test_swarm_backend_refuses_gpus_and_global_services(
    swarm_api: tuple[type[SwarmStandIn], docker.DockerClient],
) -> None:
    api, client = swarm_api
    backend = SwarmServiceBackend(client, "spark-worker")
    with pytest.raises(BackendError, match="gpu"):
        backend.start_worker(gpu="GPU-1")
    api.mode = "global"
    with pytest.raises(BackendError, match="not replicated"):
        backend.start_worker()
    assert [c for c in api.calls if c["method"] == "POST"] == []
