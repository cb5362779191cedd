"""One table of every node: each node's published sample joined with the Prefect workers on it (pure, no I/O).

Seed 002, req. 1510-1520: the user retrieves the CPU, RAM and network I/O utilisation of *all known nodes*.
A Prefect deployment cannot be placed on a chosen worker, so no single flow run can sample every node. Instead
every node publishes its own sample (``opsflow nodes publish``: ``<store root>/.nodes/<hostname>.json``, the
store root being the filesystem the nodes of a site share), and :func:`node_rows` joins those samples with the
workers Prefect knows, of every pool, by hostname. A node is *known* when it publishes or when a worker runs on
it; either side may be missing, and the row says so.

Rules:
- A worker's host is the tail of the stack's worker name ``opsflow-<pool>-<hostname>``; for another name, the
  published hostname it is or ends with (``-<hostname>``), the longest one; else it has no known host.
- A sample is stale when it is older than :data:`STALE_INTERVALS` of its publisher's own interval (the
  publisher stopped, or its node is down): its row shows when the sample was taken but no numbers, so that old
  numbers are never read as current. A node with workers but no sample says that none was published.

Example:
    >>> from datetime import UTC, datetime, timedelta
    >>> now = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
    >>> snap = NodeSnapshot(hostname="n1", time=now - timedelta(seconds=4), cpu_percent=12.5, cpu_count=8,
    ...     load_avg=(0.5, 0.25, 0.125), mem_total_bytes=16 * GIB, mem_used_bytes=4 * GIB, mem_percent=25.0,
    ...     net_bytes_sent=0, net_bytes_recv=0, net_sent_rate=2048.0, net_recv_rate=1024.0)
    >>> workers = [WorkerView(name="opsflow-cpu-n1", pool="cpu", status="ONLINE", last_heartbeat=now),
    ...            WorkerView(name="opsflow-gpu-n2", pool="gpu", status="OFFLINE", last_heartbeat=None)]
    >>> rows = node_rows([PublishedSample(interval_s=10, snapshot=snap)], workers, now)
    >>> [(r["node"], r["pools"], r["sample"], r["cpu %"]) for r in rows]
    [('n1', 'cpu ONLINE', '4 s ago', 12.5), ('n2', 'gpu OFFLINE (heartbeat never)', 'MISSING: no sample published', '')]
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime

from pydantic import BaseModel, Field

GIB = 2**30
#: Where the samples live under the store's root: one ``<hostname>.json`` per node.
NODES_DIR = ".nodes"
#: A sample older than this many of its publisher's intervals is stale.
STALE_INTERVALS = 3
#: The table's columns, in order (every row has all of them; a cell without a value is "").
COLUMNS = (
    "node", "pools", "workers", "sample", "time", "cpu %", "cores", "load 1/5/15", "mem GiB", "mem %",
    "net in KiB/s", "net out KiB/s", "gpus",
)  # fmt: skip
#: The cells that hold measurements: empty in a row whose sample is stale or missing.
MEASUREMENTS = COLUMNS[5:]

Row = dict[str, str | int | float]


class GpuSample(BaseModel):
    """One GPU at sampling time."""

    index: int
    name: str
    util_percent: float | None = Field(None, description="GPU busy time over the driver's last interval")
    mem_used_mb: int
    mem_total_mb: int


class NodeSnapshot(BaseModel):
    """One node's load over a short interval (rates and CPU %) plus its totals at the end of it."""

    hostname: str
    time: datetime
    cpu_percent: float = Field(description="All cores together, 0-100")
    cpu_count: int
    load_avg: tuple[float, float, float] = Field(description="1, 5 and 15 minute load averages")
    mem_total_bytes: int
    mem_used_bytes: int
    mem_percent: float
    net_bytes_sent: int = Field(description="Since boot, all interfaces")
    net_bytes_recv: int = Field(description="Since boot, all interfaces")
    net_sent_rate: float = Field(description="Bytes per second over the sampling interval")
    net_recv_rate: float = Field(description="Bytes per second over the sampling interval")
    gpus: list[GpuSample] = Field(default_factory=list)
    gpu_note: str | None = Field(None, description="Why there are no GPUs, when there are none")


class PublishedSample(BaseModel):
    """What a node's publisher writes to ``<root>/.nodes/<hostname>.json`` every ``interval_s`` seconds."""

    interval_s: float = Field(gt=0, description="Seconds between two samples of this publisher")
    snapshot: NodeSnapshot


class WorkerView(BaseModel):
    """A Prefect worker as the server lists it for one work pool."""

    name: str
    pool: str
    status: str = Field(description="ONLINE or OFFLINE, as the server computes it from the heartbeats")
    last_heartbeat: datetime | None = None


def rate(before: int, after: int, seconds: float) -> float:
    """Per-second rate of a counter between two readings; 0 for a counter reset or no time.

    >>> rate(1_000, 3_000, 2.0)
    1000.0
    >>> rate(5_000, 10, 2.0)  # a counter that went back (reset): no rate rather than a negative one
    0.0
    """
    if seconds <= 0 or after < before:
        return 0.0
    return (after - before) / seconds


def sample_file_name(hostname: str) -> str:
    """The file a node publishes to, under :data:`NODES_DIR` (a hostname never names a path outside it).

    >>> sample_file_name("gpu-07.cluster"), sample_file_name("../x")
    ('gpu-07.cluster.json', '_.._x.json')
    """
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", hostname)
    return ("_" + safe if safe.startswith(".") else safe) + ".json"


def gpu_summary(snap: NodeSnapshot) -> str:
    """One table cell for a node's GPUs.

    >>> gpu_summary(NodeSnapshot.model_construct(gpus=[GpuSample(index=0, name="A100", util_percent=35.0,
    ...     mem_used_mb=1024, mem_total_mb=40960)], gpu_note=None))
    '0: A100 35% 1.0/40.0 GiB'
    """
    if not snap.gpus:
        return f"none ({snap.gpu_note})" if snap.gpu_note else "none"
    cells = []
    for g in snap.gpus:
        util = "?" if g.util_percent is None else f"{g.util_percent:.0f}%"
        cells.append(f"{g.index}: {g.name} {util} {g.mem_used_mb / 1024:.1f}/{g.mem_total_mb / 1024:.1f} GiB")
    return "; ".join(cells)


def measurements(s: NodeSnapshot) -> Row:
    """The measurement cells of one snapshot (the columns of :data:`MEASUREMENTS`)."""
    return {
        "cpu %": round(s.cpu_percent, 1),
        "cores": s.cpu_count,
        "load 1/5/15": " ".join(f"{x:.2f}" for x in s.load_avg),
        "mem GiB": f"{s.mem_used_bytes / GIB:.1f}/{s.mem_total_bytes / GIB:.1f}",
        "mem %": round(s.mem_percent, 1),
        "net in KiB/s": round(s.net_recv_rate / 1024, 1),
        "net out KiB/s": round(s.net_sent_rate / 1024, 1),
        "gpus": gpu_summary(s),
    }


def snapshot_rows(snaps: Iterable[NodeSnapshot]) -> list[Row]:
    """One row per snapshot, taken as current (``opsflow nodes --local``), sorted by node."""
    return [
        {"node": s.hostname, "time": s.time.isoformat(timespec="seconds"), **measurements(s)}
        for s in sorted(snaps, key=lambda snap: snap.hostname)
    ]


def age_text(seconds: float) -> str:
    """A short age: seconds, minutes, hours or days.

    >>> [age_text(s) for s in (0.4, 59, 61, 7200, 3 * 86400)]
    ['0 s', '59 s', '1 min', '2 h', '3 d']
    """
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"


def sample_age(sample: PublishedSample, now: datetime) -> float:
    """Seconds since the sample was taken (0 for one from a clock ahead of ``now``)."""
    return max(0.0, (now - sample.snapshot.time).total_seconds())


def is_stale(sample: PublishedSample, now: datetime) -> bool:
    """Older than :data:`STALE_INTERVALS` of its publisher's interval.

    >>> from datetime import UTC, timedelta
    >>> now = datetime(2026, 1, 2, tzinfo=UTC)
    >>> s = PublishedSample.model_construct(interval_s=10, snapshot=NodeSnapshot.model_construct(time=now))
    >>> is_stale(s, now + timedelta(seconds=30)), is_stale(s, now + timedelta(seconds=31))
    (False, True)
    """
    return sample_age(sample, now) > STALE_INTERVALS * sample.interval_s


def host_of_worker(worker: WorkerView, hosts: Iterable[str]) -> str | None:
    """The host a worker runs on: from its name (see the module docstring), or None when it names none.

    >>> w = WorkerView(name="opsflow-gpu-gpu-07", pool="gpu", status="ONLINE")
    >>> host_of_worker(w, []), host_of_worker(w.model_copy(update={"name": "site-worker-node7"}), ["node7", "e7"])
    ('gpu-07', 'node7')
    >>> host_of_worker(w.model_copy(update={"name": "ProcessWorker 1b2c"}), ["node7"]) is None
    True
    """
    prefix = f"opsflow-{worker.pool}-"
    if worker.name.startswith(prefix) and len(worker.name) > len(prefix):
        return worker.name[len(prefix) :]
    matches = [h for h in hosts if worker.name == h or worker.name.endswith("-" + h)]
    return max(matches, key=len) if matches else None


def _pools_cell(workers: list[WorkerView], now: datetime) -> str:
    cells = []
    for w in sorted(workers, key=lambda w: (w.pool, w.name)):
        cell = f"{w.pool} {w.status}"
        if w.status != "ONLINE":
            beat = "never" if w.last_heartbeat is None else age_text((now - w.last_heartbeat).total_seconds()) + " ago"
            cell += f" (heartbeat {beat})"
        cells.append(cell)
    return "; ".join(cells)


def node_row(node: str, sample: PublishedSample | None, workers: list[WorkerView], now: datetime) -> Row:
    """The row of one node: its workers, how old its sample is, and its measurements only if not stale."""
    row: Row = dict.fromkeys(COLUMNS, "")
    row["node"] = node
    row["pools"] = _pools_cell(workers, now) or "no worker"
    row["workers"] = ", ".join(sorted(w.name for w in workers))
    if sample is None:
        row["sample"] = "MISSING: no sample published"
        if node == "?":
            row["sample"] = "MISSING: the worker's name names no known host"
        return row
    age = age_text(sample_age(sample, now))
    row["time"] = sample.snapshot.time.isoformat(timespec="seconds")
    if is_stale(sample, now):
        row["sample"] = f"STALE: {age} old (published every {sample.interval_s:g} s)"
        return row
    row["sample"] = f"{age} ago"
    row.update(measurements(sample.snapshot))
    return row


def node_rows(samples: Iterable[PublishedSample], workers: Iterable[WorkerView], now: datetime) -> list[Row]:
    """Req. 1510-1520: one row per known node, sorted by name (see the module docstring for the rules).

    Workers whose host is unknown get a row each (node ``?``) after the nodes, so no worker goes unlisted.

    >>> from datetime import UTC
    >>> now = datetime(2026, 1, 2, tzinfo=UTC)
    >>> rows = node_rows([], [WorkerView(name="ProcessWorker 1b2c", pool="cpu", status="ONLINE")], now)
    >>> [(r["node"], r["workers"], r["sample"]) for r in rows]
    [('?', 'ProcessWorker 1b2c', "MISSING: the worker's name names no known host")]
    """
    by_host: dict[str, PublishedSample] = {}
    for s in samples:
        known = by_host.get(s.snapshot.hostname)
        if known is None or s.snapshot.time > known.snapshot.time:
            by_host[s.snapshot.hostname] = s
    on_host: dict[str, list[WorkerView]] = {}
    homeless: list[WorkerView] = []
    for w in workers:
        host = host_of_worker(w, by_host)
        if host is None:
            homeless.append(w)
        else:
            on_host.setdefault(host, []).append(w)
    rows = [node_row(h, by_host.get(h), on_host.get(h, []), now) for h in sorted(by_host.keys() | on_host.keys())]
    rows += [node_row("?", None, [w], now) for w in sorted(homeless, key=lambda w: (w.pool, w.name))]
    return rows
