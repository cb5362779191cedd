"""Operator actions on the ledger (``opsflow nu resolve`` / ``status``): the same functions back the CLI and the UI.

Example:
    >>> import tempfile
    >>> from node_update.models import NodeRecord, NodeState
    >>> root = Path(tempfile.mkdtemp())
    >>> rec = NodeRecord(level="20260101000000", state=NodeState.FAIL, failed_codename="20260102000000")
    >>> spool.save_ledger(root, Ledger(nodes={"nid003": rec}))
    >>> resolve_failure(root, "nid003", Resolution.RELEASE).reason
    'resolved by operator: release'
    >>> [(s.node, s.state) for s in node_statuses(spool.load_ledger(root))]
    [('nid003', 'IDLE')]
"""

from __future__ import annotations

import getpass
import time
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from node_update import spool
from node_update.errors import NodeUpdateInputError
from node_update.models import Hold, Ledger, NodeRecord, NodeState
from opsflow.errors import NotFoundError, OpsflowError


class Resolution(StrEnum):
    RETRY = "retry"  # try the failed update again on this node
    RELEASE = "release"  # give the node back to production without that update


class ResolveError(OpsflowError, ValueError):
    """The node is not in FAIL, or unknown."""


class NotFailedError(ResolveError, NodeUpdateInputError):
    """The node is known but not in FAIL: there is nothing to resolve."""


class UnknownNodeError(ResolveError, NotFoundError):
    """The service has never seen this node (it is not in the ledger)."""


class NotHeldError(ResolveError, NodeUpdateInputError):
    """``unhold`` of a node that holds no operator's hold."""


class NodeStatus(BaseModel):
    """One node as the last tick left it; ``hold``: an operator's hold (``in``/``out``, by whom, why) or ""."""

    node: str
    state: str
    level: str | None
    reason: str
    hold: str = ""


def hold_node(root: Path, node: str, keep: Literal["in", "out"], reason: str, by: str | None = None) -> NodeStatus:
    """Keep ``node`` in the reservation (``in``: no update starts on it; it counts against ``res_limit``) or out
    of it (``out``: never reserved; a running update finishes first) until :func:`unhold_node`.

    The seed's "specific API to manipulate the reservation": the next tick applies it. A node no tick has seen
    yet is refused (:class:`UnknownNodeError`); an empty reason too.
    """
    if not reason.strip():
        raise NodeUpdateInputError("hold: say why (--reason)", field="reason")
    with spool.root_lock(root):
        ledger = spool.load_ledger(root)
        rec = ledger.nodes.get(node)
        if rec is None:
            raise UnknownNodeError(f"{node}: unknown to the node update service (no tick has seen it)")
        rec.hold = Hold(keep=keep, by=by or getpass.getuser(), reason=reason.strip(), at=time.time())
        spool.save_ledger(root, ledger)
    return _status(node, rec)


def unhold_node(root: Path, node: str) -> NodeStatus:
    """Lift an operator's hold; the next tick treats the node like any other. Raises for a node not held."""
    with spool.root_lock(root):
        ledger = spool.load_ledger(root)
        rec = ledger.nodes.get(node)
        if rec is None:
            raise UnknownNodeError(f"{node}: unknown to the node update service (no tick has seen it)")
        if rec.hold is None:
            raise NotHeldError(f"{node}: not held: nothing to lift", field="hold")
        rec.hold = None
        rec.reason = "hold lifted by operator"
        spool.save_ledger(root, ledger)
    return _status(node, rec)


def _status(node: str, rec: NodeRecord) -> NodeStatus:
    hold = f"{rec.hold.keep} by {rec.hold.by}: {rec.hold.reason}" if rec.hold else ""
    return NodeStatus(node=node, state=rec.state.value, level=rec.level, reason=rec.reason, hold=hold)


def resolve_failure(root: Path, node: str, how: Resolution) -> NodeStatus:
    """Move a FAIL node on: retry its failed update, or release it (the update is then skipped on it).

    Either way the next tick acts on it; the failure budget of that update gets one failure back. Raises
    :class:`UnknownNodeError` for a node no tick has seen, :class:`NotFailedError` for one not in FAIL.
    """
    with spool.root_lock(root):
        ledger = spool.load_ledger(root)
        rec = ledger.nodes.get(node)
        if rec is None:
            raise UnknownNodeError(f"{node}: unknown to the node update service (no tick has seen it)")
        if rec.state != NodeState.FAIL:
            raise NotFailedError(f"{node}: in state {rec.state.value}, not FAIL: nothing to resolve", field="state")
        if how == Resolution.RELEASE and rec.failed_codename:
            rec.skipped = sorted({*rec.skipped, rec.failed_codename})
        rec.state = NodeState.IDLE
        rec.reason = f"resolved by operator: {how.value}"
        rec.failed_codename = None
        spool.save_ledger(root, ledger)
    return _status(node, rec)


def node_statuses(ledger: Ledger) -> list[NodeStatus]:
    """One row per node the service knows, sorted by name."""
    return [_status(name, rec) for name, rec in sorted(ledger.nodes.items())]
