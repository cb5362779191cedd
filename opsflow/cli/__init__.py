"""The `opsflow` command: the local stack (`up`, `down`, `status`, `env`, `demo`) and one group per subsystem.

Example:
    $ opsflow up --only prefect,slurm
    $ opsflow status
    $ eval "$(opsflow env)" && sinfo
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Annotated

# The safety net against Prefect's "temporary server": before anything can import Prefect (which freezes its
# settings at import), turn its ephemeral mode off unless the user chose a value (under either of its names,
# prefect/settings/models/server/ephemeral.py). A command that ran a flow with no API would otherwise start a
# server for 20-30 s and record the run in a throw-away database; now Prefect refuses at once, and the group below
# says so in one line. The stack's own processes do not inherit it (`child_env` drops every PREFECT_* variable).
os.environ.setdefault(
    "PREFECT_SERVER_EPHEMERAL_ENABLED", os.environ.get("PREFECT_SERVER_ALLOW_EPHEMERAL_MODE", "false")
)

import typer
from rich.table import Table

from opsflow.cli._utilities import console, exit_with_error, group
from opsflow.cli.ci import app as ci_app
from opsflow.cli.files import app as files_app
from opsflow.cli.nodes import app as nodes_app
from opsflow.cli.nu import app as nu_app
from opsflow.cli.pipeline import pipeline_app, project_app
from opsflow.cli.scaler import app as scaler_app
from opsflow.cli.stack import app as stack_app
from opsflow.cli.trials import app as trials_app
from opsflow.home import default_home
from opsflow.stack.config import StackConfig

app = group("Prefect flows for the operations of a GPU/HPC computing centre.")
app.add_typer(stack_app, name="stack")
app.add_typer(nu_app, name="nu")
app.add_typer(scaler_app, name="scaler")
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(project_app, name="project")
app.add_typer(ci_app, name="ci")
app.add_typer(trials_app, name="trials")
app.add_typer(files_app, name="files")
app.add_typer(nodes_app, name="nodes")

HomeOpt = Annotated[Path | None, typer.Option("--home", help="Stack directory (default: $OPSFLOW_HOME or ./.state)")]


def _cfg(home: Path | None) -> StackConfig:
    return StackConfig.load(home.resolve() if home else default_home())


@app.command()
def up(
    only: Annotated[
        str | None, typer.Option(help="Comma-separated components (prefect, slurm, spark, prometheus, podman, workers)")
    ] = None,
    home: HomeOpt = None,
) -> None:
    """Start the local stack (idempotent: what already runs is left alone)."""
    from opsflow.stack.manager import up as stack_up

    cfg = _cfg(home)
    started = stack_up(cfg, only.split(",") if only else None, echo=console.print)
    console.print("nothing to do: the stack was already up" if not started else f"started: {', '.join(started)}")
    console.print(f"Prefect UI: http://127.0.0.1:{cfg.prefect_port}")


@app.command()
def deploy(home: HomeOpt = None) -> None:
    """Re-apply the work pools, the `local` Blocks and every deployment of prefect.yaml to the running server."""
    from opsflow.stack.manager import components

    (prefect,) = components(_cfg(home), ["prefect"])
    if not prefect.is_up():
        exit_with_error("the Prefect server of this stack is not up: run `opsflow up` first")
    prefect.after_start()
    console.print("deployments, work pools and blocks applied")


@app.command()
def down(home: HomeOpt = None) -> None:
    """Stop every component of the local stack and any process of it left behind."""
    from opsflow.stack.manager import down as stack_down

    stack_down(_cfg(home), echo=console.print)


@app.command()
def status(home: HomeOpt = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """One line per component: state, URL, pid."""
    from opsflow.stack.manager import status as stack_status

    rows = stack_status(_cfg(home))
    if as_json:
        typer.echo(json.dumps([r.model_dump() for r in rows], indent=2))
        return
    table = Table("component", "state", "url", "pid", "detail")
    colours = {"up": "green", "down": "red", "degraded": "yellow", "disabled": "dim"}
    for r in rows:
        table.add_row(r.name, f"[{colours[r.state]}]{r.state}[/]", r.url or "", str(r.pid or ""), r.detail)
    console.print(table)


@app.command()
def env(home: HomeOpt = None) -> None:
    """Print `export` lines pointing a shell at the stack: eval "$(opsflow env)"."""
    from opsflow.stack.env import stack_env

    for key, value in stack_env(_cfg(home)).items():
        typer.echo(f"export {key}={shlex.quote(value)}")


@app.command()
def demo(
    name: Annotated[str | None, typer.Argument(help="A longer showcase instead: trials")] = None,
    home: HomeOpt = None,
    timeout: Annotated[int, typer.Option(help="Seconds to wait for each run")] = 600,
) -> None:
    """Bring the stack up and run every process's demo flow through its deployment (watch it in the UI).

    With NAME, one subsystem's longer showcase instead (`opsflow demo trials`: the example configuration trial).
    """
    from opsflow.stack.demo import run_demo
    from opsflow.stack.manager import up as stack_up
    from opsflow.stack.trials_demo import SHOWCASES

    if name is not None and name not in SHOWCASES:
        exit_with_error(f"no showcase named {name!r} (there are: {', '.join(SHOWCASES)})", 2)
    cfg = _cfg(home)
    stack_up(cfg, echo=console.print)
    ok = SHOWCASES[name](cfg, console.print) if name else run_demo(cfg, timeout_s=timeout, echo=console.print)
    console.print(f"Prefect UI: http://127.0.0.1:{cfg.prefect_port}  (user:password in {cfg.home}/prefect/auth-string)")
    if not ok:
        raise typer.Exit(1)
