"""The tick planner: one Slurm snapshot + catalog + ledger + spool messages → what to do now (pure, no I/O).

It is the seed's Orchestrator decision, made level-triggered: every tick recomputes the desired reservation from
what it observes, so a tick killed at any point is repaired by the next one.

Rules (seed section V-VI):
- F2 an update starts only on a reserved node with no job, in a usable state. Idle nodes are reserved first;
  slots they leave free go to busy nodes whose jobs end soonest (``reserve_busy``, for a saturated machine).
- F6 the reservation never holds more than ``res_limit`` nodes, FAIL ones included.
- F9 one reservation; it is deleted when it would be empty.
- F7 a node's level is its boot time or its last applied codename; it needs every covering update newer than it.
- F4 a retired update is simply absent from the catalog: nodes stop needing it.
- FAIL is sticky: a FAIL node stays reserved (one found outside is put back) and stays FAIL across reboots
  until an operator resolves it; an update with ``max_failures`` FAIL nodes, or a
  failed canary, starts on no new node; a catalog with a bad line starts nothing new.
- An update published with ``--approve`` (``approval=pending``) stops at its canary: once the canary nodes are
  DONE (their checks passed) it starts on no new node until an operator decides (widen or retire).

Example:
    >>> from pathlib import Path
    >>> from node_update.models import CatalogEntry
    >>> snap = ClusterSnapshot(nodes=[SlurmNodeView(name="n1", state="idle", has_job=False)], reservation=None)
    >>> cat = Catalog(entries=[CatalogEntry(codename="20260102000000", nodes=["n1"])])
    >>> led = Ledger(nodes={"n1": NodeRecord(level="20260101000000")})
    >>> plan_tick(snap, cat, led, [], [], NodeUpdateConfig(root=Path("/shared/nu"), res_limit=2)).reservation
    ['n1']
"""

from __future__ import annotations

from collections import Counter

from node_update.models import (
    ApplyResult,
    Catalog,
    ClusterSnapshot,
    Ledger,
    LevelReport,
    NodeRecord,
    NodeState,
    NodeUpdateConfig,
    Plan,
    SlurmNodeView,
)

#: Slurm base states in which a node must not be reserved or started.
UNUSABLE_STATES = frozenset(
    {
        "down",
        "drain",
        "drained",
        "draining",
        "fail",
        "failing",
        "unknown",
        "future",
        "powered_down",
        "powering_down",
        "powering_up",
        "reboot",
        "reboot_issued",
        "not_responding",
        "inval",
    }
)


#: Sorts after every ISO time: a busy node whose job has no known end is reserved last.
UNKNOWN_END = "~"


def usable(node: SlurmNodeView) -> bool:
    """Idle in Slurm's eyes: no job, and not down/drained (F2)."""
    return not node.has_job and node.state.lower() not in UNUSABLE_STATES


def _busy(node: SlurmNodeView) -> str:
    return f"node is {node.state}{' with a job' if node.has_job else ''}"


def _max_level(a: str | None, b: str | None) -> str | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


class LedgerEdit:
    """The tick's node records, copy-on-write over the given ledger's: a record is copied the first time the
    tick changes it, so the planner never changes its input (it stays pure) and a node whose record stays as it
    was costs no copy. On a 10,000-node tick most records do not change; copying each cost a tenth of the tick.

    >>> led = Ledger(nodes={"n1": NodeRecord(level="20260101000000")})
    >>> edit = LedgerEdit(led)
    >>> edit.mark("n1", NodeState.IDLE, "")  # as it was: nothing copied
    >>> edit.mark("n1", NodeState.READY, "reserved this tick")
    >>> edit.nodes["n1"].state.value, led.nodes["n1"].state.value
    ('READY', 'IDLE')
    """

    def __init__(self, ledger: Ledger) -> None:
        self.nodes: dict[str, NodeRecord] = dict(ledger.nodes)
        self._owned: set[str] = set()

    def get(self, name: str) -> NodeRecord:
        """``name``'s record as it stands (a blank one, not stored, for a node the ledger does not know yet)."""
        rec = self.nodes.get(name)
        return _BLANK if rec is None else rec

    def edit(self, name: str) -> NodeRecord:
        """``name``'s record, owned by this tick: change its fields freely (created for a new node)."""
        if name not in self._owned:
            rec = self.nodes.get(name)
            self.nodes[name] = NodeRecord() if rec is None else rec.model_copy()
            self._owned.add(name)
        return self.nodes[name]

    def mark(self, name: str, state: NodeState, reason: str) -> None:
        """Set ``name``'s state and reason (the node gets a record, as every node the tick sees does)."""
        rec = self.nodes.get(name)
        if rec is None or rec.state != state or rec.reason != reason:
            rec = self.edit(name)
            rec.state, rec.reason = state, reason


#: What :meth:`LedgerEdit.get` returns for a node without a record (read only: never stored, never changed).
_BLANK = NodeRecord()


def record_messages(edit: LedgerEdit, reports: list[LevelReport], results: list[ApplyResult]) -> dict[str, str]:
    """Fold the nodes' spool messages into the tick's records; returns the new failures (node → reason).

    Idempotent: recording the same messages twice gives the same records (levels only go up).

    >>> led = Ledger(nodes={"n1": NodeRecord(level="20260101000000")})
    >>> edit = LedgerEdit(led)
    >>> record_messages(edit, [LevelReport(node="n1", level="20260102000000", at=1.0)], [])
    {}
    >>> edit.nodes["n1"].level, led.nodes["n1"].level
    ('20260102000000', '20260101000000')
    """
    new_failures: dict[str, str] = {}
    for report in sorted(reports, key=lambda r: r.at):
        rec = edit.get(report.node)
        level = _max_level(rec.level, report.level)
        # F7: a rebooted node is up to date as of its boot time. Only a boot newer than the level counts: the
        # same report read again must not undo an operator's release. A FAIL node stays FAIL: a reboot does
        # not say why its update failed, only an operator does (`opsflow nu resolve`).
        rebooted = report.source == "boot" and (rec.level is None or report.level > rec.level)
        if level != rec.level or (rebooted and rec.skipped):
            rec = edit.edit(report.node)
            rec.level = level
            if rebooted:
                rec.skipped = []
    for result in sorted(results, key=lambda r: (r.at, r.codename)):
        rec = edit.edit(result.node)
        if result.ok:
            rec.level = _max_level(rec.level, result.codename)
            if rec.failed_codename == result.codename:
                rec.state, rec.reason, rec.failed_codename = NodeState.IDLE, "", None
        else:
            last = result.log_tail.strip().splitlines()[-1:] or [""]
            reason = f"{result.codename}: {result.step} exited {result.exit_code}: {last[0][:200]}".rstrip(": ")
            rec.state, rec.reason, rec.failed_codename = NodeState.FAIL, reason, result.codename
            new_failures[result.node] = reason
    return new_failures


def halted_updates(catalog: Catalog, ledger: Ledger, settings: NodeUpdateConfig) -> dict[str, str]:
    """Updates that start on no new node, with the reason: failure budget spent, or a canary that failed."""
    fails = Counter(r.failed_codename for r in ledger.nodes.values() if r.state == NodeState.FAIL)
    halted: dict[str, str] = {}
    for entry in catalog.entries:
        count = fails.get(entry.codename, 0)
        if count >= settings.max_failures:
            halted[entry.codename] = f"failure budget spent: {count} FAIL >= max_failures {settings.max_failures}"
        elif entry.canary and count and len(done_nodes(entry.codename, entry.nodes, ledger)) < entry.canary:
            halted[entry.codename] = f"canary failed on {count} node(s): not widening"
    return halted


def done_nodes(codename: str, nodes: list[str], ledger: Ledger) -> list[str]:
    """Nodes of ``nodes`` whose level has ``codename`` (F7: applied it, or booted after it).

    >>> done_nodes("20260102000000", ["n1", "n2"], Ledger(nodes={"n1": NodeRecord(level="20260102000000")}))
    ['n1']
    """
    done: list[str] = []
    for node in nodes:
        rec = ledger.nodes.get(node)
        if rec is not None and rec.level is not None and rec.level >= codename:
            done.append(node)
    return done


def plan_tick(
    snapshot: ClusterSnapshot,
    catalog: Catalog,
    ledger: Ledger,
    reports: list[LevelReport],
    results: list[ApplyResult],
    settings: NodeUpdateConfig,
    intended: list[str] | None = None,
) -> Plan:
    """Decide one tick (F2, F5, F6, F7, F9; see the module docstring for every rule).

    ``intended``: the reservation a tick was about to set when it last acted (it may have died right after), so
    that only an edit from outside is reported as one.
    """
    edit = LedgerEdit(ledger)
    new_failures = record_messages(edit, reports, results)
    # The ledger as this tick leaves it: it shares edit.nodes, so every change below shows in it.
    led = ledger.model_copy(update={"nodes": edit.nodes})
    manual_edit = _manual_edit(snapshot.reservation, [ledger.last_reservation, intended])
    halted = halted_updates(catalog, led, settings)
    notes: list[str] = []
    if catalog.error:
        notes.append(f"catalog error, starting nothing new: {catalog.error}")
    reserved = set(snapshot.reservation or [])
    applying = set(snapshot.applying)
    by_name = {n.name: n for n in snapshot.nodes}

    keep_fixed: list[str] = []  # FAIL and UPDATING: never dropped
    keep_ready: list[str] = []  # reserved, work pending, not running yet
    release: list[str] = []
    candidates: list[tuple[str, str]] = []  # (next codename, node) not reserved yet, idle
    busy_candidates: list[tuple[str, str, str]] = []  # (job end, next codename, node) not reserved, a job runs
    outside_fail: list[str] = []  # FAIL nodes found outside the reservation
    in_flight: Counter[str] = Counter()

    for name in sorted(by_name):
        node = by_name[name]
        rec = edit.get(name)
        pending = catalog.pending_for(name, rec.level, rec.skipped)
        nxt = pending[0] if pending else None
        blocked = catalog.error is not None or (nxt is not None and nxt in halted)
        hold = rec.hold
        if hold is not None and hold.keep == "out" and name not in applying:
            if name in reserved:
                release.append(name)
            state = NodeState.FAIL if rec.state == NodeState.FAIL else NodeState.IDLE
            edit.mark(name, state, f"held out by {hold.by}: {hold.reason}")
            continue
        if rec.state == NodeState.FAIL or (hold is not None and hold.keep == "in" and name not in applying):
            # Sticky FAIL: one found outside (a manual edit, a tick killed between steps) goes back in; it
            # returns to production only through an operator. A node held in stays too, and starts nothing.
            (keep_fixed if name in reserved else outside_fail).append(name)
            if hold is not None and rec.state != NodeState.FAIL:
                edit.mark(name, NodeState.READY, f"held in by {hold.by}: {hold.reason}")
            continue
        if name in applying:
            edit.mark(name, NodeState.UPDATING, f"applying {', '.join(pending)}" if pending else "applying")
            if name in reserved:
                keep_fixed.append(name)
            if nxt:
                in_flight[nxt] += 1
            continue
        if name in reserved:
            if nxt is None:
                release.append(name)
                edit.mark(name, NodeState.DONE, "")
            elif blocked:
                release.append(name)
                edit.mark(name, NodeState.IDLE, halted.get(nxt, "catalog error"))
            else:
                keep_ready.append(name)
                in_flight[nxt] += 1
                edit.mark(name, NodeState.READY, "" if usable(node) else f"waiting: {_busy(node)}")
            continue
        if nxt is None:
            edit.mark(name, NodeState.IDLE, "")
        elif blocked:
            edit.mark(name, NodeState.IDLE, halted.get(nxt, "catalog error"))
        elif usable(node):
            candidates.append((nxt, name))  # marked below, once its slot is known
        else:
            edit.mark(name, NodeState.IDLE, f"waiting for {nxt}: {_busy(node)}")
            if settings.reserve_busy and node.has_job and node.state.lower() not in UNUSABLE_STATES:
                busy_candidates.append((snapshot.job_ends.get(name, UNKNOWN_END), nxt, name))

    # F6: over the limit (the setting was lowered): give back nodes that have not started, newest first.
    while len(keep_fixed) + len(keep_ready) > settings.res_limit and keep_ready:
        name = keep_ready.pop()
        release.append(name)
        edit.mark(name, NodeState.IDLE, "released: over res_limit")

    restored = _restore_failed(outside_fail, keep_fixed, keep_ready, release, edit, settings.res_limit, notes)
    free = settings.res_limit - len(keep_fixed) - len(keep_ready)
    canary_room = _canary_room(catalog, led, in_flight)
    awaiting = awaiting_approval(catalog, led, halted)
    reserve: list[str] = []
    for nxt, name in sorted(candidates):
        if free <= 0:
            edit.mark(name, NodeState.IDLE, f"waiting for a slot in the reservation (res_limit {settings.res_limit})")
            continue
        why_not = _take_canary_slot(canary_room, nxt, awaiting)
        if why_not:
            edit.mark(name, NodeState.IDLE, why_not)
        else:
            reserve.append(name)
            free -= 1
            edit.mark(name, NodeState.READY, "reserved this tick")
    # Saturation: on a full machine a freed node goes to the next queued job within a second, so waiting for
    # idle nodes can stall a rollout for as long as the backlog lasts. Slots no idle node takes go to busy nodes
    # whose jobs end soonest: the MAINT+IGNORE_JOBS reservation leaves their job alone and gives the node no
    # new one; the update starts on the first tick that sees it idle (F2), at most one tick after the job ended.
    for end, nxt, name in sorted(busy_candidates):
        if free <= 0:
            break
        why_not = _take_canary_slot(canary_room, nxt, awaiting)
        if why_not:
            edit.mark(name, NodeState.IDLE, why_not)  # it was marked IDLE above
        else:
            reserve.append(name)
            free -= 1
            until = "" if end == UNKNOWN_END else f" (expected end {end})"
            edit.mark(name, NodeState.READY, f"reserved while its job runs{until}")

    # A node starts on the tick after it was reserved, once Slurm shows it reserved and idle (F2).
    start = [n for n in keep_ready if usable(by_name[n])]
    desired = sorted({*keep_fixed, *keep_ready, *reserve})
    led.last_reservation = desired
    if manual_edit:
        notes.append(f"{manual_edit}; the orchestrator sets it back (operators: `opsflow nu hold NODE`)")
    return Plan(
        reservation=desired or None,
        start=start,
        release=sorted(release),
        reserve=sorted(reserve),
        restored=restored,
        manual_edit=manual_edit,
        new_failures=new_failures,
        halted=halted,
        awaiting_approval=awaiting,
        ledger=led,
        notes=notes,
    )


def _manual_edit(seen: list[str] | None, expected: list[list[str] | None]) -> str:
    """How the reservation Slurm shows differs from what the orchestrator left ("" when it matches one of
    ``expected``, or when nothing is known yet).

    >>> _manual_edit(["n1", "n3"], [["n1", "n2"], None])
    'reservation edited outside the orchestrator: added n3, removed n2'
    """
    known = [set(e) for e in expected if e is not None]
    now = set(seen or [])
    if not known or now in known:
        return ""
    added, removed = sorted(now - known[0]), sorted(known[0] - now)
    parts = [f"added {', '.join(added)}"] * bool(added) + [f"removed {', '.join(removed)}"] * bool(removed)
    return "reservation edited outside the orchestrator: " + ", ".join(parts)


def _restore_failed(
    outside: list[str],
    keep_fixed: list[str],
    keep_ready: list[str],
    release: list[str],
    edit: LedgerEdit,
    res_limit: int,
    notes: list[str],
) -> list[str]:
    """Put FAIL nodes found outside the reservation back in (into ``keep_fixed``); returns them.

    F6 still holds: a READY node that has not started gives its slot up first; past that a FAIL node stays out,
    with a note each tick, until a slot frees.
    """
    restored: list[str] = []
    for name in outside:
        if len(keep_fixed) >= res_limit:
            notes.append(f"{name}: FAIL or held in, outside the reservation, and no slot under res_limit {res_limit}")
            continue
        if len(keep_fixed) + len(keep_ready) >= res_limit:
            given = keep_ready.pop()
            release.append(given)
            edit.mark(given, NodeState.IDLE, "released: a FAIL node's slot")
        keep_fixed.append(name)
        restored.append(name)
        why = "FAIL" if edit.get(name).state == NodeState.FAIL else "held in"
        how = "only `opsflow nu resolve` releases it" if why == "FAIL" else "until `opsflow nu unhold`"
        notes.append(f"{name}: {why} outside the reservation, put back ({how})")
    return restored


def _take_canary_slot(canary_room: dict[str, int], codename: str, awaiting: dict[str, list[str]]) -> str:
    """Take one place of ``codename``'s canary for a node ("" when taken, or when it has no canary), else say why
    the node may not take it now.

    >>> room = {"20260102000000": 1}
    >>> _take_canary_slot(room, "20260102000000", {}), _take_canary_slot(room, "20260102000000", {})
    ('', 'waiting: canary of 20260102000000 not finished')
    """
    room = canary_room.get(codename)
    if room is None:
        return ""
    if room <= 0:
        if codename in awaiting:
            return f"waiting: canary of {codename} done, waiting for an operator's decision (`opsflow nu decide`)"
        return f"waiting: canary of {codename} not finished"
    canary_room[codename] = room - 1
    return ""


def _canary_room(catalog: Catalog, ledger: Ledger, in_flight: Counter[str]) -> dict[str, int]:
    """For updates still in their canary phase, or waiting for approval after it: how many more nodes may take
    them now (0 while an operator's decision is pending)."""
    room: dict[str, int] = {}
    for entry in catalog.entries:
        if not entry.canary:
            continue
        done = len(done_nodes(entry.codename, entry.nodes, ledger))
        if done < entry.canary:
            room[entry.codename] = entry.canary - done - in_flight.get(entry.codename, 0)
        elif entry.approval == "pending":
            room[entry.codename] = 0
    return room


def awaiting_approval(catalog: Catalog, ledger: Ledger, halted: dict[str, str]) -> dict[str, list[str]]:
    """Gated updates (``approval=pending``) whose canary is done and not halted: codename -> the nodes done.

    >>> from node_update.models import CatalogEntry
    >>> cat = Catalog(entries=[CatalogEntry(codename="20260102000000", nodes=["n1", "n2"], canary=1,
    ...                                     approval="pending")])
    >>> awaiting_approval(cat, Ledger(nodes={"n1": NodeRecord(level="20260102000000")}), {})
    {'20260102000000': ['n1']}
    """
    waiting: dict[str, list[str]] = {}
    for entry in catalog.entries:
        if entry.approval != "pending" or entry.codename in halted:
            continue
        done = done_nodes(entry.codename, entry.nodes, ledger)
        if len(done) >= entry.canary:
            waiting[entry.codename] = done
    return waiting
