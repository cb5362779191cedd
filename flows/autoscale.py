"""`spark-autoscale`: the thesis's Auto-Scaler as a long-running Prefect controller flow.

A controller flow (not a schedule) because the thesis ticks every few seconds, far below what a schedule should
create runs for; it runs `ticks` ticks (or until cancelled) every `interval_seconds`. Heat and cooldown live in a
state file, so a cancelled or crashed controller restarted later continues where it stopped. Prometheus, the
Spark master and the Docker engine come from the Blocks (``PrometheusServer``, ``SparkCluster``,
``DockerEngine``) that the config's ``opsflow.blocks`` (or ``local_stack: true``) names, else from those the flow's
``blocks`` parameter names (the deployment's: ``local``, what the local stack saves; so the thesis's Listing 6.6,
which has no ``opsflow:`` section, runs unchanged); with neither, the file's own URLs.

Example:
    $ opsflow scaler run --config examples/spark_scaler/autoscaler.yaml
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.events import emit_event

from blocks import DockerEngine, PrometheusServer, SparkCluster, load_block
from opsflow.home import default_home
from spark_scaler.config import Endpoints, ScalerConfig, bind_endpoints, load_config
from spark_scaler.controller import TickResult, backend_for, default_state_path, load_state, tick
from spark_scaler.models import Action


def with_blocks(cfg: ScalerConfig, default: str | None = None) -> ScalerConfig:
    """``cfg`` bound to the Blocks its ``opsflow.blocks`` names, else those called ``default`` (unchanged: none)."""
    name = cfg.opsflow.block_name or default
    if name is None:
        return cfg
    spark = load_block(SparkCluster, name)
    endpoints = Endpoints(
        prometheus_url=load_block(PrometheusServer, name).url,
        spark_master_url=spark.master_url,
        spark_master_ui_url=spark.ui_url,
        # The Docker engine only where a backend talks to one: a site without Docker needs no such Block.
        docker_host=load_block(DockerEngine, name).base_url if cfg.opsflow.backend != "local" else None,
    )
    return bind_endpoints(cfg, endpoints)


def report(result: TickResult, state_path: Path) -> None:
    """Log the tick; on an action, emit `opsflow.spark.scaled` and refresh the table of recent decisions."""
    logger = get_run_logger()
    d = result.decision
    for problem in result.observation.problems:
        logger.warning("monitor: %s", problem)
    if result.error:
        logger.error(
            "%s %d → %d failed: %s (state kept; retried next tick)", d.action, d.current, d.target, result.error
        )
        return
    logger.info("%s: %d → %d workers; %s", d.action.value, d.current, d.target, d.reason)
    if d.action == Action.HOLD:
        return
    emit_event(
        event="opsflow.spark.scaled",
        resource={"prefect.resource.id": "opsflow.spark.workers"},
        payload={
            "action": d.action.value,
            "from": d.current,
            "to": d.target,
            "reason": d.reason,
            "started": [w.id for w in result.started],
            "stopped": [w.id for w in result.stopped],
        },
    )
    recent = load_state(state_path).decisions[-20:]
    create_table_artifact(
        key="spark-autoscale-decisions",
        table=[
            {
                "at": time.strftime("%H:%M:%S", time.localtime(x.at)),
                "action": x.action.value,
                "from": x.current,
                "to": x.target,
                "reason": x.reason,
            }
            for x in reversed(recent)
        ],
        description="Recent decisions of the Spark auto-scaler (newest first)",
    )


@flow(name="spark-autoscale", log_prints=True)
def spark_autoscale(
    config: str = "examples/spark_scaler/autoscaler.yaml",
    ticks: int | None = None,
    state_file: str | None = None,
    blocks: str | None = None,
) -> int:
    """Run the MAPE loop: every `interval_seconds` one tick; returns the number of actions taken.

    ``config`` is relative to the working directory (the project directory for the deployment's worker);
    ``blocks``: the Blocks to read Prometheus, the Spark master and the Docker engine from when the config names
    none.
    """
    cfg_path = Path(config)
    # invalid config or a missing Block: a clear error before any action
    cfg = with_blocks(load_config(cfg_path), blocks)
    state_path = Path(state_file) if state_file else default_state_path(cfg_path)
    # The worker's environment is the site's (the local stack's worker gets the stack's): its DOCKER_HOST,
    # SPARK_CONF_DIR and JAVA_HOME are used as they are.
    backend = backend_for(cfg, home=default_home(), env=os.environ)
    actions = 0
    n = 0
    while ticks is None or n < ticks:
        started = time.monotonic()
        result = tick(cfg, backend, state_path)
        report(result, state_path)
        actions += result.decision.action != Action.HOLD and result.error is None
        n += 1
        if ticks is None or n < ticks:
            time.sleep(max(0.0, cfg.general.interval_seconds - (time.monotonic() - started)))
    return actions
