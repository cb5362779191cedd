"""The data of the Node Update service (pure pydantic models, no I/O).

A *codename* is a timestamp ``YYYYmmddHHMMSS``; a node's *level* is the codename of the last update it applied or
its boot time in the same format (F7), so "is this node behind?" is a string comparison.

Example:
    >>> CatalogEntry(codename="20261123120000", nodes=["nid001", "nid002"]).covers("nid002")
    True
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator


class NodeState(StrEnum):
    """The seed's state diagram (section VI)."""

    IDLE = "IDLE"  # not in the reservation
    READY = "READY"  # in the reservation, work pending, not started yet
    UPDATING = "UPDATING"  # an apply step runs on it
    DONE = "DONE"  # finished this tick; released from the reservation
    FAIL = "FAIL"  # an update failed; stays reserved until an operator resolves it


#: ``approval=`` of a catalog line: ``pending`` waits for an operator once the canary is done; ``widened``: approved.
Approval = Literal["", "pending", "widened"]


class CatalogEntry(BaseModel):
    """One line of ``active-updates.list``: ``<codename> <hostlist> [canary=N [approval=pending|widened]]``."""

    codename: str
    nodes: list[str] = Field(description="Expanded hostlist, sorted")
    canary: int = Field(0, ge=0, description="Apply to this many nodes first; widen once they all succeeded")
    approval: Approval = Field("", description="pending: widen only after an operator's decision (publish --approve)")
    line: int = Field(0, description="Line number in the catalog file (for messages)")

    @cached_property
    def node_set(self) -> frozenset[str]:
        return frozenset(self.nodes)

    def covers(self, node: str) -> bool:
        return node in self.node_set


class Catalog(BaseModel):
    entries: list[CatalogEntry] = []
    #: A line that could not be parsed: "file:line: why". The tick then starts nothing new (F4 safety).
    error: str | None = None

    def find(self, codename: str) -> CatalogEntry | None:
        """The entry of ``codename``, None when the catalog does not hold it.

        >>> Catalog(entries=[CatalogEntry(codename="20260101000000", nodes=["n1"])]).find("20260101000000").nodes
        ['n1']
        """
        return next((e for e in self.entries if e.codename == codename), None)

    def pending_for(self, node: str, level: str | None, skipped: Iterable[str] = ()) -> list[str]:
        """Codenames ``node`` still needs, oldest first: covering entries newer than its level (F5, F7).

        >>> Catalog(entries=[CatalogEntry(codename="20260101000000", nodes=["n1"])]).pending_for("n1", "20251231000000")
        ['20260101000000']
        """
        if level is None:
            return []
        # Called for every node on every tick: a list, and a set of ``skipped`` only when there is one.
        found = [e.codename for e in self.entries if e.codename > level and node in e.node_set]
        if skipped and found:
            skip = set(skipped)
            found = [c for c in found if c not in skip]
        return sorted(found) if len(found) > 1 else found


class LevelReport(BaseModel):
    """A node's message in the spool: its current level (boot hook, epilog or periodic check)."""

    node: str
    level: str
    at: float = Field(description="Unix time the node wrote it")
    source: str = Field("epilog", description="boot | epilog | check")


class ApplyResult(BaseModel):
    """A node's message in the spool after one ``update.sh`` ran there."""

    node: str
    codename: str
    ok: bool
    exit_code: int
    log_tail: str = ""
    at: float
    step: str = Field("update.sh", description="What failed: update.sh, check.sh or the site check")


class SlurmNodeView(BaseModel):
    """What the tick needs of one Slurm node."""

    name: str
    state: str = Field(description="Base state from sinfo: idle, alloc, mix, down, drain, ...")
    has_job: bool = Field(description="A job (other than our apply step) runs on it")


class ClusterSnapshot(BaseModel):
    """One look at Slurm: nodes, our reservation, and the nodes our apply job currently runs on."""

    nodes: list[SlurmNodeView]
    reservation: list[str] | None = Field(description="Nodes of the reservation; None when it does not exist")
    applying: list[str] = Field(default_factory=list, description="Nodes an apply job of ours runs on")
    job_ends: dict[str, str] = Field(
        default_factory=dict,
        description="Busy node -> latest expected end of its jobs (squeue %e, ISO local time); absent: unknown",
    )


class Hold(BaseModel):
    """An operator's hold on a node (``opsflow nu hold``): kept in the reservation (``in``) or out of it."""

    keep: Literal["in", "out"]
    by: str
    reason: str
    at: float


class NodeRecord(BaseModel):
    """The tick's ledger entry for one node (persisted between ticks in ``state/nodes.json``)."""

    level: str | None = None
    state: NodeState = NodeState.IDLE
    reason: str = ""
    failed_codename: str | None = None
    #: Codenames an operator released this node from (`resolve --release`): never retried on it.
    skipped: list[str] = Field(default_factory=list)
    hold: Hold | None = None


class Ledger(BaseModel):
    nodes: dict[str, NodeRecord] = {}
    #: Newest report file time (ns) the tick has recorded: older report files are not read again.
    reports_seen_ns: int = 0
    #: The reservation the last acting tick left (None: not known yet); a different one means a manual edit.
    last_reservation: list[str] | None = None


class NodeUpdateConfig(BaseModel):
    """The service's configuration: where the shared root is and how fast a rollout may go.

    One model for every use: the planner reads the limits, the tick and the operator commands the root.
    :func:`node_update.config.load_config` builds it from a ``NodeUpdateSettings`` Block's values and the
    environment (``OPSFLOW_NU_*``); the pure code takes it as it is.

    >>> NodeUpdateConfig(root=Path("/shared/nu"), res_limit=8).reservation
    'node_update'
    """

    root: Path = Field(description="Shared directory: updates/, active-updates.list, spool/, state/")
    res_limit: int = Field(4, ge=1, description="Most nodes in the reservation at once, FAIL ones included (F6)")
    max_failures: int = Field(3, ge=1, description="FAIL count at which an update stops starting on new nodes")
    reservation: str = Field("node_update", description="Name of the single Slurm reservation (F9)")
    reserve_busy: bool = Field(
        True,
        description="Fill free slots with busy nodes whose jobs end soonest (they start once their job ended)",
    )
    check_command: str = Field(
        "", description="Site-wide health check run on the node after the update scripts (shlex-split, no shell)"
    )

    @field_validator("check_command")
    @classmethod
    def _one_line_without_commas(cls, value: str) -> str:
        # It reaches the nodes through sbatch --export, which splits at commas; shlex must be able to split it.
        if "," in value or "\n" in value:
            raise ValueError("must not contain a comma or a newline (it travels in sbatch --export)")
        try:
            shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"cannot be split into arguments: {exc}") from None
        return value


class CanaryDecision(BaseModel):
    """An operator's answer once a gated update's canary is done (the approval form; ``opsflow nu decide``)."""

    action: Literal["widen", "retire"] = Field(
        "widen", description="widen: roll out to every node of the update; retire: stop it (F4)"
    )
    res_limit: int | None = Field(
        None, ge=1, description="With widen: the new res_limit of the settings (empty: keep the current one)"
    )
    comment: str = Field("", max_length=500, description="Why; recorded in the catalog beside the line")
    by: str = Field("", max_length=100, description="Who decides (recorded with the decision; empty: the form)")


class Plan(BaseModel):
    """What one tick does. ``reservation`` is the desired node list (None: delete the reservation)."""

    reservation: list[str] | None
    start: list[str] = Field(default_factory=list, description="Nodes to run `opsflow nu apply` on now")
    release: list[str] = Field(default_factory=list, description="Nodes leaving the reservation (DONE)")
    reserve: list[str] = Field(default_factory=list, description="Nodes entering the reservation (READY)")
    restored: list[str] = Field(default_factory=list, description="FAIL or held-in nodes put back into the reservation")
    manual_edit: str = Field("", description="How the reservation differed from what the orchestrator left")
    new_failures: dict[str, str] = Field(default_factory=dict, description="node -> reason")
    halted: dict[str, str] = Field(default_factory=dict, description="codename -> why it starts nowhere new")
    awaiting_approval: dict[str, list[str]] = Field(
        default_factory=dict, description="codename -> its canary nodes, done: the update waits for an operator"
    )
    ledger: Ledger
    notes: list[str] = Field(default_factory=list)
