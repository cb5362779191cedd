"""One MAPE tick of the auto-scaler, wired: Monitor (adapters) → Analyse/Plan (pure `decide`) → Execute (backend).

The state (heat per metric, cooldown, recent targets, recent decisions) lives in a JSON file written atomically
*after* the backend acted, so a restarted controller continues where it stopped and a failed action leaves the
state as it was (the next tick retries; no bookkeeping drift). Used by the Prefect flow, the CLI and the benchmark.

Example:
    $ opsflow scaler tick --config examples/spark_scaler/autoscaler.yaml
"""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import BaseModel, ValidationError

from opsflow.adapters.prometheus import PrometheusAPI
from opsflow.adapters.spark import SparkMaster
from opsflow.errors import OpsflowError
from opsflow.files import atomic_write_text
from spark_scaler.backends import WorkerBackend
from spark_scaler.config import ScalerConfig, load_config
from spark_scaler.metrics import observe
from spark_scaler.models import Action, Decision, Observation, ScalerState, WorkerRef
from spark_scaler.policy import decide


class StateError(OpsflowError, ValueError):
    """The state file is unreadable; the message names it."""


def load_state(path: Path) -> ScalerState:
    """The persisted state, or a fresh one when the file does not exist yet."""
    try:
        return ScalerState.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return ScalerState()
    except (OSError, ValidationError) as exc:
        raise StateError(f"{path}: unreadable scaler state ({exc}); move it aside to start afresh") from exc


def save_state(path: Path, state: ScalerState) -> None:
    atomic_write_text(path, state.model_dump_json(indent=1))


class TickResult(BaseModel):
    observation: Observation
    decision: Decision
    started: list[WorkerRef] = []
    stopped: list[WorkerRef] = []
    error: str | None = None


def scale_in_victims(workers: list[WorkerRef], count: int) -> list[WorkerRef]:
    """Which workers to remove: the youngest first (the oldest hold the longest-lived executors and blocks).

    >>> [w.id for w in scale_in_victims([WorkerRef(id="a", host="h", started_at=1), WorkerRef(id="b", host="h",
    ...  started_at=2)], 1)]
    ['b']
    """
    return sorted(workers, key=lambda w: w.started_at, reverse=True)[: max(0, count)]


def execute(decision: Decision, obs: Observation, backend: WorkerBackend, cfg: ScalerConfig) -> TickResult:
    """Carry out a decision through the backend; stops at the first backend failure (reported, not raised)."""
    result = TickResult(observation=obs, decision=decision)
    try:
        if decision.action == Action.SCALE_OUT:
            for _ in range(decision.target - decision.current):
                result.started.append(backend.start_worker())
        elif decision.action == Action.SCALE_IN:
            graceful = cfg.opsflow.scale_in == "graceful"
            for ref in scale_in_victims(backend.workers(), decision.current - decision.target):
                backend.stop_worker(ref, graceful=graceful)
                result.stopped.append(ref)
    except Exception as exc:  # a backend failure: reported, and the state is not advanced (retried next tick)
        result.error = f"{type(exc).__name__}: {exc}"
    return result


def tick(
    cfg: ScalerConfig,
    backend: WorkerBackend,
    state_path: Path,
    *,
    master: SparkMaster | None = None,
    prometheus: PrometheusAPI | None = None,
    now: float | None = None,
) -> TickResult:
    """Monitor → Analyse → Plan → Execute once; persists the new state only when the action succeeded."""
    now = time.time() if now is None else now
    master = master or SparkMaster(ui_url=cfg.opsflow.spark_master_ui_url)
    prometheus = prometheus or PrometheusAPI(url=cfg.general.prometheus_url)
    queries = {name: metric.query for name, metric in cfg.metrics.items()}
    state = load_state(state_path)
    obs = observe(master, prometheus, queries, backend, now)
    decision, new_state = decide(obs, state, cfg, now)
    result = execute(decision, obs, backend, cfg)
    if result.error is None:
        save_state(state_path, new_state)
    return result


def load_scaler_config(path: str | Path, home: Path | None = None) -> ScalerConfig:
    """The config at ``path``, bound to the local stack under ``home`` when it says ``opsflow.local_stack``.

    Raises InputError (naming file, line and key) before anything is touched.
    """
    from opsflow.stack.config import StackConfig, default_home

    cfg = load_config(path)
    if not cfg.opsflow.local_stack:
        return cfg
    stack = StackConfig.load(home or default_home())
    return cfg.model_copy(
        update={
            "general": cfg.general.model_copy(update={"prometheus_url": stack.prometheus_url}),
            "opsflow": cfg.opsflow.model_copy(
                update={"spark_master_ui_url": stack.spark_master_ui_url, "spark_master_url": stack.spark_master_url}
            ),
        }
    )


def backend_for(cfg: ScalerConfig, home: Path | None = None) -> WorkerBackend:
    """The worker backend ``cfg.opsflow.backend`` names, set up for the local stack under ``home``.

    A site's Docker engine or Swarm is reached through ``DOCKER_HOST`` (the docker SDK's own convention).
    """
    import docker

    from opsflow.adapters.docker_engine import DockerEngine
    from opsflow.stack.config import StackConfig, default_home
    from opsflow.stack.env import child_env, java_home, spark_home
    from opsflow.stack.podman import BUSYBOX_IMAGE
    from spark_scaler.backends import DockerBackend, LocalProcessBackend, SwarmServiceBackend

    stack = StackConfig.load(home or default_home())
    kind = cfg.opsflow.backend
    if kind == "local":
        return LocalProcessBackend(stack, child_env(stack))
    if kind == "swarm":
        return SwarmServiceBackend(docker.from_env(), cfg.worker.service_name)
    return DockerBackend(
        DockerEngine(base_url=child_env(stack)["DOCKER_HOST"]),
        BUSYBOX_IMAGE,
        cfg.opsflow.spark_master_url or stack.spark_master_url,
        master_ui_url=cfg.opsflow.spark_master_ui_url,
        spark_home=spark_home(),
        java_home=java_home(),
        conf_dir=stack.home / "spark" / "conf",
        cores=cfg.opsflow.cores_per_worker,
    )
