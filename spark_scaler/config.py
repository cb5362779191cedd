"""The Auto-Scaler's configuration: the thesis's own YAML form (seed §5.4.2, §6.3.1, Listing 6.6) plus ``opsflow:``.

A thesis file loads unchanged::

    general:   {interval_seconds, cooldown_period_seconds, recurrence_factor, prometheus_url}
    metrics:   {<name>: {query, target_utilization, thresholds: {min, max}}}
    worker:    {service_name, thresholds: {min, max}}
    opsflow:   our keys (optional): where to read and act (Blocks or URLs), backend, GPU, the policy
               (``thesis``, the default, or ``opsflow``) and the switches of the ``opsflow`` policy

Every section forbids unknown keys, so a typo is an error, not a silently ignored setting. Errors name the file,
the line and the key path (``autoscaler.yaml:12: metrics.cpu.thresholds.max: ...``), found from the YAML node
marks. Pure: :func:`load_config` reads one file, everything else works on text.

Where the scaler reads and acts (Prometheus, the Spark master, the Docker engine) comes from the file, or, with
``opsflow.blocks: <name>`` (``opsflow.local_stack: true`` is short for ``blocks: local``), from the Blocks of that
name (``PrometheusServer``, ``SparkCluster``, ``DockerEngine``): the caller reads them and applies them with
:func:`bind_endpoints`, which overrides the file's URLs.

Example:
    >>> cfg = load_config_text(EXAMPLE_THESIS_YAML)
    >>> cfg.general.recurrence_factor, cfg.metrics["cpu"].target_utilization, cfg.worker.thresholds.max
    (3, 0.5, 30)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from opsflow.errors import InputError
from opsflow.yaml_lines import load_mapping, validation_problems

#: Listing 6.6 of the seed (the thesis's configuration for scaling a Docker service), verbatim in content.
EXAMPLE_THESIS_YAML = """\
general:
  interval_seconds: 5
  cooldown_period_seconds: 180
  recurrence_factor: 3
  prometheus_url: "http://localhost:9090"

metrics:
  cpu:
    query: 'sum(rate(container_cpu_user_seconds_total{image
      = "spark-worker:3.0.1-hadoop2.7"}[30s]))'
    target_utilization: 0.5
    thresholds:
      min: 0.2
      max: 0.6

worker:
  service_name: "computing_spark-worker"
  thresholds:
    min: 1
    max: 30
"""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GeneralConfig(_Section):
    """``general:`` — the thesis's General properties (seed §5.4.2)."""

    interval_seconds: float = Field(gt=0, description="Seconds between two ticks (Monitor → Analyse → Plan → Execute)")
    cooldown_period_seconds: float = Field(
        ge=0, description="Cooldown: seconds after a scaling action during which no other action is taken"
    )
    recurrence_factor: int = Field(
        ge=1, description="n of Algorithm 1: a metric's heat must reach +n / -n before a scale-out / scale-in"
    )
    prometheus_url: str = Field(min_length=1, description="Base URL of the Prometheus HTTP API the queries go to")


class UtilizationThresholds(_Section):
    """``thresholds:`` of a metric: Algorithm 1's lower_threshold (``min``) and upper_threshold (``max``)."""

    min: float = Field(description="lower_threshold: utilization at or below it heats towards scale-in")
    max: float = Field(description="upper_threshold: utilization at or above it heats towards scale-out")

    @field_validator("min", "max")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @field_validator("max")
    @classmethod
    def _above_min(cls, value: float, info: ValidationInfo) -> float:
        low = info.data.get("min")
        if low is not None and not low < value:
            raise ValueError(f"must be greater than thresholds.min ({low:g})")
        return value


class MetricConfig(_Section):
    """One entry of ``metrics:`` — a PromQL query and its scaling goal."""

    query: str = Field(min_length=1, description="PromQL query returning one number: the metric's utilization")
    target_utilization: float = Field(gt=0, description="target_utilization of the KHPA formula")
    thresholds: UtilizationThresholds

    @field_validator("target_utilization")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value


class WorkerThresholds(_Section):
    """``worker.thresholds`` — the fewest and the most Spark workers; every target is clamped into them."""

    min: int = Field(ge=0, description="Fewest workers (the thesis advises >= 1 to avoid cold starts)")
    max: int = Field(ge=0, description="Most workers")

    @field_validator("max")
    @classmethod
    def _not_below_min(cls, value: int, info: ValidationInfo) -> int:
        low = info.data.get("min")
        if low is not None and value < low:
            raise ValueError(f"must be at least worker.thresholds.min ({low})")
        return value


class WorkerConfig(_Section):
    """``worker:`` — which workers to scale."""

    service_name: str = Field(
        default="spark-worker",
        min_length=1,
        description="Docker Swarm service to scale (swarm); name prefix of containers/processes otherwise",
    )
    thresholds: WorkerThresholds


ScaleInMode = Literal["never_while_apps", "graceful"]
#: ``thesis``: the thesis's Auto-Scaler as it was measured (seed §6.3.2); ``opsflow``: ours, with its switches
PolicyName = Literal["thesis", "opsflow"]
#: The switches of the ``opsflow`` policy and their values under the thesis's (every one off).
THESIS_SWITCHES: dict[str, object] = {
    "scale_in": "never_while_apps",
    "tolerance": 0.0,
    "scale_up_stabilization_seconds": 0.0,
    "scale_down_stabilization_seconds": 0.0,
    "warmup_seconds": 0.0,
    "demand_signals": False,
}
Backend = Literal["local", "docker", "swarm"]
#: The Blocks the local stack saves (``opsflow up``); ``local_stack: true`` means these.
LOCAL_BLOCKS = "local"
#: The local stack's image (podman, no registry): busybox only, so the host's Spark runtime is bind-mounted.
DEFAULT_WORKER_IMAGE = "localhost/opsflow-busybox:latest"


class OpsflowConfig(_Section):
    """``opsflow:`` — our keys. Without the section, or without ``policy:``, the thesis's policy applies.

    ``policy: opsflow`` is ours; its switches default to what ``benchmarks/autoscale.py`` chose (variant runs on
    the bursty workload: a 30 s down window or a 20 s warm-up kept idle workers through the gaps). Under ``policy:
    thesis`` every switch is off (:data:`THESIS_SWITCHES`) and setting one is an error naming its line: a file
    that says it is the thesis's behaves as the thesis, whatever defaults we change.

    >>> OpsflowConfig().policy, OpsflowConfig().scale_in, OpsflowConfig(policy="opsflow").scale_in
    ('thesis', 'never_while_apps', 'graceful')
    """

    policy: PolicyName = Field(
        default="thesis",
        description="thesis: Algorithm 1 + KHPA, cooldown, bounds, no scale-in while an app runs, nothing else; "
        "opsflow: ours (graceful scale-in, tolerance, stabilisation windows, warm-up, demand signals)",
    )

    backend: Backend = Field(
        default="local", description="Worker backend: local processes, Docker containers, or a Docker Swarm service"
    )
    spark_master_ui_url: str = Field(
        default="http://127.0.0.1:8080", min_length=1, description="Spark master web UI (its /json/ is read)"
    )
    spark_master_url: str | None = Field(
        default=None,
        description="spark:// URL new workers register with; default: port 7077 on the host of spark_master_ui_url",
    )
    docker_host: str | None = Field(
        default=None,
        description="Docker API URL of the docker and swarm backends (unix:///path.sock, tcp://host:port); "
        "default: DOCKER_HOST, else Docker's own socket",
    )
    blocks: str | None = Field(
        default=None,
        min_length=1,
        description="Name of the Blocks (SparkCluster, PrometheusServer, DockerEngine) whose URLs replace "
        "general.prometheus_url, the Spark master URLs and docker_host of this file",
    )
    local_stack: bool = Field(
        default=False,
        description="Short for `blocks: local`: the Blocks the local stack (`opsflow up`) saves",
    )
    worker_image: str = Field(
        default=DEFAULT_WORKER_IMAGE, min_length=1, description="Image of a docker worker (never pulled)"
    )
    host_runtime: bool = Field(
        default=True,
        description="docker: bind-mount the host's JDK, Python and Spark read-only into each worker container "
        "(for an image without them, like the local stack's busybox)",
    )
    gpu: bool = Field(default=False, description="Start each worker pinned to one free GPU (seed §8.2.3)")
    cores_per_worker: int = Field(default=1, ge=1, description="Cores one worker offers (demand signals)")
    scale_in: ScaleInMode = Field(
        default="graceful",
        description="never_while_apps: the thesis (scale in only when no app runs); "
        "graceful: scale in any time, decommissioning the worker first",
    )
    tolerance: float = Field(
        default=0.1,
        ge=0,
        lt=1,
        description="A metric with |utilization/target - 1| <= tolerance asks for no change (Kubernetes HPA: 0.1)",
    )
    scale_up_stabilization_seconds: float = Field(
        default=0, ge=0, description="Scale out only to the LOWEST desired count of this window (0: at once)"
    )
    scale_down_stabilization_seconds: float = Field(
        default=0,
        ge=0,
        description="Scale in only to the HIGHEST desired count of this window, and only once it is covered",
    )
    warmup_seconds: float = Field(
        default=10,
        ge=0,
        description="A worker younger than this is warming up: its capacity counts as on its way, metric "
        "readings are not trusted (heat frozen) until every worker is warm",
    )
    demand_signals: bool = Field(
        default=True,
        description="Scale out at once for waiting apps / cores wanted > cores free; scale in to the minimum "
        "when nothing runs or waits and every metric is low",
    )

    @field_validator(*THESIS_SWITCHES)
    @classmethod
    def _only_under_ours(cls, value: object, info: ValidationInfo) -> object:
        if info.data.get("policy", "opsflow") == "thesis":  # absent: policy itself was invalid (reported)
            raise ValueError(
                "a switch of policy: opsflow, and this section's policy is thesis (the default): add `policy: "
                "opsflow` to use it, or remove it"
            )
        return value

    @model_validator(mode="after")
    def _one_block_name(self) -> OpsflowConfig:
        if self.local_stack and self.blocks not in (None, LOCAL_BLOCKS):
            raise ValueError(f"local_stack: true means blocks: {LOCAL_BLOCKS}; it contradicts blocks: {self.blocks}")
        if self.policy == "thesis":
            for key, value in THESIS_SWITCHES.items():
                object.__setattr__(self, key, value)
        return self

    @property
    def block_name(self) -> str | None:
        """The name of the Blocks to read the URLs from, or None (the URLs of this file).

        >>> OpsflowConfig(local_stack=True).block_name, OpsflowConfig().block_name
        ('local', None)
        """
        return self.blocks or (LOCAL_BLOCKS if self.local_stack else None)

    @property
    def master_url(self) -> str:
        """The ``spark://`` URL workers register with: ``spark_master_url``, else port 7077 of the UI's host.

        >>> OpsflowConfig(spark_master_ui_url="http://10.0.0.5:8080").master_url
        'spark://10.0.0.5:7077'
        """
        if self.spark_master_url:
            return self.spark_master_url
        return f"spark://{urlsplit(self.spark_master_ui_url).hostname or '127.0.0.1'}:7077"


class ScalerConfig(_Section):
    """The whole file: the thesis's three sections plus ``opsflow:``."""

    general: GeneralConfig
    metrics: dict[str, MetricConfig] = Field(min_length=1, description="name → metric; one heat per metric")
    worker: WorkerConfig
    opsflow: OpsflowConfig = Field(default_factory=OpsflowConfig)

    @field_validator("metrics")
    @classmethod
    def _names(cls, value: dict[str, MetricConfig]) -> dict[str, MetricConfig]:
        for name in value:
            if not str(name).strip():
                raise ValueError("a metric name must not be empty")
        return value


class Endpoints(BaseModel):
    """Where the scaler reads and acts, as a site's Blocks give them (None: keep the file's value)."""

    prometheus_url: str | None = Field(default=None, description="PrometheusServer.url")
    spark_master_url: str | None = Field(default=None, description="SparkCluster.master_url")
    spark_master_ui_url: str | None = Field(default=None, description="SparkCluster.ui_url")
    docker_host: str | None = Field(default=None, description="DockerEngine.base_url")


def bind_endpoints(cfg: ScalerConfig, endpoints: Endpoints) -> ScalerConfig:
    """``cfg`` with the URLs of ``endpoints`` in place of the file's (pure; ``cfg`` is not changed).

    >>> cfg = load_config_text(EXAMPLE_THESIS_YAML)
    >>> bound = bind_endpoints(cfg, Endpoints(prometheus_url="http://prom:9090", spark_master_ui_url="http://m:8080"))
    >>> bound.general.prometheus_url, bound.opsflow.master_url, cfg.general.prometheus_url
    ('http://prom:9090', 'spark://m:7077', 'http://localhost:9090')
    """
    general = {"prometheus_url": endpoints.prometheus_url} if endpoints.prometheus_url else {}
    ours = {key: value for key, value in endpoints.model_dump(exclude={"prometheus_url"}).items() if value is not None}
    return cfg.model_copy(
        update={"general": cfg.general.model_copy(update=general), "opsflow": cfg.opsflow.model_copy(update=ours)}
    )


# --- YAML with line numbers -------------------------------------------------------------------------------------


def load_config_text(text: str, source: str = "<config>") -> ScalerConfig:
    """Parse and validate a configuration given as YAML text; errors name ``source``, the line and the key.

    >>> load_config_text(EXAMPLE_THESIS_YAML.replace("interval_seconds: 5", "interval_seconds: 0"))
    Traceback (most recent call last):
    ...
    opsflow.errors.InputError: <config>:2: general.interval_seconds: Input should be greater than 0 (got 0)
    """
    node, data = load_mapping(
        text, source, "empty; expected the sections general, metrics and worker", "expected a mapping of sections"
    )
    try:
        return ScalerConfig.model_validate(data)
    except ValidationError as exc:
        unknown = "unknown key (a typo? see the README for the keys of this section)"
        raise InputError(source, validation_problems(node, exc, unknown)) from None


def load_config(path: str | Path) -> ScalerConfig:
    """Read and validate a configuration file (thesis form plus ``opsflow:``); nothing else is touched.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "autoscaler.yaml"
    >>> _ = path.write_text(EXAMPLE_THESIS_YAML)
    >>> load_config(path).opsflow.backend, load_config(path).worker.service_name
    ('local', 'computing_spark-worker')
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(str(path), [(1, "(file)", f"cannot read: {exc}")]) from None
    return load_config_text(text, str(path))


# --- presets (used by the benchmark) ----------------------------------------------------------------------------


def thesis_policy(cfg: ScalerConfig) -> ScalerConfig:
    """The thesis's Auto-Scaler (seed §6.3.2): Scaling Heat + KHPA formula, cooldown, bounds, no scale-in while
    apps run; every switch of ours off. Same metrics, bounds and general settings as ``cfg``.

    >>> p = thesis_policy(our_policy(load_config_text(EXAMPLE_THESIS_YAML))).opsflow
    >>> p.policy, p.scale_in, p.tolerance, p.demand_signals, p.warmup_seconds
    ('thesis', 'never_while_apps', 0.0, False, 0.0)
    """
    off = {"policy": "thesis", **THESIS_SWITCHES}
    return cfg.model_copy(update={"opsflow": cfg.opsflow.model_copy(update=off)})


def our_policy(cfg: ScalerConfig, switches: OpsflowConfig | None = None) -> ScalerConfig:
    """Ours: graceful scale-in and every switch on, with the values of ``switches`` (default: the defaults of
    :class:`OpsflowConfig`); backend, Spark and GPU settings stay those of ``cfg``.

    >>> p = our_policy(load_config_text(EXAMPLE_THESIS_YAML)).opsflow
    >>> p.policy, p.scale_in, p.tolerance, p.demand_signals
    ('opsflow', 'graceful', 0.1, True)
    """
    src = switches or OpsflowConfig(policy="opsflow")
    on = {
        "policy": "opsflow",
        "scale_in": "graceful",
        "tolerance": src.tolerance,
        "scale_up_stabilization_seconds": src.scale_up_stabilization_seconds,
        "scale_down_stabilization_seconds": src.scale_down_stabilization_seconds,
        "warmup_seconds": src.warmup_seconds,
        "demand_signals": True,
    }
    return cfg.model_copy(update={"opsflow": cfg.opsflow.model_copy(update=on)})
