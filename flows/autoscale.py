"""`spark-autoscale`: the thesis's Auto-Scaler as a long-running Prefect controller flow.

A controller flow (not a schedule) because the thesis ticks every few seconds, far below what a schedule should
create runs for; it runs `ticks` ticks (or until cancelled) every `interval_seconds`. Heat and cooldown live in a
state file, so a cancelled or crashed controller restarted later continues where it stopped.

Example:
    $ opsflow scaler run --config examples/spark_scaler/autoscale.yaml
"""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.events import emit_event

from spark_scaler.controller import TickResult, backend_for, load_scaler_config, load_state, tick
from spark_scaler.models import Action


def default_state_path(config_path: Path) -> Path:
    """Where a controller of this config keeps its state: beside the stack's other state."""
    from opsflow.stack.config import default_home

    return default_home() / "scaler" / f"{config_path.stem}.state.json"


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
    config: str = "examples/spark_scaler/autoscaler.yaml", ticks: int | None = None, state_file: str | None = None
) -> int:
    """Run the MAPE loop: every `interval_seconds` one tick; returns the number of actions taken.

    ``config`` is relative to the working directory (the project directory for the deployment's worker).
    """
    cfg_path = Path(config)
    cfg = load_scaler_config(cfg_path)  # invalid config: a clear error before any action
    state_path = Path(state_file) if state_file else default_state_path(cfg_path)
    backend = backend_for(cfg)
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
