"""`opsflow scaler …`: one tick, the controller loop, or the state, for a thesis-style config file.

Example:
    $ opsflow scaler tick --config examples/spark_scaler/autoscaler.yaml
    $ opsflow scaler run --config examples/spark_scaler/autoscaler.yaml --ticks 60
    $ opsflow scaler status --config examples/spark_scaler/autoscaler.yaml
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from opsflow.errors import InputError
from spark_scaler.config import ScalerConfig

app = typer.Typer(help="Spark worker autoscaling (the thesis Auto-Scaler).", no_args_is_help=True)
console = Console(width=140)
ConfigOpt = Annotated[Path, typer.Option("--config", help="Auto-scaler YAML (the thesis's form + `opsflow:` keys)")]
StateOpt = Annotated[Path | None, typer.Option("--state", help="State file (default: under $OPSFLOW_HOME/scaler)")]


def _load(path: Path) -> ScalerConfig:
    from spark_scaler.controller import load_scaler_config

    try:
        return load_scaler_config(path)
    except InputError as exc:
        console.print(f"[red]invalid config[/red]\n{exc}", soft_wrap=True)
        raise typer.Exit(2) from exc


def _state_path(config: Path, state: Path | None) -> Path:
    from flows.autoscale import default_state_path

    return state or default_state_path(config)


@app.command()
def tick(config: ConfigOpt, state: StateOpt = None) -> None:
    """One Monitor → Analyse → Plan → Execute tick, printed."""
    from spark_scaler.controller import backend_for
    from spark_scaler.controller import tick as run_tick

    cfg = _load(config)
    result = run_tick(cfg, backend_for(cfg), _state_path(config, state))
    d = result.decision
    for problem in result.observation.problems:
        console.print(f"[yellow]{problem}[/yellow]")
    console.print(f"{d.action.value}: {d.current} → {d.target} workers; {d.reason}")
    if result.error:
        console.print(f"[red]backend failed:[/red] {result.error}")
        raise typer.Exit(1)


@app.command()
def run(
    config: ConfigOpt,
    ticks: Annotated[int | None, typer.Option(help="Stop after this many ticks (default: run until stopped)")] = None,
    state: StateOpt = None,
) -> None:
    """The controller loop, as the `spark-autoscale` flow (visible in the Prefect UI)."""
    from flows.autoscale import spark_autoscale

    _load(config)
    actions = spark_autoscale(str(config), ticks=ticks, state_file=str(state) if state else None)
    console.print(f"{actions} scaling action(s)")


@app.command()
def status(config: ConfigOpt, state: StateOpt = None) -> None:
    """Heat per metric, cooldown, workers at the master, and the recent decisions."""
    import time

    from opsflow.adapters.spark import SparkError, SparkMaster
    from spark_scaler.controller import load_state

    cfg = _load(config)
    st = load_state(_state_path(config, state))
    try:
        alive = len(SparkMaster(ui_url=cfg.opsflow.spark_master_ui_url).state().alive_workers)
        console.print(
            f"workers ALIVE at the master: {alive} (bounds {cfg.worker.thresholds.min}-{cfg.worker.thresholds.max})"
        )
    except SparkError as exc:
        console.print(f"[yellow]{exc}[/yellow]")
    console.print(f"heat: {st.heat or '{}'}")
    if st.last_action_at is not None:
        left = st.last_action_at + cfg.general.cooldown_period_seconds - time.time()
        console.print(f"cooldown: {max(0.0, left):.0f} s left")
    table = Table("at", "action", "from", "to", "reason")
    for d in reversed(st.decisions[-15:]):
        table.add_row(
            time.strftime("%H:%M:%S", time.localtime(d.at)), d.action.value, str(d.current), str(d.target), d.reason
        )
    console.print(table)
