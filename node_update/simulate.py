"""Dry-run simulator: the real tick planner against a synthetic job trace (pure, deterministic given a seed).

It answers "how long would a rollout take on this machine?" before anything is published: every node runs jobs
(busy with probability ``utilization``, job lengths exponential with mean ``mean_job_hours``), one update is
published at t=0 for every node, and every ``tick_minutes`` the REAL :func:`node_update.planner.plan_tick` is asked
what to do. Its plan is then played out here the way Slurm and the nodes would: reserved nodes take no new job
(the MAINT reservation), a started node writes an ok :class:`ApplyResult` ``update_minutes`` later, released nodes
go back to running jobs.

The makespan (when every node has the update) is printed next to the lower bound of the issue: the time by which
every node has been idle once plus one update (F2: an update only runs on an idle node).

``saturated`` models a machine whose queue never empties: a freed node goes to the next queued job at once unless
it is reserved, so a tick never sees an unreserved idle node. With ``reserve_busy`` off (the old mechanism: idle
nodes only) such a rollout never starts; with it on, free slots take the busy nodes whose jobs end soonest. The
cost to users is the node-minutes a reserved node sits idle (from its job's end to the tick that starts its
update, and from the update's end to the tick that releases it), per update.

Speed: the loop is event driven. It jumps over ticks at which the planner could not act (no update finished, no
node reserved on the previous tick, and no free slot with an idle node that needs the update), and, unless
``full_view`` is set, it shows the planner only the nodes that can change its actions (reserved, updating, and idle
nodes that still need the update). A busy node or an updated idle one is never reserved, started or released, so
the plan is the same either way (a unit test checks it on small clusters).

Example:
    >>> r = simulate(SimulationConfig(nodes=20, res_limit=5, utilization=0.0))
    >>> r.makespan_hours * 60
    44.0
"""

from __future__ import annotations

import heapq
import math
import random
from pathlib import Path

from pydantic import BaseModel, Field

from node_update.models import (
    ApplyResult,
    Catalog,
    CatalogEntry,
    ClusterSnapshot,
    Ledger,
    NodeRecord,
    NodeUpdateConfig,
    SlurmNodeView,
)
from node_update.planner import plan_tick

#: Every node's level at t=0 (it booted before the update was published: F7) and the update's codename.
BOOT_LEVEL = "20260101000000"
UPDATE = "20260102000000"
#: The planner never touches the root; the configuration only needs one.
SIMULATED_ROOT = Path("/simulated")
EPS = 1e-9

_JOB_END, _JOB_START, _UPDATE_DONE = 0, 1, 2


class SimulationConfig(BaseModel):
    """The synthetic machine and the service's settings (the issue's example is the default: Piz Daint)."""

    nodes: int = Field(7517, ge=1, description="Number of compute nodes")
    res_limit: int = Field(64, ge=1, description="Most nodes in the reservation at once (F6)")
    utilization: float = Field(0.99, ge=0.0, lt=1.0, description="Long-run fraction of time a node runs a job")
    mean_job_hours: float = Field(6.0, gt=0.0, description="Mean job length (exponential)")
    update_minutes: float = Field(10.0, gt=0.0, description="How long update.sh runs on one node")
    tick_minutes: float = Field(1.0, gt=0.0, description="Time between two ticks of the orchestrator")
    seed: int = Field(1, description="Seed of the job trace")
    saturated: bool = Field(
        False, description="A queue never empties: a freed node goes to the next job at once unless reserved"
    )
    reserve_busy: bool = Field(True, description="The planner's setting: free slots take busy nodes ending soonest")
    max_hours: float = Field(24.0 * 60, gt=0.0, description="Give up (finished: false) after this much time")
    full_view: bool = Field(False, description="Show the planner every node each tick (slow; same plans)")


class SimulationResult(BaseModel):
    makespan_hours: float = Field(description="Time until every node has the update")
    lower_bound_hours: float = Field(description="Max over nodes of (first time idle + one update)")
    ratio: float = Field(description="makespan / lower bound")
    ticks: int = Field(description="Ticks from t=0 up to the one that saw the last update finish")
    max_reserved: int = Field(description="Largest reservation seen (never above res_limit: F6)")
    planner_calls: int = Field(0, description="Ticks at which plan_tick ran (the others could not act)")
    finished: bool = Field(True, description="Every node got the update within max_hours")
    updated: int = Field(0, description="Nodes that got the update")
    idle_held_minutes_per_update: float = Field(
        0.0, description="Node-minutes a node sat idle in the reservation (no job, no update) per update: users' cost"
    )
    nodes: int = 0
    res_limit: int = 0


def node_names(count: int) -> list[str]:
    """``nid00001`` ... (five digits at least), sorted as strings and as numbers alike.

    >>> node_names(2)
    ['nid00001', 'nid00002']
    """
    width = max(5, len(str(count)))
    return [f"nid{i:0{width}d}" for i in range(1, count + 1)]


def simulate(cfg: SimulationConfig) -> SimulationResult:
    """Play one rollout of one update over a synthetic job trace, planning with the real ``plan_tick`` (F2, F6).

    >>> simulate(SimulationConfig(nodes=4, res_limit=2, utilization=0.0, update_minutes=5)).makespan_hours * 60
    12.0
    """
    rng = random.Random(cfg.seed)
    job_mean = cfg.mean_job_hours * 60.0
    if cfg.saturated:
        gap_mean = 0.0
    else:
        gap_mean = job_mean * (1.0 - cfg.utilization) / cfg.utilization if cfg.utilization > 0 else math.inf
    names = node_names(cfg.nodes)
    index = {n: i for i, n in enumerate(names)}
    catalog = Catalog(entries=[CatalogEntry(codename=UPDATE, nodes=names)])
    settings = NodeUpdateConfig(root=SIMULATED_ROOT, res_limit=cfg.res_limit, reserve_busy=cfg.reserve_busy)
    horizon = cfg.max_hours * 60.0

    events: list[tuple[float, int, int, int, int]] = []  # (time, seq, kind, node, token)
    seq = 0

    def push(at: float, kind: int, node: int, token: int = 0) -> None:
        nonlocal seq
        heapq.heappush(events, (at, seq, kind, node, token))
        seq += 1

    busy = [False] * cfg.nodes
    job_end = [0.0] * cfg.nodes  # when the running job ends (valid while busy)
    token = [0] * cfg.nodes  # bumped when a node is reserved: its pending job arrival is void
    first_idle = [0.0] * cfg.nodes
    updated = [False] * cfg.nodes
    reserved: set[int] = set()
    applying: set[int] = set()
    idle_since: dict[int, float] = {}  # reserved, no job, no update: since when (users' cost)
    held = 0.0

    def start_job(node: int, at: float) -> None:
        busy[node] = True
        job_end[node] = at + rng.expovariate(1.0 / job_mean)
        push(job_end[node], _JOB_END, node)

    def schedule_arrival(node: int, now: float) -> None:
        if gap_mean == 0.0:  # saturated: the next queued job takes the node at once
            start_job(node, now)
        elif gap_mean != math.inf:
            push(now + rng.expovariate(1.0 / gap_mean), _JOB_START, node, token[node])

    for i in range(cfg.nodes):
        if cfg.saturated or (cfg.utilization > 0 and rng.random() < cfg.utilization):
            start_job(i, 0.0)
            first_idle[i] = job_end[i]
        else:
            schedule_arrival(i, 0.0)

    idle_waiting: set[int] = {i for i in range(cfg.nodes) if not busy[i]}  # idle, not reserved, needs the update
    records: dict[str, NodeRecord] = {n: NodeRecord(level=BOOT_LEVEL) for n in names}
    results: list[ApplyResult] = []
    remaining = cfg.nodes
    makespan = 0.0
    max_reserved = 0
    planner_calls = 0
    starts_due = False
    k = 0

    while True:
        now = k * cfg.tick_minutes
        if now > horizon:
            break
        while events and events[0][0] <= now + EPS:
            at, _, kind, i, tok = heapq.heappop(events)
            if kind == _JOB_END:
                busy[i] = False
                if i in reserved:
                    idle_since[i] = at
                    starts_due = True  # a reserved node came free: the next tick starts it
                else:
                    schedule_arrival(i, at)
                    if not updated[i] and not busy[i]:
                        idle_waiting.add(i)
            elif kind == _JOB_START:
                if tok == token[i] and not busy[i] and i not in reserved:  # MAINT: no job on a reserved node
                    idle_waiting.discard(i)
                    start_job(i, at)
            else:  # _UPDATE_DONE
                applying.discard(i)
                updated[i] = True
                idle_since[i] = at  # idle in the reservation until the tick that releases it
                remaining -= 1
                makespan = max(makespan, at)
                results.append(ApplyResult(node=names[i], codename=UPDATE, ok=True, exit_code=0, at=at))
        if remaining == 0:
            break

        free = cfg.res_limit - len(reserved)
        # Busy nodes the planner could take: with reserve_busy, the ``res_limit`` ones ending soonest are more
        # than it can pick (it sorts by end; slots freed by this tick's releases count), so the pruned view shows
        # it those only.
        busy_pick: list[int] = []
        if cfg.reserve_busy and (free > 0 or results):
            pool = (i for i in range(cfg.nodes) if busy[i] and not updated[i] and i not in reserved)
            busy_pick = heapq.nsmallest(cfg.res_limit, pool, key=lambda i: (job_end[i], i))
        if results or starts_due or (free > 0 and (idle_waiting or busy_pick)):
            planner_calls += 1
            view = range(cfg.nodes) if cfg.full_view else sorted(reserved | applying | idle_waiting | set(busy_pick))
            snapshot = ClusterSnapshot(
                nodes=[
                    SlurmNodeView(name=names[i], state="alloc" if busy[i] or i in applying else "idle", has_job=busy[i])
                    for i in view
                ],
                reservation=sorted(names[i] for i in reserved) or None,
                applying=[names[i] for i in sorted(applying)],
                job_ends={names[i]: f"{job_end[i]:020.6f}" for i in view if busy[i]},
            )
            ledger = Ledger(nodes={names[i]: records[names[i]] for i in view})
            plan = plan_tick(snapshot, catalog, ledger, [], results, settings)
            records.update(plan.ledger.nodes)
            results = []
            # Play the plan out the way Slurm would: one reservation update, one apply job.
            now_reserved = {index[n] for n in plan.reservation or []}
            for i in now_reserved - reserved:
                token[i] += 1
                idle_waiting.discard(i)
                if not busy[i]:
                    idle_since[i] = now
            for i in reserved - now_reserved:
                held += now - idle_since.pop(i, now)
                if not busy[i]:
                    schedule_arrival(i, now)
                    if not updated[i] and not busy[i]:
                        idle_waiting.add(i)
            reserved = now_reserved
            max_reserved = max(max_reserved, len(reserved))
            if len(reserved) > cfg.res_limit:  # the planner broke F6: a result built on that would mislead
                raise RuntimeError(f"F6 violated: {len(reserved)} nodes reserved > res_limit {cfg.res_limit}")
            for name in plan.start:
                i = index[name]
                if busy[i]:  # the planner broke F2
                    raise RuntimeError(f"F2 violated: {name} started beside a job")
                held += now - idle_since.pop(i, now)
                applying.add(i)
                push(now + cfg.update_minutes, _UPDATE_DONE, i)
            starts_due = bool(plan.reserve)

        if starts_due:
            k += 1
        elif events:
            k = max(k + 1, math.ceil(events[0][0] / cfg.tick_minutes - EPS))
        else:  # cannot happen: some node always has a pending event until all are updated
            raise RuntimeError(f"simulation stalled at t={now} min with {remaining} nodes not updated")

    finished = remaining == 0
    if not finished:
        makespan = horizon
    lower = max(first_idle) + cfg.update_minutes
    done = cfg.nodes - remaining
    return SimulationResult(
        makespan_hours=makespan / 60.0,
        lower_bound_hours=lower / 60.0,
        ratio=makespan / lower,
        ticks=k + 1,
        max_reserved=max_reserved,
        planner_calls=planner_calls,
        nodes=cfg.nodes,
        res_limit=cfg.res_limit,
        finished=finished,
        updated=done,
        idle_held_minutes_per_update=held / done if done else 0.0,
    )


def format_result(result: SimulationResult) -> str:
    """The CLI's text for one simulation.

    >>> format_result(simulate(SimulationConfig(nodes=4, res_limit=2, utilization=0.0))).splitlines()[0]
    'nodes 4, res_limit 2'
    """
    return "\n".join(
        [
            f"nodes {result.nodes}, res_limit {result.res_limit}",
            f"predicted makespan   {result.makespan_hours:10.2f} h",
            f"lower bound          {result.lower_bound_hours:10.2f} h  (every node idle once + one update)",
            f"makespan/lower bound {result.ratio:10.3f}",
            f"ticks                {result.ticks:10d}  ({result.planner_calls} needed the planner)",
            f"largest reservation  {result.max_reserved:10d}  (res_limit {result.res_limit})",
            f"finished             {'yes' if result.finished else 'no':>10}  ({result.updated} nodes updated)",
            f"idle in reservation  {result.idle_held_minutes_per_update:10.2f} node-min per update",
        ]
    )


def format_comparison(idle_only: SimulationResult, reserve_busy: SimulationResult) -> str:
    """The old mechanism (idle nodes only) and the new one (busy nodes ending soonest too), side by side.

    >>> cfg = SimulationConfig(nodes=20, res_limit=2, saturated=True, mean_job_hours=0.5, max_hours=24)
    >>> print(format_comparison(simulate(cfg.model_copy(update={"reserve_busy": False})), simulate(cfg)))
    ... # doctest: +ELLIPSIS
                                idle only  reserve busy
    finished                           no           yes
    ...
    """

    def row(name: str, a: str, b: str) -> str:
        return f"{name:<24}{a:>13}{b:>14}"

    pair = (idle_only, reserve_busy)
    return "\n".join(
        [
            row("", "idle only", "reserve busy"),
            row("finished", *("yes" if r.finished else "no" for r in pair)),
            row("nodes updated", *(str(r.updated) for r in pair)),
            row("makespan (h)", *(f"{r.makespan_hours:.2f}" + ("" if r.finished else "+") for r in pair)),
            row("lower bound (h)", *(f"{r.lower_bound_hours:.2f}" for r in pair)),
            row("makespan/lower bound", *(f"{r.ratio:.3f}" + ("" if r.finished else "+") for r in pair)),
            row("idle node-min/update", *(f"{r.idle_held_minutes_per_update:.2f}" for r in pair)),
            row("largest reservation", *(str(r.max_reserved) for r in pair)),
        ]
    )
