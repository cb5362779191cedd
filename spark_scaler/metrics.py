"""Monitor step of the auto-scaler: one :class:`~spark_scaler.models.Observation` per tick.

Sources, named by the *query* of each configured metric (the thesis's ``metrics: name → query``):

- PromQL (anything else): one Prometheus instant query; exactly one sample → its value. No sample, several
  samples, NaN/±Inf, a PromQL error or Prometheus down → None and a line in ``problems`` (the core then holds:
  it never scales on missing data).
- ``spark:cores`` (:data:`SPARK_CORES_QUERY`): cores used / cores offered by the ALIVE workers, from the Spark
  master's ``/json/`` alone (no Prometheus needed).
- ``nvml:gpu`` (:data:`NVML_GPU_QUERY`): mean GPU utilisation (nvidia-ml-py) of the GPUs our workers are
  pinned to, or of every GPU of the host when none is pinned.

From the master's ``/json/`` always: ALIVE workers (the active count: never our own bookkeeping), running and
waiting applications, and the cores they want against the cores free (:func:`cores_demand`). Master down →
``active_workers=0`` and the problem "Spark master unreachable", so the core holds. :func:`observe` never raises.

Example:
    >>> metric_value([], "q")
    (None, "metric query 'q' returned no sample")
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Protocol

from opsflow.adapters.prometheus import PrometheusAPI, PrometheusError, Sample
from opsflow.adapters.spark import MasterState, SparkError, SparkMaster
from spark_scaler.backends.base import WorkerBackend
from spark_scaler.gpus import NvmlGpuUtilization
from spark_scaler.models import Observation, WorkerRef

#: prometheus-process-exporter group names (``groupname`` label of ``namedprocess_namegroup_*``) of the Spark
#: executor JVMs and of PySpark's Python daemon and the workers it forks. The local stack's process-exporter
#: config groups the processes under these names; the cpu query reads them.
GROUP_EXECUTOR = "spark-executor"
GROUP_PYTHON = "spark-python"

SPARK_CORES_QUERY = "spark:cores"
NVML_GPU_QUERY = "nvml:gpu"
#: The scrape job of prometheus-process-exporter in the local stack's prometheus.yml.
EXPORTER_JOB = "process"
#: The rate window: the thesis's 30 s (six scrapes at the local stack's 5 s interval).
RATE_WINDOW = "30s"


def cpu_query(cores_per_worker: int = 1, window: str = RATE_WINDOW) -> str:
    """PromQL: CPU seconds per second of this stack's executors over the cores of the ALIVE workers (0..1).

    ``namedprocess_namegroup_cpu_seconds_total`` (prometheus-process-exporter, user + system) of the executor
    JVMs and their PySpark Python workers, as a rate over ``window``, divided by
    ``metrics_master_aliveWorkers_Value`` (the master's servlet) times the cores each worker offers. It can pass
    1 briefly while a DECOMMISSIONED worker's executor still finishes its tasks (its CPU counts, its cores no
    longer do). No executor yet gives 0 (while the exporter is
    up); 0 ALIVE workers gives +Inf/NaN, read as missing.

    >>> "aliveWorkers" in cpu_query()
    True
    """
    if cores_per_worker < 1:
        raise ValueError(f"cores_per_worker: must be at least 1, got {cores_per_worker}")
    groups = f"{GROUP_EXECUTOR}|{GROUP_PYTHON}"
    rate = f'sum(rate(namedprocess_namegroup_cpu_seconds_total{{groupname=~"{groups}"}}[{window}]))'
    # No executor has run since Prometheus started → no series → 0, but only while the exporter is scraped: an
    # exporter that is down leaves the query empty, i.e. missing data, never a reason to scale in.
    used = f'({rate} or on() (0 * sum(up{{job="{EXPORTER_JOB}"}} == 1)))'
    cores = 'scalar(max(metrics_master_aliveWorkers_Value{job="spark-master"}))'
    return f"{used} / ({cores} * {cores_per_worker})" if cores_per_worker != 1 else f"{used} / {cores}"


def default_queries(cores_per_worker: int = 1) -> dict[str, str]:
    """The recommended PromQL metrics for the local stack's Prometheus (see :data:`DEFAULT_QUERIES`)."""
    return {
        # Cluster CPU utilisation per core of the ALIVE workers, 0..1: the thesis's "cpu" metric, normalised
        # so that the HPA formula ceil(active * util / target) gets a per-worker average as Kubernetes does.
        "cpu": cpu_query(cores_per_worker),
    }


#: name → PromQL of the recommended metrics (workers of one core each, as the local stack starts them).
DEFAULT_QUERIES: dict[str, str] = default_queries()
#: Metrics read without Prometheus: the share of the ALIVE workers' cores granted to applications.
MASTER_QUERIES: dict[str, str] = {"cores": SPARK_CORES_QUERY}
#: GPU utilisation of the pinned workers' GPUs, where there are GPUs.
GPU_QUERIES: dict[str, str] = {"gpu": NVML_GPU_QUERY}


class GpuUtilizationSource(Protocol):
    def utilization(self, uuids: Sequence[str] | None = None) -> dict[str, float | None]: ...


def metric_value(samples: Sequence[Sample], query: str) -> tuple[float | None, str | None]:
    """The value of a query that must give one finite sample, else (None, why) (pure).

    >>> metric_value([Sample(value=0.5)], "q")
    (0.5, None)
    """
    if not samples:
        return None, f"metric query {query!r} returned no sample"
    if len(samples) > 1:
        return None, f"metric query {query!r} returned {len(samples)} series; it must aggregate to one"
    value = samples[0].value
    if not math.isfinite(value):
        return None, f"metric query {query!r} returned {value} (no ALIVE worker?)"
    return value, None


def cores_demand(state: MasterState) -> tuple[int, int]:
    """(cores wanted, cores free) of a master's state (pure).

    ``cores_free``: free cores of the ALIVE workers. ``cores_wanted``: cores the applications still ask for and
    do not hold. The master's ``/json/`` gives per application only the cores *granted* (``cores``), not
    ``spark.cores.max`` nor its pending tasks, so: an application holding no core (WAITING, or RUNNING with all
    its executors lost) wants one worker's cores (the cores of the largest ALIVE worker, at least 1: the least
    that lets it run); a RUNNING application holding cores wants none beyond them, because the standalone master
    grants every free core to it up to its cap, so free cores beside it mean it has what it asked for.

    >>> from opsflow.adapters.spark import AppInfo, WorkerInfo
    >>> cores_demand(MasterState(status="ALIVE", workers=[WorkerInfo(id="w", host="h", state="ALIVE", cores=2)],
    ...     activeapps=[AppInfo(id="a", state="WAITING")]))
    (2, 0)
    """
    alive = state.alive_workers
    free = sum(max(0, w.coresfree) for w in alive)
    per_app = max([w.cores for w in alive] + [1])
    wanted = sum(per_app for a in state.activeapps if a.state in ("WAITING", "RUNNING") and a.cores == 0)
    return wanted, free


def cores_utilization(state: MasterState) -> tuple[float | None, str | None]:
    """Used / total cores of the ALIVE workers (the ``spark:cores`` metric); None without ALIVE cores (pure).

    >>> from opsflow.adapters.spark import WorkerInfo
    >>> cores_utilization(MasterState(status="ALIVE", workers=[
    ...     WorkerInfo(id="w", host="h", state="ALIVE", cores=4, coresused=1)]))
    (0.25, None)
    """
    total = state.total_cores
    if total <= 0:
        return None, "metric spark:cores: no ALIVE worker offers cores"
    return state.used_cores / total, None


def gpu_mean(values: Mapping[str, float | None]) -> tuple[float | None, str | None]:
    """Mean of the readable GPU utilisations (pure).

    >>> gpu_mean({"a": 0.5, "b": None, "c": 1.0})
    (0.75, None)
    """
    readable = [v for v in values.values() if v is not None]
    if not values:
        return None, "metric nvml:gpu: no GPU on this host"
    if not readable:
        return None, f"metric nvml:gpu: no GPU utilisation readable ({', '.join(sorted(values))})"
    return sum(readable) / len(readable), None


def build_observation(
    now: float,
    state: MasterState | None,
    metrics: Mapping[str, float | None],
    workers: Sequence[WorkerRef],
    problems: Sequence[str],
) -> Observation:
    """The observation of one tick from what was read (pure); ``state`` None means the master was unreachable.

    >>> build_observation(0.0, None, {"cpu": 0.7}, [], ["Spark master unreachable: refused"]).active_workers
    0
    """
    if state is None:
        return Observation(at=now, active_workers=0, metrics=dict(metrics), workers=list(workers),
                           problems=list(problems))  # fmt: skip
    wanted, free = cores_demand(state)
    return Observation(
        at=now,
        active_workers=len(state.alive_workers),
        metrics=dict(metrics),
        running_apps=len(state.running_apps),
        waiting_apps=len(state.waiting_apps),
        cores_wanted=wanted,
        cores_free=free,
        workers=list(workers),
        problems=list(problems),
    )


def observe(
    master: SparkMaster,
    prometheus: PrometheusAPI | None,
    queries: Mapping[str, str],
    backend: WorkerBackend | None,
    now: float,
    *,
    gpus: GpuUtilizationSource | None = None,
) -> Observation:
    """Read the master, every metric of ``queries`` and the backend's workers; never raises.

    Example (nothing listens on port 1: every source is missing, and each says why):
        >>> obs = observe(SparkMaster("http://127.0.0.1:1", timeout_s=1), PrometheusAPI("http://127.0.0.1:1"),
        ...               {**DEFAULT_QUERIES, **MASTER_QUERIES}, None, now=0.0)
        >>> obs.active_workers, obs.metrics, [p.split(":")[0] for p in obs.problems]
        (0, {'cpu': None, 'cores': None}, ['Spark master unreachable', 'cpu', 'cores'])
    """
    problems: list[str] = []
    state: MasterState | None
    try:
        state = master.state()
    except SparkError as exc:
        state = None
        problems.append(f"Spark master unreachable: {exc}")
    workers: list[WorkerRef] = []
    if backend is not None:
        try:
            workers = backend.workers()
        except Exception as exc:  # a tick must go on: the backend's failure is reported, never raised
            problems.append(f"worker backend {type(backend).__name__} failed to list workers: {exc}")
    metrics: dict[str, float | None] = {}
    for name, query in queries.items():
        value, why = _read_metric(query, state, prometheus, workers, gpus)
        metrics[name] = value
        if why:
            problems.append(f"{name}: {why}")
    return build_observation(now, state, metrics, workers, problems)


def _read_metric(
    query: str,
    state: MasterState | None,
    prometheus: PrometheusAPI | None,
    workers: Sequence[WorkerRef],
    gpus: GpuUtilizationSource | None,
) -> tuple[float | None, str | None]:
    if query == SPARK_CORES_QUERY:
        if state is None:
            return None, "metric spark:cores: the Spark master is unreachable"
        return cores_utilization(state)
    if query == NVML_GPU_QUERY:
        pinned = sorted({w.gpu for w in workers if w.gpu})
        source = gpus if gpus is not None else NvmlGpuUtilization()
        return gpu_mean(source.utilization(pinned or None))
    if prometheus is None:
        return None, f"metric query {query!r} needs Prometheus and none is configured"
    try:
        samples = prometheus.query(query)
    except PrometheusError as exc:
        return None, str(exc)
    return metric_value(samples, query)
