"""Operator actions on the ledger (``opsflow nu resolve`` / ``status``): the same functions back the CLI and the UI.

Example:
    $ opsflow nu resolve nid003 --retry
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel

from node_update import spool
from node_update.models import Ledger, NodeState
from opsflow.errors import OpsflowError


class Resolution(StrEnum):
    RETRY = "retry"  # try the failed update again on this node
    RELEASE = "release"  # give the node back to production without that update


class ResolveError(OpsflowError, ValueError):
    """The node is not in FAIL, or unknown."""


class NodeStatus(BaseModel):
    node: str
    state: str
    level: str | None
    reason: str


def resolve_failure(root: Path, node: str, how: Resolution) -> NodeStatus:
    """Move a FAIL node on: retry its failed update, or release it (the update is then skipped on it).

    Either way the next tick acts on it; the failure budget of that update gets one failure back.
    """
    with spool.root_lock(root):
        ledger = spool.load_ledger(root)
        rec = ledger.nodes.get(node)
        if rec is None or rec.state != NodeState.FAIL:
            state = "unknown to the service" if rec is None else f"in state {rec.state.value}"
            raise ResolveError(f"{node} is {state}, not FAIL: nothing to resolve")
        if how == Resolution.RELEASE and rec.failed_codename:
            rec.skipped = sorted({*rec.skipped, rec.failed_codename})
        rec.state = NodeState.IDLE
        rec.reason = f"resolved by operator: {how.value}"
        rec.failed_codename = None
        spool.save_ledger(root, ledger)
    return NodeStatus(node=node, state=rec.state.value, level=rec.level, reason=rec.reason)


def node_statuses(ledger: Ledger) -> list[NodeStatus]:
    """One row per node the service knows, sorted by name."""
    return [
        NodeStatus(node=name, state=rec.state.value, level=rec.level, reason=rec.reason)
        for name, rec in sorted(ledger.nodes.items())
    ]
