"""`node-update-tick`: the Node Update service's orchestrator as a scheduled Prefect flow (seed section VI).

One tick = one Slurm snapshot (3 commands) → plan (pure) → at most one reservation change and one apply job, so
slurmctld sees a constant load whatever the number of nodes or requests (the seed's Orchestrator, by aggregation).
Nothing lives in memory between ticks: a tick killed anywhere is repaired by the next one. Only one tick acts at a
time (a lock on the shared root).

Example:
    $ opsflow nu tick --dry-run
    >>> # node_update_tick(dry_run=True)
"""

from __future__ import annotations

import os
from collections import Counter

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, create_table_artifact
from prefect.events import emit_event
from pydantic import BaseModel

from blocks import NodeUpdateSettings, SlurmCluster, load_block
from node_update import catalog as catalog_io
from node_update import spool
from node_update.models import Catalog, ClusterSnapshot, NodeState, Plan
from node_update.operator import Resolution, resolve_failure
from node_update.planner import halted_updates, plan_tick
from node_update.settings import NodeUpdateConfig, node_env, resolve
from node_update.slurm import NodeUpdateSlurm
from opsflow.adapters.slurm import SlurmCLI
from opsflow.home import opsflow_script

APPLY_JOB = "opsflow-nu-apply"


class TickReport(BaseModel):
    dry_run: bool
    plan: Plan
    slurm_commands: int
    problems: list[str]
    newly_halted: dict[str, str] = {}


def fault_point(step: str) -> None:
    """Die here, like a killed process, when ``OPSFLOW_NU_FAULT`` names this step (fault-injection tests)."""
    if os.environ.get("OPSFLOW_NU_FAULT") == step:
        os._exit(99)


def run_tick(cfg: NodeUpdateConfig, slurm: NodeUpdateSlurm, dry_run: bool = False) -> TickReport:
    """Observe, plan, act: the whole tick, without Prefect (the flow and `opsflow nu tick` call this)."""
    with spool.root_lock(cfg.root):
        catalog = catalog_io.load_catalog(cfg.root)
        ledger = spool.load_ledger(cfg.root)
        reports, report_problems, newest_report = spool.read_new_reports(cfg.root, ledger.reports_seen_ns)
        results, result_problems = spool.read_results(cfg.root)
        snapshot = slurm.snapshot(cfg.reservation, apply_job_name=APPLY_JOB)
        fault_point("after_snapshot")
        plan = plan_tick(snapshot, catalog, ledger, reports, results, cfg)
        plan.ledger.reports_seen_ns = newest_report
        already = halted_updates(catalog, ledger, cfg)
        if not dry_run:
            act(cfg, slurm, snapshot, plan)
            spool.save_ledger(cfg.root, plan.ledger)
            fault_point("after_ledger")
            spool.consume_results(cfg.root, results)
    return TickReport(
        dry_run=dry_run,
        plan=plan,
        slurm_commands=slurm.commands_run,
        problems=[*report_problems, *result_problems],
        newly_halted={c: why for c, why in plan.halted.items() if c not in already},
    )


def act(cfg: NodeUpdateConfig, slurm: NodeUpdateSlurm, snapshot: ClusterSnapshot, plan: Plan) -> None:
    """Converge Slurm to the plan: one reservation change, then one apply job for every node ready to start."""
    slurm.set_reservation(cfg.reservation, plan.reservation, snapshot.reservation)
    fault_point("after_reservation")
    if plan.start:
        command = [opsflow_script(), "nu", "apply"]
        slurm.start_apply(
            APPLY_JOB,
            plan.start,
            reservation=cfg.reservation,
            command=command,
            env=node_env(cfg),
            output_dir=cfg.root / "spool" / "jobs",
        )
    fault_point("after_start")


def load_settings(block_name: str | None) -> tuple[NodeUpdateConfig, NodeUpdateSlurm]:
    """From the named Blocks (env overrides applied), or from the environment alone when ``block_name`` is None."""
    if block_name is None:
        return resolve(), NodeUpdateSlurm(SlurmCLI())
    block = load_block(NodeUpdateSettings, block_name)
    cluster = load_block(SlurmCluster, block.slurm_block)
    return block.resolved(), NodeUpdateSlurm(cluster.cli())


def state_counts(plan: Plan) -> dict[str, int]:
    counts = Counter(rec.state.value for rec in plan.ledger.nodes.values())
    return {state.value: counts.get(state.value, 0) for state in NodeState}


def progress(plan: Plan, catalog: Catalog) -> tuple[int, int]:
    """Nodes that need nothing more of the active updates, out of the nodes they cover."""
    covered = sorted({n for e in catalog.entries for n in e.nodes})
    done = 0
    for node in covered:
        rec = plan.ledger.nodes.get(node)
        if rec is not None and rec.level is not None and not catalog.pending_for(node, rec.level, rec.skipped):
            done += 1
    return done, len(covered)


@flow(name="node-update-tick", log_prints=True)
def node_update_tick(dry_run: bool = False, settings_block: str | None = "local") -> TickReport:
    """One orchestrator tick; reports a progress and a state table artifact, and events for failures."""
    logger = get_run_logger()
    cfg, slurm = load_settings(settings_block)
    report = run_tick(cfg, slurm, dry_run=dry_run)
    plan = report.plan
    catalog = catalog_io.load_catalog(cfg.root)
    done, total = progress(plan, catalog)
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
            progress=100.0 * done / total if total else 100.0,
            key="node-update-progress",
            description=f"{done} of {total} nodes have every active update",
        )
    rows: list[dict[str, object]] = [{"state": s, "nodes": n, "reason": ""} for s, n in state_counts(plan).items()]
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
    if not dry_run:
        for node, reason in plan.new_failures.items():
            emit_event(
                event="opsflow.node-update.failed",
                resource={"prefect.resource.id": f"opsflow.node.{node}", "prefect.resource.name": node},
                payload={"node": node, "reason": reason},
            )
        for codename, why in report.newly_halted.items():
            emit_event(
                event="opsflow.node-update.halted",
                resource={"prefect.resource.id": f"opsflow.node-update.{codename}"},
                payload={"codename": codename, "reason": why},
            )
    return report


# --- operator actions as flows, so they can be run (and audited) from the Prefect UI ---------------------------
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
