"""The Spark auto-scaler from a notebook or a script: ``opsflow.connect().scaler("autoscaler.yaml")``.

Every ``opsflow scaler`` command is one call of a :class:`ScalerAPI` method:

- :meth:`~ScalerAPI.preview`: what the next tick would do (observe + decide), acting on nothing, saving nothing;
- :meth:`~ScalerAPI.tick`: one real tick in this process (it may start or stop workers, and saves the state);
- :meth:`~ScalerAPI.status`: heat, cooldown, ALIVE workers and the recent decisions;
- :meth:`~ScalerAPI.run`: starts the ``spark-autoscale`` deployment (the controller loop, on a worker of the
  site) through Prefect's client and returns at once;
- :meth:`~ScalerAPI.validate` / :meth:`~ScalerAPI.config`: the file alone, or bound to its Blocks.

Where it reads and acts: a config with ``opsflow.blocks: <name>`` (or ``local_stack: true``, short for
``blocks: local``) takes Prometheus, the Spark master and the Docker engine from the site's Blocks of that name,
read over the REST API (no Prefect import); otherwise the URLs in the file. Only :meth:`~ScalerAPI.run` imports
Prefect. The state file defaults to ``<site home>/scaler/<config stem>.state.json``, the flow's default.

Example:
    >>> import opsflow, tempfile
    >>> from pathlib import Path
    >>> from spark_scaler.config import EXAMPLE_THESIS_YAML
    >>> path = Path(tempfile.mkdtemp()) / "thesis.yaml"
    >>> _ = path.write_text(EXAMPLE_THESIS_YAML.replace("localhost:9090", "127.0.0.1:1")
    ...     + "opsflow: {spark_master_ui_url: 'http://127.0.0.1:1'}\\n")
    >>> scaler = opsflow.connect(path.parent).scaler(path)
    >>> p = scaler.preview()                  # nothing listens there: it holds, and says why
    >>> p.decision.action.value, "missing data" in p.decision.reason, scaler.state_path.exists()
    ('hold', True, False)
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from opsflow.adapters.spark import SparkError, SparkMaster
from opsflow.errors import AdapterError, NotFoundError, OpsflowError
from opsflow.tables import Records, TableView
from spark_scaler.backends.base import WorkerBackend
from spark_scaler.config import Endpoints, ScalerConfig, bind_endpoints, load_config
from spark_scaler.controller import TickResult, backend_for, default_state_path, load_state, plan
from spark_scaler.controller import tick as run_tick
from spark_scaler.models import Decision, Observation, WorkerRef
from spark_scaler.report import Section, SectionsView, clock, decision_rows, observation_rows, policy_rows

if TYPE_CHECKING:
    from opsflow.api import Site

#: Block type slugs (as the Blocks save themselves on a Prefect server; see blocks/).
SPARK_SLUG = "opsflow-spark-cluster"
PROMETHEUS_SLUG = "opsflow-prometheus-server"
DOCKER_SLUG = "opsflow-docker-engine"
#: The controller deployment of prefect.yaml.
DEPLOYMENT = "spark-autoscale/spark-autoscale"


class DecisionRecord(BaseModel):
    """One recent decision, as the status table lists it."""

    at: str = Field(description="Local wall-clock time of the tick")
    action: str
    workers_from: int
    workers_to: int
    reason: str

    @classmethod
    def of(cls, d: Decision) -> DecisionRecord:
        return cls(at=clock(d.at), action=d.action.value, workers_from=d.current, workers_to=d.target, reason=d.reason)


class Preview(SectionsView):
    """What the next tick would do: the decision, what it was based on, and the policy in force. Nothing acted."""

    config_path: str
    decision: Decision
    observation: Observation
    policy: ScalerConfig = Field(description="The configuration in force (bound to its Blocks)")

    def sections(self) -> list[Section]:
        return [
            ("next tick would", ["field", "value"], decision_rows(self.decision)),
            ("observation", ["field", "value"], observation_rows(self.observation)),
            (f"policy ({self.config_path})", ["setting", "value"], policy_rows(self.policy)),
        ]


class ScalerStatus(SectionsView):
    """Where a controller of one config stands: heat, cooldown, workers at the master, recent decisions."""

    config_path: str
    state_path: str
    heat: dict[str, int] = Field(default_factory=dict, description="Heat per metric (Algorithm 1)")
    cooldown_left_s: float | None = Field(default=None, description="Seconds of cooldown left; None: no action yet")
    alive_workers: int | None = Field(default=None, description="ALIVE workers at the Spark master; None: unreachable")
    bounds: tuple[int, int]
    problems: list[str] = Field(default_factory=list)
    decisions: list[DecisionRecord] = Field(default_factory=list, description="Most recent first")

    @property
    def recent(self) -> Records[DecisionRecord]:
        """The recent decisions as a table (``.to_frame()`` gives a DataFrame)."""
        return Records(self.decisions)

    def sections(self) -> list[Section]:
        alive = "unreachable" if self.alive_workers is None else str(self.alive_workers)
        cooldown = "— (no action yet)" if self.cooldown_left_s is None else f"{self.cooldown_left_s:.0f} s left"
        summary = [
            ["ALIVE workers", f"{alive} (bounds {self.bounds[0]}-{self.bounds[1]})"],
            ["heat", ", ".join(f"{k} {v:+d}" for k, v in self.heat.items()) or "—"],
            ["cooldown", cooldown],
            ["state", self.state_path],
            *(["problem", p] for p in self.problems),
        ]
        rows = [[d.at, d.action, str(d.workers_from), str(d.workers_to), d.reason] for d in self.decisions]
        return [
            (f"status ({self.config_path})", ["field", "value"], summary),
            ("recent decisions", ["at", "action", "from", "to", "reason"], rows),
        ]


class ScalerRun(TableView):
    """A started ``spark-autoscale`` controller run."""

    flow_run_id: str
    name: str
    url: str
    parameters: dict[str, Any]


class _Unavailable:
    """A backend that could not be built: listing its workers fails, so a preview holds and says why."""

    def __init__(self, why: str) -> None:
        self.why = why

    def workers(self) -> list[WorkerRef]:
        raise AdapterError(self.why)

    def start_worker(self, gpu: str | None = None) -> WorkerRef:
        raise AdapterError(self.why)

    def stop_worker(self, ref: WorkerRef, graceful: bool) -> None:
        raise AdapterError(self.why)


class ScalerAPI:
    """The auto-scaler of one configuration file on one site (see the module docstring).

    ``state_path``: the controller's state file (default ``<site home>/scaler/<config stem>.state.json``);
    ``blocks``: the Blocks to read Prometheus, the Spark master and the Docker engine from when the file names
    none (``opsflow.blocks``), as the ``spark-autoscale`` flow's parameter of that name.
    """

    def __init__(
        self, site: Site, config: str | Path, *, state_path: str | Path | None = None, blocks: str | None = None
    ) -> None:
        self.site = site
        self.path = Path(config)
        self._state_path = Path(state_path) if state_path else None
        self.blocks = blocks

    def __repr__(self) -> str:
        return f"<ScalerAPI {self.path} on {self.site!r}>"

    @property
    def state_path(self) -> Path:
        return self._state_path or default_state_path(self.path, home=self.site.home)

    # --- configuration -----------------------------------------------------------------------------------------
    def validate(self) -> ScalerConfig:
        """The file, validated (InputError naming file, line and key); nothing else is read."""
        return load_config(self.path)

    def config(self) -> ScalerConfig:
        """The validated file, bound to the Blocks its ``opsflow.blocks`` (or ``local_stack``) names, else to
        those called :attr:`blocks`."""
        cfg = self.validate()
        name = cfg.opsflow.block_name or self.blocks
        if name is None:
            return cfg
        key = "opsflow.blocks" if cfg.opsflow.blocks else "opsflow.local_stack" if cfg.opsflow.local_stack else None
        named_by = f"{key} of {self.path}" if key else f"the blocks parameter ({name})"

        def values(slug: str) -> dict[str, Any]:
            try:
                return self.site.block_values(slug, name)
            except NotFoundError as exc:
                raise NotFoundError(f"{exc} (named by {named_by})") from exc
            except AdapterError as exc:
                raise AdapterError(f"{exc} (reading the Blocks named by {named_by})") from exc

        spark = values(SPARK_SLUG)
        endpoints = Endpoints(
            prometheus_url=values(PROMETHEUS_SLUG).get("url"),
            spark_master_url=spark.get("master_url"),
            spark_master_ui_url=spark.get("ui_url"),
            docker_host=values(DOCKER_SLUG).get("base_url") if cfg.opsflow.backend != "local" else None,
        )
        return bind_endpoints(cfg, endpoints)

    def backend(self, cfg: ScalerConfig | None = None) -> WorkerBackend:
        """The worker backend of the (bound) config, with this process's environment and the site's home."""
        cfg = cfg or self.config()
        conf_dir = None
        if self.site.is_local and not os.environ.get("SPARK_CONF_DIR"):
            from opsflow.stack.spark import spark_conf_dir

            conf_dir = spark_conf_dir(self.site.home)  # the stack's defaults: decommissioning, metrics
        return backend_for(cfg, home=self.site.home, env=os.environ, conf_dir=conf_dir)

    # --- operations --------------------------------------------------------------------------------------------
    def preview(self) -> Preview:
        """What the next tick would do: observe and decide, no action, no state saved; holds on missing data."""
        cfg = self.config()
        backend: WorkerBackend
        try:
            backend = self.backend(cfg)
        except OpsflowError as exc:
            backend = _Unavailable(f"cannot set up the {cfg.opsflow.backend} backend: {exc}")
        obs, decision, _ = plan(cfg, backend, load_state(self.state_path))
        return Preview(config_path=str(self.path), decision=decision, observation=obs, policy=cfg)

    def tick(self) -> TickResult:
        """One real tick in this process: observe, decide, act through the backend, save the state."""
        cfg = self.config()
        return run_tick(cfg, self.backend(cfg), self.state_path)

    def status(self) -> ScalerStatus:
        """Heat, cooldown left, ALIVE workers at the master and the recent decisions (newest first)."""
        cfg = self.config()
        state = load_state(self.state_path)
        problems = []
        alive: int | None = None
        try:
            alive = len(SparkMaster(cfg.opsflow.spark_master_ui_url, timeout_s=3.0).state().alive_workers)
        except SparkError as exc:
            problems.append(str(exc))
        left = None
        if state.last_action_at is not None:
            left = max(0.0, state.last_action_at + cfg.general.cooldown_period_seconds - time.time())
        return ScalerStatus(
            config_path=str(self.path),
            state_path=str(self.state_path),
            heat=dict(state.heat),
            cooldown_left_s=left,
            alive_workers=alive,
            bounds=(cfg.worker.thresholds.min, cfg.worker.thresholds.max),
            problems=problems,
            decisions=[DecisionRecord.of(d) for d in reversed(state.decisions[-15:])],
        )

    def run(self, ticks: int | None = None) -> ScalerRun:
        """Start the ``spark-autoscale`` deployment on the site (the controller loop on a worker); returns at once.

        The config is validated here first; the run reads it on the worker (an absolute path for the local
        stack, whose worker runs on this machine; as given otherwise, relative to the worker's project directory).
        """
        self.validate()
        config = str(self.path.resolve()) if self.site.is_local else str(self.path)
        parameters: dict[str, Any] = {"config": config, "ticks": ticks}
        if self.blocks is not None:
            parameters["blocks"] = self.blocks
        if self._state_path is not None:
            parameters["state_file"] = str(self._state_path.resolve())
        flow_run_id, name, url = self.site.start_deployment(DEPLOYMENT, parameters)
        return ScalerRun(flow_run_id=flow_run_id, name=name, url=url, parameters=parameters)


__all__ = ["DecisionRecord", "Preview", "ScalerAPI", "ScalerRun", "ScalerStatus"]
