"""`node-update-tick`: the Node Update service's orchestrator as a scheduled Prefect flow (seed section VI).

Wiring only: load the ``NodeUpdateSettings`` and ``SlurmCluster`` Blocks, run one tick
(:func:`node_update.tick.run_tick`: snapshot → pure plan → at most one reservation change and one apply job), and
report it through Prefect (logs, a progress and a state-table artifact, events for failures and halted updates).
The operator actions are flows too, so they can be run (and audited) from the Prefect UI.

The canary approval gate (``publish --approve``): when a tick finds a gated update's canary DONE, it starts one
``node-update-approval`` run for it, which suspends with a form (widen, widen with a new res_limit, retire; a
comment). The tick goes on every minute for every other update meanwhile; the answer is recorded in the catalog
(and a new res_limit in the settings Block), and the next tick widens or has retired the update.

Example:
    $ prefect deployment run node-update-tick/node-update-tick -p dry_run=true
"""

from __future__ import annotations

import time

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, create_table_artifact
from prefect.events import emit_event
from prefect.flow_runs import suspend_flow_run
from prefect.input import RunInput
from prefect.settings import PREFECT_API_URL

from blocks import NodeUpdateSettings, SlurmCluster, load_block
from node_update import catalog as catalog_io
from node_update import spool
from node_update.config import load_config
from node_update.models import CanaryDecision, CatalogEntry, NodeState, NodeUpdateConfig
from node_update.operator import Resolution, resolve_failure
from node_update.planner import done_nodes
from node_update.prefect_api import request_approvals
from node_update.slurm import NodeUpdateSlurm
from node_update.tick import TickReport, run_tick
from opsflow.adapters.prefect_runs import ui_url
from opsflow.adapters.slurm import SlurmCLI

#: How long an approval run stays suspended; past it the next tick asks again with a new run.
APPROVAL_TIMEOUT_S = 30 * 24 * 3600


class CanaryDecisionForm(RunInput, CanaryDecision):
    """The approval form of a gated update (a Prefect RunInput with the fields of :class:`CanaryDecision`)."""


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
    if not dry_run:
        ask_for_approvals(cfg, report.plan.awaiting_approval, settings_block)
    return report


def ask_for_approvals(cfg: NodeUpdateConfig, awaiting: dict[str, list[str]], settings_block: str | None) -> None:
    """One live approval run per gated update whose canary is done (a new one for a run that is gone)."""
    logger = get_run_logger()
    started = request_approvals(cfg.root, awaiting, settings_block)
    for codename, nodes in sorted(awaiting.items()):
        run_id = started.get(codename)
        if run_id is None:
            logger.info("%s: canary done on %s; waiting for a decision", codename, ", ".join(nodes))
            continue
        url = ui_url(str(PREFECT_API_URL.value() or ""), run_id)
        logger.warning("%s: canary done on %s; decide in the Prefect UI: %s", codename, ", ".join(nodes), url)
        emit_event(
            event="opsflow.node-update.awaiting-approval",
            resource={"prefect.resource.id": f"opsflow.node-update.{codename}"},
            payload={"codename": codename, "canary_nodes": nodes, "flow_run_id": run_id, "url": url},
        )


@flow(name="node-update-publish")
def publish_update(
    codename: str, nodes: str, canary: int = 0, approve: bool = False, settings_block: str | None = "local"
) -> str:
    """Publish ``<root>/updates/<codename>`` for the nodes of a Slurm hostlist (F4, F5); with ``approve`` the
    rollout waits for a decision in the Prefect UI once its ``canary`` nodes are DONE."""
    cfg, _ = load_settings(settings_block)
    entry = catalog_io.publish(cfg.root, codename, nodes, canary=canary, approve=approve)
    return catalog_io.render_entry(entry)


def approval_description(entry: CatalogEntry, done: list[str], cfg: NodeUpdateConfig) -> str:
    """The form's text: what was updated and checked, what widening means."""
    return (
        f"**Node update {entry.codename}**: the canary is done on {', '.join(done)} (`update.sh`, the bundle's "
        f"`check.sh` and the site check passed; logs under `{cfg.root}/spool/logs/`).\n\n"
        f"**widen** rolls it out to the other {len(entry.nodes) - len(done)} of its {len(entry.nodes)} nodes, at "
        f"most res_limit = {cfg.res_limit} at a time (give a new **res_limit** to change that); **retire** stops "
        "it on every node that has not started it. The comment is recorded in the catalog."
    )


@flow(name="node-update-approval")
def approve_canary(codename: str, settings_block: str | None = "local") -> str:
    """Ask an operator, through a form in the Prefect UI, whether a gated update widens past its canary."""
    logger = get_run_logger()
    cfg, _ = load_settings(settings_block)
    entry = catalog_io.load_catalog(cfg.root).find(codename)
    if entry is None or entry.approval != "pending":
        state = "not in the catalog" if entry is None else f"approval={entry.approval or 'none'}"
        logger.info("%s: no decision to ask for (%s)", codename, state)
        return f"{codename}: nothing to decide ({state})"
    ledger = spool.load_ledger(cfg.root)
    done = done_nodes(codename, entry.nodes, ledger)
    form = CanaryDecisionForm.with_initial_data(description=approval_description(entry, done, cfg))
    # The process exits until the form is answered; the run then starts again here and gets the answer.
    answer = suspend_flow_run(wait_for_input=form, key=f"canary-{codename}", timeout=APPROVAL_TIMEOUT_S)
    decision = CanaryDecision.model_validate(answer.model_dump(include=set(CanaryDecision.model_fields)))
    by = decision.by.strip() or "an operator (Prefect UI)"
    if decision.action == "widen" and decision.res_limit and settings_block is not None:
        block = load_block(NodeUpdateSettings, settings_block)
        block.res_limit = decision.res_limit
        block.save(settings_block, overwrite=True)
        if load_settings(settings_block)[0].res_limit != decision.res_limit:
            logger.warning("res_limit %d saved in the Block, but the environment overrides it", decision.res_limit)
    elif decision.res_limit and settings_block is None:
        logger.warning("res_limit %d not saved: this flow reads no settings Block", decision.res_limit)
    catalog_io.record_decision(cfg.root, codename, decision, by=by, at=time.time())
    limit = f", res_limit {decision.res_limit}" if decision.res_limit else ""
    text = f"{codename}: {decision.action} by {by}{limit}"
    logger.info("%s%s", text, f": {decision.comment}" if decision.comment else "")
    create_markdown_artifact(
        key=f"node-update-decision-{codename}",
        markdown=f"**{text}**\n\ncanary: {', '.join(done)}\n\n{decision.comment}",
    )
    emit_event(
        event=f"opsflow.node-update.{'widened' if decision.action == 'widen' else 'retired'}",
        resource={"prefect.resource.id": f"opsflow.node-update.{codename}"},
        payload={**decision.model_dump(), "by": by, "canary_nodes": done},
    )
    return text


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
