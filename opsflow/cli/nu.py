"""`opsflow nu …`: the operator and node-side commands of the Node Update service.

Settings come from the environment (``OPSFLOW_NU_ROOT``, ``OPSFLOW_NU_RES_LIMIT``, ``OPSFLOW_NU_RESERVATION``,
``OPSFLOW_NU_MAX_FAILURES``) over the local stack's defaults, so no Prefect server is needed to publish or inspect;
``--block NAME`` reads a ``NodeUpdateSettings`` Block instead (the environment still overrides it).

Example:
    $ opsflow nu publish 20261123120000 --bundle examples/node_update/bundle --nodes 'nid[001-008]'
    $ opsflow nu tick --dry-run
    $ opsflow nu status --json
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from node_update import catalog as catalog_io
from node_update import node as node_side
from node_update import spool
from node_update.operator import Resolution, ResolveError, node_statuses, resolve_failure
from node_update.settings import NodeUpdateConfig, resolve
from opsflow.errors import InputError

app = typer.Typer(help="Node update rollout on Slurm (publish, retire, tick, status, resolve).", no_args_is_help=True)
console = Console(width=140)
BlockOpt = Annotated[str | None, typer.Option("--block", help="Read settings from this NodeUpdateSettings block")]


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}", soft_wrap=True)
    return typer.Exit(2)


def _config(block: str | None) -> NodeUpdateConfig:
    try:
        if block:
            from blocks import NodeUpdateSettings, load_block

            return load_block(NodeUpdateSettings, block).resolved()
        return resolve()
    except InputError as exc:
        raise _fail(str(exc)) from exc


def _node(node: str | None) -> str:
    name = node or os.environ.get("SLURMD_NODENAME")
    if not name:
        raise _fail("no node name: pass NODE or run under slurmd (SLURMD_NODENAME)")
    try:
        return spool.safe_name(name)
    except spool.SpoolError as exc:  # a path that leaves its directory, a shell metacharacter, ...
        raise _fail(str(exc)) from exc


@app.command()
def publish(
    codename: str,
    nodes: Annotated[str, typer.Option(help="Slurm hostlist of the nodes to update, e.g. 'nid[001-004],nid007'")],
    bundle: Annotated[Path | None, typer.Option(help="Directory with update.sh, copied into the root")] = None,
    canary: Annotated[int, typer.Option(help="Update this many nodes first; widen once all succeeded")] = 0,
    block: BlockOpt = None,
) -> None:
    """Publish an update bundle for some nodes (F4, F5): appends one catalog line."""
    cfg = _config(block)
    try:
        entry = catalog_io.publish(cfg.root, codename, nodes, canary=canary, bundle=bundle)
    except (ValueError, OSError) as exc:
        raise _fail(str(exc)) from exc
    canary_note = f", canary {canary}" if canary else ""
    console.print(f"published {entry.codename} for {len(entry.nodes)} node(s){canary_note}")


@app.command()
def retire(codename: str, block: BlockOpt = None) -> None:
    """Retire an update (F4): no node starts it any more; running applies finish."""
    cfg = _config(block)
    try:
        catalog_io.retire(cfg.root, codename)
    except (ValueError, OSError) as exc:
        raise _fail(str(exc)) from exc
    console.print(f"retired {codename}")


@app.command("list")
def list_updates(block: BlockOpt = None) -> None:
    """The active updates of the catalog."""
    cfg = _config(block)
    cat = catalog_io.load_catalog(cfg.root)
    table = Table("codename", "nodes", "canary")
    for entry in cat.entries:
        table.add_row(entry.codename, catalog_io.render_entry(entry).split()[1], str(entry.canary or ""))
    console.print(table)
    if cat.error:
        raise _fail(cat.error)


@app.command()
def status(block: BlockOpt = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Per node: state, level and reason, as of the last tick."""
    cfg = _config(block)
    rows = node_statuses(spool.load_ledger(cfg.root))
    if as_json:
        typer.echo(json.dumps([r.model_dump() for r in rows], indent=2))
        return
    table = Table("node", "state", "level", "reason")
    for r in rows:
        table.add_row(r.node, r.state, r.level or "", r.reason)
    console.print(table)


@app.command()
def tick(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Compute and print the plan; change nothing")] = False,
    block: BlockOpt = None,
) -> None:
    """Run one orchestrator tick now, as the `node-update-tick` flow (shows in the Prefect UI)."""
    from flows.node_update_rollout import node_update_tick

    try:
        report = node_update_tick(dry_run=dry_run, settings_block=block)
    except (InputError, spool.SpoolError) as exc:
        raise _fail(str(exc)) from exc
    plan = report.plan
    verb = "would " if dry_run else ""
    console.print(
        f"{verb}reserve {plan.reserve or '-'}; {verb}start {plan.start or '-'}; {verb}release {plan.release or '-'}; "
        f"reservation: {plan.reservation or '(none)'}; {report.slurm_commands} Slurm commands"
    )
    for note in [*plan.notes, *report.problems, *(f"{c}: {w}" for c, w in plan.halted.items())]:
        console.print(f"[yellow]{note}[/yellow]")


@app.command("resolve")
def resolve_cmd(
    node: str,
    retry: Annotated[bool, typer.Option("--retry", help="Try the failed update again")] = False,
    release: Annotated[bool, typer.Option("--release", help="Give the node back without the failed update")] = False,
    block: BlockOpt = None,
) -> None:
    """Move a FAIL node on (the only way out of FAIL)."""
    if retry == release:
        raise _fail("say exactly one of --retry or --release")
    cfg = _config(block)
    try:
        row = resolve_failure(cfg.root, node, Resolution.RETRY if retry else Resolution.RELEASE)
    except ResolveError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"{row.node}: {row.reason}; the next tick acts on it")


# --- node side: run on the compute nodes, never call Slurm or Prefect ------------------------------------------
@app.command()
def boot(node: Annotated[str | None, typer.Argument()] = None) -> None:
    """Boot hook (F7): record the boot time as this node's level and report it."""
    cfg = resolve()
    node_side.boot(cfg.root, _node(node))


@app.command()
def epilog(node: Annotated[str | None, typer.Argument()] = None) -> None:
    """Epilog / periodic check: if this node is behind, drop one request into the spool. Always exits 0."""
    cfg = resolve()
    try:
        node_side.check(cfg.root, _node(node), source="epilog")
    except Exception as exc:  # an epilog that fails drains the node: report, never raise
        print(f"opsflow nu epilog: {exc}", file=sys.stderr)


@app.command()
def apply(node: Annotated[str | None, typer.Argument()] = None) -> None:
    """Apply every pending update on this node, in codename order (run by the tick's job step)."""
    cfg = resolve()
    results = node_side.apply(cfg.root, _node(node))
    if any(not r.ok for r in results):
        raise typer.Exit(1)


@app.command()
def simulate(
    nodes: Annotated[int, typer.Option(help="Nodes in the synthetic cluster")] = 7517,
    res_limit: Annotated[int, typer.Option(help="RES_LIMIT of the reservation")] = 64,
    utilization: Annotated[float, typer.Option(help="Share of nodes busy with jobs")] = 0.99,
    mean_job_hours: Annotated[float, typer.Option(help="Mean job length (exponential)")] = 6.0,
    update_minutes: Annotated[float, typer.Option(help="Time update.sh takes on a node")] = 10.0,
    tick_minutes: Annotated[float, typer.Option(help="Interval between ticks")] = 1.0,
    seed: Annotated[int, typer.Option(help="Random seed of the job trace")] = 1,
) -> None:
    """Predict a rollout's makespan with the real planner on a synthetic job trace, next to its lower bound."""
    from pydantic import ValidationError

    from node_update.simulate import SimulationConfig, format_result
    from node_update.simulate import simulate as run_simulation

    try:
        cfg = SimulationConfig(
            nodes=nodes,
            res_limit=res_limit,
            utilization=utilization,
            mean_job_hours=mean_job_hours,
            update_minutes=update_minutes,
            tick_minutes=tick_minutes,
            seed=seed,
        )
    except ValidationError as exc:
        raise _fail(str(exc)) from exc
    console.print(format_result(run_simulation(cfg)))
