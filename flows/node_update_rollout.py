"""`node-update-tick`: the Node Update service's orchestrator as a scheduled Prefect flow (seed section VI).

Wiring only: load the ``NodeUpdateSettings`` and ``SlurmCluster`` Blocks, run one tick
(:func:`node_update.tick.run_tick`: snapshot → pure plan → at most one reservation change and one apply job), and
report it through Prefect (logs, a progress and a state-table artifact, events for failures and halted updates).
The operator actions are flows too, so they can be run (and audited) from the Prefect UI.

Example:
    $ prefect deployment run node-update-tick/node-update-tick -p dry_run=true
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, create_table_artifact
from prefect.events import emit_event

from blocks import NodeUpdateSettings, SlurmCluster, load_block
from node_update import catalog as catalog_io
from node_update.config import load_config
from node_update.models import NodeState, NodeUpdateConfig
from node_update.operator import Resolution, resolve_failure
from node_update.slurm import NodeUpdateSlurm
from node_update.tick import TickReport, run_tick
from opsflow.adapters.slurm import SlurmCLI


def load_settings(block_name: str | None) -> tuple[NodeUpdateConfig, NodeUpdateSlurm]:
    """From the named Blocks (env overrides applied), or from the environment alone when ``block_name`` is None."""
    if block_name is None:
        return load_config(), NodeUpdateSlurm(SlurmCLI())
    block = load_block(NodeUpdateSettings, block_name)
    cluster = load_block(SlurmCluster, block.slurm_block)
    return block.resolved(), NodeUpdateSlurm(cluster.get_client())


def report_tick(report: TickReport) -> None:
    """Logs, artifacts and events of one tick (events and progress only for a tick that acted)."""
    logger = get_run_logger()
    plan, dry_run = report.plan, report.dry_run
    prefix = "DRY RUN: would " if dry_run else ""
    logger.info(
        "%sreserve %s, start %s, release %s; reservation %s; %d Slurm commands",
        prefix,
        plan.reserve or "-",
        plan.start or "-",
        plan.release or "-",
        plan.reservation or "(none)",
        report.slurm_commands,
    )
    for note in [*plan.notes, *report.problems]:
        logger.warning(note)
    if not dry_run:
        create_progress_artifact(
            progress=100.0 * report.updated / report.covered if report.covered else 100.0,
            key="node-update-progress",
            description=f"{report.updated} of {report.covered} nodes have every active update",
        )
    rows: list[dict[str, object]] = [{"state": s, "nodes": n, "reason": ""} for s, n in report.counts.items()]
    rows += [
        {"state": "FAIL", "nodes": node, "reason": rec.reason}
        for node, rec in sorted(plan.ledger.nodes.items())
        if rec.state == NodeState.FAIL
    ]
    create_table_artifact(key="node-update-states", table=rows, description=f"{prefix}node states after this tick")
    if plan.halted:
        create_markdown_artifact(
            key="node-update-halted",
            markdown="\n".join(f"- **{c}** starts on no new node: {why}" for c, why in plan.halted.items()),
        )
    if dry_run:
        return
    for node, reason in plan.new_failures.items():
        emit_event(
            event="opsflow.node-update.failed",
            resource={"prefect.resource.id": f"opsflow.node.{node}", "prefect.resource.name": node},
            payload={"node": node, "reason": reason},
        )
    if plan.manual_edit:
        emit_event(
            event="opsflow.node-update.reservation-edited",
            resource={"prefect.resource.id": "opsflow.node-update.reservation"},
            payload={"edit": plan.manual_edit, "set_back_to": plan.reservation or []},
        )
    for node in plan.restored:
        emit_event(
            event="opsflow.node-update.fail-restored",
            resource={"prefect.resource.id": f"opsflow.node.{node}", "prefect.resource.name": node},
            payload={"node": node, "reason": plan.ledger.nodes[node].reason},
        )
    for codename, why in report.newly_halted.items():
        emit_event(
            event="opsflow.node-update.halted",
            resource={"prefect.resource.id": f"opsflow.node-update.{codename}"},
            payload={"codename": codename, "reason": why},
        )


@flow(name="node-update-tick", log_prints=True)
def node_update_tick(dry_run: bool = False, settings_block: str | None = "local") -> TickReport:
    """One orchestrator tick; reports a progress and a state table artifact, and events for failures."""
    cfg, slurm = load_settings(settings_block)
    report = run_tick(cfg, slurm, dry_run=dry_run)
    report_tick(report)
    return report


@flow(name="node-update-publish")
def publish_update(codename: str, nodes: str, canary: int = 0, settings_block: str | None = "local") -> str:
    """Publish ``<root>/updates/<codename>`` for the nodes of a Slurm hostlist (F4, F5)."""
    cfg, _ = load_settings(settings_block)
    entry = catalog_io.publish(cfg.root, codename, nodes, canary=canary)
    return catalog_io.render_entry(entry)


@flow(name="node-update-retire")
def retire_update(codename: str, settings_block: str | None = "local") -> str:
    """Retire an update (F4): no node starts it any more."""
    cfg, _ = load_settings(settings_block)
    catalog_io.retire(cfg.root, codename)
    return codename


@flow(name="node-update-resolve")
def resolve_node(node: str, how: Resolution, settings_block: str | None = "local") -> str:
    """Move a FAIL node on: retry the failed update, or release the node without it."""
    cfg, _ = load_settings(settings_block)
    return resolve_failure(cfg.root, node, how).reason
