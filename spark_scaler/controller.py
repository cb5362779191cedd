"""One MAPE tick of the auto-scaler, wired: Monitor (adapters) → Analyse/Plan (pure `decide`) → Execute (backend).

The state (heat per metric, cooldown, recent targets, recent decisions) lives in a JSON file written atomically
*after* the backend acted, so a restarted controller continues where it stopped and a failed action leaves the
state as it was (the next tick retries; no bookkeeping drift). :func:`plan` is the same tick without the
Execute phase and without saving: what the next tick would do. Used by the Prefect flow, the Python API (and
through it the CLI) and the benchmark.

Nothing here knows the local stack: the caller passes the home, the environment, the Docker engine and the conf
dir, and binds the config to its Blocks first (:func:`spark_scaler.config.bind_endpoints`).

Example:
    >>> default_state_path(Path("examples/spark_scaler/autoscaler.yaml"), home=Path("/srv/opsflow"))
    PosixPath('/srv/opsflow/scaler/autoscaler.state.json')
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, ValidationError

from opsflow.adapters.prometheus import PrometheusAPI
from opsflow.adapters.spark import SparkMaster, java_home, spark_home
from opsflow.errors import OpsflowError
from opsflow.files import atomic_write_text
from opsflow.home import default_home
from spark_scaler.backends.base import BackendError, WorkerBackend
from spark_scaler.config import ScalerConfig
from spark_scaler.gpus import GpuInventory
from spark_scaler.metrics import observe
from spark_scaler.models import Action, Decision, Observation, ScalerState, WorkerRef
from spark_scaler.policy import decide
from spark_scaler.report import Section, SectionsView, decision_rows, observation_rows

if TYPE_CHECKING:
    from opsflow.adapters.docker_engine import DockerEngineClient


class StateError(OpsflowError, ValueError):
    """The state file is unreadable; the message names it."""


def default_state_path(config_path: Path, home: Path | None = None) -> Path:
    """Where a controller of this config keeps its state: ``<home>/scaler/<config stem>.state.json``, ``home``
    defaulting to :func:`opsflow.home.default_home` (``$OPSFLOW_HOME``)."""
    return (home or default_home()) / "scaler" / f"{Path(config_path).stem}.state.json"


def load_state(path: Path) -> ScalerState:
    """The persisted state, or a fresh one when the file does not exist yet.

    >>> load_state(Path("/nonexistent/state.json")).heat
    {}
    """
    try:
        return ScalerState.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return ScalerState()
    except (OSError, ValidationError) as exc:
        raise StateError(f"{path}: unreadable scaler state ({exc}); move it aside to start afresh") from exc


def save_state(path: Path, state: ScalerState) -> None:
    """Write the state atomically (a crash leaves the old file or the new one, never half of one)."""
    atomic_write_text(path, state.model_dump_json(indent=1))


class TickResult(SectionsView):
    """One tick: what was observed, what was decided, which workers were started or stopped, the failure if any."""

    observation: Observation
    decision: Decision
    started: list[WorkerRef] = Field(default_factory=list, description="Workers the backend started")
    stopped: list[WorkerRef] = Field(default_factory=list, description="Workers the backend stopped")
    error: str | None = Field(default=None, description="The backend's failure; the state was then not saved")

    def sections(self) -> list[Section]:
        done = [["started", ", ".join(w.id for w in self.started) or "—"],
                ["stopped", ", ".join(w.id for w in self.stopped) or "—"]]  # fmt: skip
        if self.error:
            done.append(["error", f"{self.error} (state kept; retried next tick)"])
        return [
            ("decision", ["field", "value"], decision_rows(self.decision)),
            ("done", ["field", "value"], done),
            ("observation", ["field", "value"], observation_rows(self.observation)),
        ]


def scale_in_victims(workers: list[WorkerRef], count: int) -> list[WorkerRef]:
    """Which workers to remove: the youngest first (the oldest hold the longest-lived executors and blocks).

    >>> [w.id for w in scale_in_victims([WorkerRef(id="a", host="h", started_at=1), WorkerRef(id="b", host="h",
    ...  started_at=2)], 1)]
    ['b']
    """
    return sorted(workers, key=lambda w: w.started_at, reverse=True)[: max(0, count)]


def next_gpu(backend: WorkerBackend, gpus: GpuInventory) -> str:
    """The UUID of the free GPU the next worker is pinned to (seed §8.2.3): never one of our workers' GPUs, never
    one a foreign process uses; raises :class:`BackendError` with the reason when none is free."""
    ours = {w.gpu: w.id for w in backend.workers() if w.gpu}
    gpu = gpus.pick(set(ours))
    if gpu is None:
        every = gpus.gpus()
        taken = ", ".join(f"{uuid} by {worker}" for uuid, worker in sorted(ours.items())) or "none by our workers"
        raise BackendError(
            f"no free GPU for a new worker ({len(every)} GPU(s) here; taken: {taken}; the others busy or too full): "
            "no CPU worker is started in its place"
        )
    return gpu.uuid


def execute(
    decision: Decision, obs: Observation, backend: WorkerBackend, cfg: ScalerConfig, gpus: GpuInventory | None = None
) -> TickResult:
    """Carry out a decision through the backend; stops at the first backend failure (reported, not raised).

    With ``opsflow.gpu: true`` each new worker is pinned to one free GPU of ``gpus`` (default: this host's,
    through nvidia-ml-py); no free GPU stops the scale-out there, as a failure (the state is kept, retried).
    """
    result = TickResult(observation=obs, decision=decision)
    try:
        if decision.action == Action.SCALE_OUT:
            inventory = (gpus or GpuInventory()) if cfg.opsflow.gpu else None
            for _ in range(decision.target - decision.current):
                gpu = next_gpu(backend, inventory) if inventory is not None else None
                result.started.append(backend.start_worker(gpu=gpu))
        elif decision.action == Action.SCALE_IN:
            graceful = cfg.opsflow.scale_in == "graceful"
            for ref in scale_in_victims(backend.workers(), decision.current - decision.target):
                backend.stop_worker(ref, graceful=graceful)
                result.stopped.append(ref)
    except Exception as exc:  # a backend failure: reported, and the state is not advanced (retried next tick)
        result.error = f"{type(exc).__name__}: {exc}"
    return result


def plan(
    cfg: ScalerConfig,
    backend: WorkerBackend | None,
    state: ScalerState,
    *,
    master: SparkMaster | None = None,
    prometheus: PrometheusAPI | None = None,
    now: float | None = None,
) -> tuple[Observation, Decision, ScalerState]:
    """Monitor → Analyse → Plan once, acting on nothing and saving nothing: the observation, the decision and
    the state a tick would save. Never raises for an unreachable source (the decision then holds).

    Example:
        >>> from spark_scaler.config import EXAMPLE_THESIS_YAML, load_config_text
        >>> cfg = load_config_text(EXAMPLE_THESIS_YAML.replace("localhost:9090", "127.0.0.1:1"))
        >>> obs, d, _ = plan(cfg, None, ScalerState(), master=SparkMaster("http://127.0.0.1:1", timeout_s=1))
        >>> d.action.value, d.reason.startswith("hold: missing data (Spark master unreachable")
        ('hold', True)
    """
    now = time.time() if now is None else now
    master = master or SparkMaster(ui_url=cfg.opsflow.spark_master_ui_url)
    prometheus = prometheus or PrometheusAPI(url=cfg.general.prometheus_url)
    queries = {name: metric.query for name, metric in cfg.metrics.items()}
    obs = observe(master, prometheus, queries, backend, now)
    decision, new_state = decide(obs, state, cfg, now)
    return obs, decision, new_state


def tick(
    cfg: ScalerConfig,
    backend: WorkerBackend,
    state_path: Path,
    *,
    master: SparkMaster | None = None,
    prometheus: PrometheusAPI | None = None,
    now: float | None = None,
    gpus: GpuInventory | None = None,
) -> TickResult:
    """Monitor → Analyse → Plan → Execute once; persists the new state only when the action succeeded."""
    obs, decision, new_state = plan(cfg, backend, load_state(state_path), master=master, prometheus=prometheus, now=now)
    result = execute(decision, obs, backend, cfg, gpus)
    if result.error is None:
        save_state(state_path, new_state)
    return result


def backend_for(
    cfg: ScalerConfig,
    *,
    home: Path,
    env: Mapping[str, str] | None = None,
    engine: DockerEngineClient | None = None,
    conf_dir: str | Path | None = None,
) -> WorkerBackend:
    """The worker backend ``cfg.opsflow.backend`` names, registering workers with ``cfg``'s Spark master.

    - ``home``: where the local backend's workers keep pid files and logs (the local stack's home).
    - ``env``: the environment of the workers and where ``SPARK_HOME``, ``JAVA_HOME``, ``SPARK_CONF_DIR`` and
      ``DOCKER_HOST`` are read (default: this process's).
    - ``engine``: the Docker engine of the docker and swarm backends; default ``cfg.opsflow.docker_host`` (a
      DockerEngine Block's ``base_url`` once bound), else ``DOCKER_HOST`` of ``env``, else Docker's own socket.
      ``DOCKER_HOST`` is only ever a default here, never overridden.
    - ``conf_dir``: ``SPARK_CONF_DIR`` of the workers; default ``env``'s, else (local) ``<home>/spark/conf``.

    Nothing is contacted here, except by the swarm backend's docker client (it asks the engine its API version).

    Example:
        >>> from spark_scaler.config import EXAMPLE_THESIS_YAML, load_config_text
        >>> backend_for(load_config_text(EXAMPLE_THESIS_YAML), home=Path("/nonexistent"), env={}).workers()
        []
    """
    env = dict(os.environ if env is None else env)
    p = cfg.opsflow
    conf = conf_dir or env.get("SPARK_CONF_DIR") or None
    if p.backend == "local":
        from spark_scaler.backends.local import LocalProcessBackend

        return LocalProcessBackend(
            home, p.master_url, p.spark_master_ui_url, env=env, conf_dir=conf, cores=p.cores_per_worker
        )
    # The docker SDK only for the backends that use it: a local tick (and its preview) stays quick to start.
    from opsflow.adapters.docker_engine import DEFAULT_DOCKER_HOST, DockerEngineClient

    engine = engine or DockerEngineClient(base_url=p.docker_host or env.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST)
    if p.backend == "swarm":
        from spark_scaler.backends.swarm import SwarmServiceBackend

        return SwarmServiceBackend(engine.client(), cfg.worker.service_name)
    from spark_scaler.backends.docker import DockerBackend, host_runtime_volumes
    from spark_scaler.backends.local import default_ui_base_port

    spark, java = spark_home(env), java_home(env)
    volumes = host_runtime_volumes(java, spark, conf) if p.host_runtime and java else None
    return DockerBackend(
        engine,
        p.worker_image,
        p.master_url,
        master_ui_url=p.spark_master_ui_url,
        spark_home=spark,
        java_home=java,
        conf_dir=conf,
        volumes=volumes,
        cores=p.cores_per_worker,
        ui_base_port=default_ui_base_port(p.spark_master_ui_url),
        name_prefix=cfg.worker.service_name,
    )
