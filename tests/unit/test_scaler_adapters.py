"""The pure parts of the auto-scaler's adapters: metric reading, Spark demand, worker bookkeeping, GPU choice."""

from __future__ import annotations

import json
import math
import signal

import pytest

from opsflow.adapters.prometheus import Sample
from opsflow.adapters.spark import AppInfo, MasterState, WorkerInfo
from opsflow.gpu import MIB, GpuInfo
from spark_scaler.backends import BackendError, WorkerBackend, live_worker, next_index
from spark_scaler.backends.base import (
    DECOMMISSIONING_MARKER,
    GPU_ENV_VAR,
    REGISTERED_MARKER,
    SIGPWR_MASK,
    catches_sigpwr,
    ensure_gpu_free,
    executor_missed_decommission,
    gpu_discovery_script,
    gpu_env,
    gpu_worker_opts,
)
from spark_scaler.backends.docker import EXECUTOR_PWR_SCRIPT, DockerBackend, parse_docker_time
from spark_scaler.backends.local import LocalProcessBackend, worker_index
from spark_scaler.backends.swarm import SwarmServiceBackend, task_address
from spark_scaler.gpus import GpuInventory, pick_gpu, select_free_gpus
from spark_scaler.metrics import (
    DEFAULT_QUERIES,
    GROUP_EXECUTOR,
    MASTER_QUERIES,
    NVML_GPU_QUERY,
    SPARK_CORES_QUERY,
    build_observation,
    cores_demand,
    cores_utilization,
    cpu_query,
    gpu_mean,
    metric_value,
)
from spark_scaler.models import WorkerRef


def worker(host: str, state: str = "ALIVE", cores: int = 1, used: int = 0, beat: int = 0) -> WorkerInfo:
    return WorkerInfo(
        id=f"worker-{host}-{beat}", host=host, state=state, cores=cores, coresused=used, coresfree=cores - used,
        lastheartbeat=beat,
    )  # fmt: skip


def app(state: str, cores: int = 0, name: str = "a") -> AppInfo:
    return AppInfo(id=f"app-{name}", state=state, cores=cores)


def gpu(index: int, *, used_mb: int = 0, procs: int = 0, total_mb: int = 16000) -> GpuInfo:
    return GpuInfo(
        index=index, name="Test", uuid=f"GPU-{index}", memory_total_bytes=total_mb * MIB,
        memory_used_bytes=used_mb * MIB, processes=procs,
    )  # fmt: skip


# --- metric values -----------------------------------------------------------------------------------------------
def test_one_sample_gives_its_value() -> None:
    assert metric_value([Sample(value=0.42)], "q") == (0.42, None)


@pytest.mark.parametrize(
    ("samples", "why"),
    [
        ([], "returned no sample"),
        ([Sample(value=1.0), Sample(value=2.0)], "returned 2 series; it must aggregate to one"),
        ([Sample(value=math.nan)], "returned nan"),
        ([Sample(value=math.inf)], "returned inf"),
    ],
)
def test_missing_or_ambiguous_samples_give_none_with_the_reason(samples: list[Sample], why: str) -> None:
    value, problem = metric_value(samples, "sum(x)")
    assert value is None
    assert problem is not None and "'sum(x)'" in problem and why in problem


def test_cpu_query_uses_the_stack_executor_group_over_alive_worker_cores() -> None:
    query = cpu_query()
    assert f'groupname=~"{GROUP_EXECUTOR}|' in query
    assert "rate(namedprocess_namegroup_cpu_seconds_total" in query and "[30s]" in query
    assert query.endswith('/ scalar(max(metrics_master_aliveWorkers_Value{job="spark-master"}))')
    assert 'or on() (0 * sum(up{job="process"} == 1))' in query  # idle is 0 while the exporter is up
    assert cpu_query(4).endswith("* 4)")
    assert dict(DEFAULT_QUERIES) == {"cpu": query}
    assert dict(MASTER_QUERIES) == {"cores": SPARK_CORES_QUERY}


def test_cpu_query_rejects_a_worker_without_cores() -> None:
    with pytest.raises(ValueError, match="cores_per_worker"):
        cpu_query(0)


# --- Spark master demand ------------------------------------------------------------------------------------------
def test_waiting_app_wants_one_workers_cores_and_decommissioned_cores_are_not_free() -> None:
    state = MasterState(
        status="ALIVE",
        workers=[worker("h2", cores=2, used=2), worker("h3", cores=4, used=1), worker("h4", "DECOMMISSIONED", 8)],
        activeapps=[app("RUNNING", cores=3, name="r"), app("WAITING", name="w")],
    )
    assert cores_demand(state) == (4, 3)


def test_running_app_without_cores_counts_as_demand_and_no_worker_means_one_core() -> None:
    state = MasterState(status="ALIVE", workers=[], activeapps=[app("RUNNING", cores=0), app("WAITING", name="b")])
    assert cores_demand(state) == (2, 0)


def test_running_app_holding_cores_wants_nothing_more() -> None:
    state = MasterState(status="ALIVE", workers=[worker("h2", cores=2, used=1)], activeapps=[app("RUNNING", 1)])
    assert cores_demand(state) == (0, 1)


def test_cores_utilization_counts_alive_workers_only() -> None:
    state = MasterState(status="ALIVE", workers=[worker("h2", used=1), worker("h3"), worker("h4", "DEAD", 4, 4)])
    assert cores_utilization(state) == (0.5, None)
    value, why = cores_utilization(MasterState(status="ALIVE", workers=[worker("h2", "DECOMMISSIONED")]))
    assert value is None and why is not None and "no ALIVE worker" in why


def test_gpu_mean_ignores_unreadable_gpus_and_reports_none_without_any() -> None:
    assert gpu_mean({"a": 0.2, "b": 0.4, "c": None}) == (pytest.approx(0.3), None)
    assert gpu_mean({})[0] is None
    value, why = gpu_mean({"GPU-1": None})
    assert value is None and why is not None and "GPU-1" in why
    assert NVML_GPU_QUERY == "nvml:gpu"


def test_observation_from_the_master_state() -> None:
    state = MasterState(
        status="ALIVE",
        workers=[worker("h2", used=1), worker("h3", used=1), worker("h4", "DECOMMISSIONED", used=1)],
        activeapps=[app("RUNNING", 2), app("WAITING", name="w")],
    )
    refs = [WorkerRef(id="spark-worker-0", host="h2")]
    obs = build_observation(10.0, state, {"cpu": 0.9, "cores": 1.0}, refs, [])
    assert (obs.at, obs.active_workers, obs.running_apps, obs.waiting_apps) == (10.0, 2, 1, 1)
    assert (obs.cores_wanted, obs.cores_free) == (1, 0)
    assert obs.workers == refs and obs.problems == []


def test_master_down_gives_zero_active_workers_and_keeps_the_problem() -> None:
    obs = build_observation(5.0, None, {"cpu": None}, [], ["Spark master unreachable: connection refused"])
    assert obs.active_workers == 0 and obs.running_apps == 0
    assert obs.metrics == {"cpu": None}
    assert obs.problems == ["Spark master unreachable: connection refused"]


# --- worker bookkeeping ------------------------------------------------------------------------------------------
def test_next_index_goes_above_the_running_ones_then_wraps_to_the_lowest_free() -> None:
    assert next_index([]) == 0
    assert next_index([0, 1]) == 2
    assert next_index([1]) == 2  # not the just-freed 0
    assert next_index([3], first=100) == 100  # indices below ``first`` belong to someone else
    assert next_index([100, 101], first=100) == 102
    assert next_index([0, 4], limit=5) == 1


def test_next_index_when_every_address_is_taken() -> None:
    with pytest.raises(BackendError, match=r"no free worker index in 0\.\.2"):
        next_index([0, 1, 2], limit=3)


def test_live_worker_skips_dead_entries_and_takes_the_latest_heartbeat() -> None:
    state = MasterState(
        status="ALIVE",
        workers=[worker("h3", "DEAD", beat=9), worker("h3", "ALIVE", beat=5), worker("h3", "DECOMMISSIONED", beat=7)],
    )
    entry = live_worker(state, "h3")
    assert entry is not None and entry.state == "DECOMMISSIONED"
    assert live_worker(state, "h9") is None


def test_sigpwr_handler_is_read_from_sigcgt() -> None:
    assert SIGPWR_MASK == 1 << (signal.SIGPWR - 1)
    assert catches_sigpwr("Name:\tjava\nSigCgt:\t2000000121005ccf\n")  # a worker JVM
    assert not catches_sigpwr("SigCgt:\t0000000101005ccf\n")  # an executor JVM before its handler is set
    assert not catches_sigpwr("Name:\tjava\n")
    assert not catches_sigpwr("SigCgt:\tzz\n")
    assert f"{SIGPWR_MASK:#x}" in EXECUTOR_PWR_SCRIPT


def test_only_an_executor_that_registered_and_was_never_told_is_signalled() -> None:
    starting = "INFO CoarseGrainedExecutorBackend: Connecting to driver: spark://CoarseGrainedScheduler@127.0.0.1:1"
    registered = f"{starting}\nINFO CoarseGrainedExecutorBackend: {REGISTERED_MARKER}\n"
    told = f"{registered}INFO CoarseGrainedExecutorBackend: {DECOMMISSIONING_MARKER} 0.\n"
    # Not registered yet: the driver would refuse and the executor would die. Told already: the same.
    assert not executor_missed_decommission(starting)
    assert executor_missed_decommission(registered)
    assert not executor_missed_decommission(told)
    assert not executor_missed_decommission("")  # a log at WARN level: rely on Spark alone
    assert REGISTERED_MARKER in EXECUTOR_PWR_SCRIPT and DECOMMISSIONING_MARKER in EXECUTOR_PWR_SCRIPT


def test_worker_ids_of_the_local_backend() -> None:
    assert worker_index("spark-worker-12") == 12
    with pytest.raises(BackendError, match="'opsflow-spark-worker-100' is not a local worker"):
        worker_index("opsflow-spark-worker-100")


def test_docker_and_swarm_timestamps_and_addresses() -> None:
    assert parse_docker_time("2026-11-23T13:26:17.123456789Z") == pytest.approx(1795440377.123456)
    assert parse_docker_time("2026-11-23T13:26:17+00:00") == 1795440377.0
    assert parse_docker_time("not a time") == 0.0
    assert task_address({"NetworksAttachments": [{"Addresses": ["10.0.0.5/24"]}]}) == "10.0.0.5"
    assert task_address({}) == ""


def test_backends_implement_the_interface() -> None:
    for cls in (LocalProcessBackend, DockerBackend, SwarmServiceBackend):
        assert all(callable(getattr(cls, name)) for name in ("workers", "start_worker", "stop_worker"))
    assert (LocalProcessBackend.graceful_scale_in, DockerBackend.graceful_scale_in) == (True, True)
    assert SwarmServiceBackend.graceful_scale_in is False
    assert not isinstance(object(), WorkerBackend)


# --- GPU pinning ---------------------------------------------------------------------------------------------------
def test_discovery_script_reports_one_gpu_at_device_zero() -> None:
    script = gpu_discovery_script("GPU-5f3e")
    assert script.startswith("#!/bin/sh\n")
    echoed = script.splitlines()[-1].removeprefix("echo ").strip("'")
    assert json.loads(echoed) == {"name": "gpu", "addresses": ["0"]}
    assert gpu_env("GPU-5f3e") == {
        "CUDA_VISIBLE_DEVICES": "GPU-5f3e", "NVIDIA_VISIBLE_DEVICES": "GPU-5f3e", GPU_ENV_VAR: "GPU-5f3e",
    }  # fmt: skip
    assert gpu_worker_opts("/h/gpu.sh").split() == [
        "-Dspark.worker.resource.gpu.amount=1",
        "-Dspark.worker.resource.gpu.discoveryScript=/h/gpu.sh",
    ]


@pytest.mark.parametrize("bad", ["", "GPU 1", "GPU-1'; rm -rf /", 'GPU"1'])
def test_discovery_script_refuses_what_is_not_a_gpu_id(bad: str) -> None:
    with pytest.raises(BackendError, match="gpu:"):
        gpu_discovery_script(bad)


def test_discovery_script_path_with_spaces_is_refused() -> None:
    with pytest.raises(BackendError, match="whitespace"):
        gpu_worker_opts("/my home/gpu.sh")


def test_a_gpu_pinned_to_a_worker_cannot_get_a_second_one() -> None:
    refs = [WorkerRef(id="spark-worker-1", host="127.0.0.3", gpu="GPU-1")]
    ensure_gpu_free(refs, None)
    ensure_gpu_free(refs, "GPU-2")
    with pytest.raises(BackendError, match="gpu: GPU-1 is already pinned to worker spark-worker-1"):
        ensure_gpu_free(refs, "GPU-1")


def test_free_means_no_foreign_process_little_memory_used_and_enough_left() -> None:
    gpus = [
        gpu(3),
        gpu(0, procs=1),  # someone else's process
        gpu(1, used_mb=2000),  # memory in use
        gpu(2, total_mb=800),  # too small
        gpu(4),
    ]
    assert [g.index for g in select_free_gpus(gpus)] == [3, 4]
    assert [g.index for g in select_free_gpus(gpus, used_by_us={"GPU-3"})] == [4]
    assert [g.index for g in select_free_gpus(gpus, max_used_memory_mb=4000)] == [1, 3, 4]
    assert [g.index for g in select_free_gpus(gpus, min_free_memory_mb=0)] == [2, 3, 4]
    with pytest.raises(ValueError, match="min_free_memory_mb"):
        select_free_gpus(gpus, min_free_memory_mb=-1)


def test_picking_gpus_for_workers_one_by_one_never_shares_a_gpu() -> None:
    inventory = GpuInventory([gpu(2), gpu(0), gpu(1, procs=1), gpu(3)])
    pinned: list[WorkerRef] = []
    while (choice := inventory.pick({r.gpu for r in pinned if r.gpu})) is not None:
        ensure_gpu_free(pinned, choice.uuid)
        pinned.append(WorkerRef(id=f"w{len(pinned)}", host="h", gpu=choice.uuid))
    assert [r.gpu for r in pinned] == ["GPU-0", "GPU-2", "GPU-3"]  # lowest index first; GPU-1 is foreign


def test_pick_gpu_is_pure_selection() -> None:
    gpus = [gpu(1), gpu(0)]
    assert pick_gpu(gpus, set()) == gpus[1]
    assert pick_gpu(gpus, {"GPU-0"}) == gpus[0]
    assert pick_gpu(gpus, {"GPU-0", "GPU-1"}) is None


def test_inventory_reads_a_callable_source_each_time() -> None:
    reads = iter([[gpu(0)], [gpu(0, procs=1)]])
    inventory = GpuInventory(lambda: next(reads))
    assert [g.uuid for g in inventory.free_gpus()] == ["GPU-0"]
    assert inventory.free_gpus() == []
