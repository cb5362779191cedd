"""`opsflow scaler …`: the Spark auto-scaler of one thesis-style config file; each command is one call of
:class:`opsflow.api.scaler.ScalerAPI`.

``preview``, ``status`` and ``validate`` only read (the file, the state, the Blocks over REST, the master and
Prometheus) and never import Prefect; ``tick`` acts once in this shell; ``run`` starts the ``spark-autoscale``
deployment on the site's worker and returns at once.

Example:
    $ opsflow scaler preview --config examples/spark_scaler/autoscaler.yaml
    $ opsflow scaler tick --config examples/spark_scaler/autoscaler.yaml
    $ opsflow scaler run --config examples/spark_scaler/autoscaler.yaml --ticks 60
    $ opsflow scaler status --config examples/spark_scaler/autoscaler.yaml
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from opsflow.cli._utilities import FAILED, console, exit_with_error, group

if TYPE_CHECKING:
    from opsflow.api.scaler import ScalerAPI
    from spark_scaler.report import SectionsView

app = group("Spark worker autoscaling (the thesis Auto-Scaler).")
ConfigOpt = Annotated[Path, typer.Option("--config", help="Auto-scaler YAML (the thesis's form + `opsflow:` keys)")]
StateOpt = Annotated[
    Path | None, typer.Option("--state", help="State file (default: <OPSFLOW_HOME>/scaler/<config>.state.json)")
]
BlocksOpt = Annotated[
    str | None,
    typer.Option("--blocks", help="Blocks to read Prometheus and the Spark master from when the file names none"),
]


def _api(config: Path, state: Path | None, blocks: str | None = None) -> ScalerAPI:
    from opsflow.api import connect
    from opsflow.api.scaler import ScalerAPI

    return ScalerAPI(connect(), config, state_path=state, blocks=blocks)


def _show(result: SectionsView) -> None:
    for title, columns, rows in result.sections():
        table = Table(*columns, title=title, title_justify="left", show_header=columns[0] != "field")
        for row in rows:
            table.add_row(*row)
        console.print(table)


@app.command()
def preview(config: ConfigOpt, state: StateOpt = None, blocks: BlocksOpt = None) -> None:
    """What the next tick would do (observe + decide): no worker is started or stopped, no state saved."""
    _show(_api(config, state, blocks).preview())


@app.command()
def tick(config: ConfigOpt, state: StateOpt = None, blocks: BlocksOpt = None) -> None:
    """One Monitor → Analyse → Plan → Execute tick in this shell, printed."""
    result = _api(config, state, blocks).tick()
    _show(result)
    if result.error:
        exit_with_error(f"backend failed: {result.error} (state kept; retried next tick)", FAILED)


@app.command()
def run(
    config: ConfigOpt,
    ticks: Annotated[int | None, typer.Option(help="Stop after this many ticks (default: run until cancelled)")] = None,
    state: StateOpt = None,
    blocks: BlocksOpt = None,
) -> None:
    """Start the controller loop: the `spark-autoscale` deployment, on the site's worker (see the Prefect UI)."""
    started = _api(config, state, blocks).run(ticks=ticks)
    console.print(f"started {started.name} ({started.flow_run_id}): {started.url}", soft_wrap=True)


@app.command()
def status(config: ConfigOpt, state: StateOpt = None, blocks: BlocksOpt = None) -> None:
    """Heat per metric, cooldown, workers at the master, and the recent decisions."""
    _show(_api(config, state, blocks).status())


@app.command()
def validate(config: ConfigOpt) -> None:
    """Check the config file (every problem on its own line: file:line: key: message); reads nothing else."""
    cfg = _api(config, None).validate()
    where = f"Blocks {cfg.opsflow.block_name!r}" if cfg.opsflow.block_name else "the URLs of the file"
    bounds = cfg.worker.thresholds
    console.print(
        f"ok: {config}: {len(cfg.metrics)} metric(s), {bounds.min}-{bounds.max} workers, "
        f"backend {cfg.opsflow.backend}, reads and acts through {where}",
        soft_wrap=True,
    )
