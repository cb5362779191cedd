"""`opsflow nu …`: the operator and node-side commands of the Node Update service.

Operator commands are one call each of ``opsflow.connect().node_update`` (:class:`opsflow.api.node_update.
NodeUpdateAPI`): the configuration comes from the environment (``OPSFLOW_NU_ROOT``, ``OPSFLOW_NU_RES_LIMIT``,
``OPSFLOW_NU_RESERVATION``, ``OPSFLOW_NU_MAX_FAILURES``) over the ``NodeUpdateSettings`` Block of a site (or the
one ``--block NAME`` names) over the local stack's defaults. ``tick`` runs the tick in this process; ``status``,
``list`` and ``tick --dry-run`` read files only and do not import Prefect.

The node-side commands (``boot``, ``epilog``, ``apply``) run on compute nodes, called by slurmd and by the tick's
apply job with these argument lists: they read the environment only and never reach a network service.

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
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.table import Table

from opsflow.cli._utilities import console, group
from opsflow.errors import InputError

if TYPE_CHECKING:
    from opsflow.api.node_update import NodeUpdateAPI

app = group("Node update rollout on Slurm (publish, retire, tick, status, resolve).")
BlockOpt = Annotated[str | None, typer.Option("--block", help="Read settings from this NodeUpdateSettings block")]


def _api(block: str | None = None) -> NodeUpdateAPI:
    import opsflow

    return opsflow.connect().node_update.using(block)


@app.command()
def publish(
    codename: str,
    nodes: Annotated[str, typer.Option(help="Slurm hostlist of the nodes to update, e.g. 'nid[001-004],nid007'")],
    bundle: Annotated[Path | None, typer.Option(help="Directory with update.sh, copied into the root")] = None,
    canary: Annotated[int, typer.Option(help="Update this many nodes first; widen once all succeeded")] = 0,
    approve: Annotated[
        bool, typer.Option("--approve", help="Once the canary is DONE, wait for a decision (Prefect UI, `nu decide`)")
    ] = False,
    block: BlockOpt = None,
) -> None:
    """Publish an update bundle for some nodes (F4, F5): appends one catalog line."""
    update = _api(block).publish(codename, nodes=nodes, bundle=bundle, canary=canary, approve=approve)
    canary_note = f", canary {update.canary}" if update.canary else ""
    gate = ", then waits for approval" if update.approval == "pending" else ""
    console.print(f"published {update.codename} for {update.node_count} node(s){canary_note}{gate}")


@app.command()
def decide(
    codename: str,
    retire: Annotated[bool, typer.Option("--retire", help="Retire the update instead of widening it")] = False,
    res_limit: Annotated[int | None, typer.Option(help="Widen with this res_limit (saved in the settings)")] = None,
    comment: Annotated[str, typer.Option(help="Why (recorded in the catalog)")] = "",
    block: BlockOpt = None,
) -> None:
    """Answer a gated update whose canary is done: widen it (default) or --retire it; the same answer as the
    form of its `node-update-approval` run in the Prefect UI."""
    action: Literal["widen", "retire"] = "retire" if retire else "widen"
    update = _api(block).decide(codename, action, res_limit=res_limit, comment=comment)
    console.print(f"{codename}: {'retired' if retire else f'widened to {update.node_count} node(s)'}")


@app.command()
def retire(codename: str, block: BlockOpt = None) -> None:
    """Retire an update (F4): no node starts it any more; running applies finish."""
    update = _api(block).retire(codename)
    console.print(f"retired {update.codename}")


@app.command("list")
def list_updates(block: BlockOpt = None) -> None:
    """The active updates of the catalog."""
    table = Table("codename", "nodes", "canary", "approval")
    for update in _api(block).updates():
        table.add_row(update.codename, update.nodes, str(update.canary or ""), update.approval)
    console.print(table)


@app.command()
def status(block: BlockOpt = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Per node: state, level and reason, as of the last tick."""
    rows = _api(block).status()
    if as_json:
        typer.echo(json.dumps([r.model_dump() for r in rows], indent=2))
        return
    table = Table("node", "state", "level", "reason", "hold")
    for r in rows:
        table.add_row(r.node, r.state, r.level or "", r.reason, r.hold)
    console.print(table)


@app.command()
def hold(
    node: str,
    reason: Annotated[str, typer.Option(help="Why (shown in status, with who)")],
    out: Annotated[bool, typer.Option("--out", help="Keep it out of the reservation instead of in")] = False,
    block: BlockOpt = None,
) -> None:
    """Keep NODE in the reservation (no update starts on it; counts against res_limit), or --out of it."""
    row = _api(block).hold(node, reason=reason, out=out)
    console.print(f"{row.node}: held {row.hold}; the next tick applies it")


@app.command()
def unhold(node: str, block: BlockOpt = None) -> None:
    """Lift an operator's hold on NODE."""
    row = _api(block).unhold(node)
    console.print(f"{row.node}: {row.reason}; the next tick acts on it")


@app.command()
def tick(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Compute and print the plan; change nothing")] = False,
    block: BlockOpt = None,
) -> None:
    """Run one orchestrator tick now, in this process (the scheduled `node-update-tick` flow runs the same)."""
    report = _api(block).tick(dry_run=dry_run)
    plan = report.plan
    verb = "would " if dry_run else ""
    console.print(
        f"{verb}reserve {plan.reserve or '-'}; {verb}start {plan.start or '-'}; {verb}release {plan.release or '-'}; "
        f"reservation: {plan.reservation or '(none)'}; {report.slurm_commands} Slurm commands; "
        f"{report.updated} of {report.covered} nodes updated"
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
    if retry == release:  # before any file is read: a usage error
        raise InputError("resolve", [(0, "--retry/--release", "say exactly one of them")])
    row = _api(block).resolve(node, retry=retry, release=release)
    console.print(f"{row.node}: {row.reason}; the next tick acts on it")


@app.command()
def simulate(
    nodes: Annotated[int, typer.Option(help="Nodes in the synthetic cluster")] = 7517,
    res_limit: Annotated[int, typer.Option(help="RES_LIMIT of the reservation")] = 64,
    utilization: Annotated[float, typer.Option(help="Share of nodes busy with jobs")] = 0.99,
    mean_job_hours: Annotated[float, typer.Option(help="Mean job length (exponential)")] = 6.0,
    update_minutes: Annotated[float, typer.Option(help="Time update.sh takes on a node")] = 10.0,
    tick_minutes: Annotated[float, typer.Option(help="Interval between ticks")] = 1.0,
    seed: Annotated[int, typer.Option(help="Random seed of the job trace")] = 1,
    saturated: Annotated[bool, typer.Option(help="A queue that never empties: freed nodes take a job at once")] = False,
    reserve_busy: Annotated[bool, typer.Option(help="Free slots take busy nodes ending soonest")] = True,
    compare: Annotated[bool, typer.Option(help="Run idle-only and reserve-busy side by side")] = False,
) -> None:
    """Predict a rollout's makespan with the real planner on a synthetic job trace, next to its lower bound."""
    from node_update.simulate import SimulationResult, format_comparison

    api = _api()

    def run(busy: bool) -> SimulationResult:
        return api.simulate(
            nodes=nodes,
            res_limit=res_limit,
            utilization=utilization,
            mean_job_hours=mean_job_hours,
            update_minutes=update_minutes,
            tick_minutes=tick_minutes,
            seed=seed,
            saturated=saturated,
            reserve_busy=busy,
        )

    console.print(format_comparison(run(False), run(True)) if compare else str(run(reserve_busy)))


# --- node side: run on the compute nodes by slurmd and the apply job; never call Slurm, Prefect or the API -------
def _node(node: str | None) -> str:
    from node_update import spool

    name = node or os.environ.get("SLURMD_NODENAME")
    if not name:
        raise InputError("NODE", [(0, "node", "no node name: pass NODE or run under slurmd (SLURMD_NODENAME)")])
    return spool.safe_name(name)


def _root() -> Path:
    from node_update.config import load_config

    return load_config().root


@app.command()
def boot(node: Annotated[str | None, typer.Argument()] = None) -> None:
    """Boot hook (F7): record the boot time as this node's level and report it."""
    from node_update import node as node_side

    node_side.boot(_root(), _node(node))


@app.command()
def epilog(node: Annotated[str | None, typer.Argument()] = None) -> None:
    """Epilog / periodic check: if this node is behind, drop one request into the spool. Always exits 0."""
    from node_update import node as node_side

    try:
        node_side.check(_root(), _node(node), source="epilog")
    except Exception as exc:  # an epilog that fails drains the node: report, never raise
        print(f"opsflow nu epilog: {exc}", file=sys.stderr)


@app.command("check")
def check_cmd(node: Annotated[str | None, typer.Argument()] = None) -> None:
    """The seed's periodic check (cron / systemd timer): compare local.version with the catalog; if behind, print
    what is pending and drop one request into the spool. Never calls Slurm or Prefect; exits 0."""
    from node_update import node as node_side

    name = _node(node)
    try:
        pending = node_side.check(_root(), name, source="check")
    except Exception as exc:  # a timer that fails every minute helps nobody: report, never raise
        print(f"opsflow nu check: {exc}", file=sys.stderr)
        return
    print(f"{name}: behind, requested {', '.join(pending)}" if pending else f"{name}: nothing pending")


@app.command()
def apply(node: Annotated[str | None, typer.Argument()] = None) -> None:
    """Apply every pending update on this node, in codename order (run by the tick's apply job)."""
    from node_update import node as node_side

    results = node_side.apply(_root(), _node(node))
    if any(not r.ok for r in results):
        raise typer.Exit(1)
