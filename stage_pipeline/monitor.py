"""Node monitoring: CPU, memory, network I/O (psutil) and GPUs (through opsflow.gpu) of the node this runs on.

The models and :func:`snapshot_rows` are pure; :func:`sample_node` is the one function that reads the machine.
A node without an NVIDIA driver has no GPUs, reported as an empty list with a note saying why.

Example:
    >>> rate(1_000, 3_000, 2.0)
    1000.0
    >>> rate(5_000, 10, 2.0)  # a counter that went back (reset): no rate rather than a negative one
    0.0
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import psutil
from pydantic import BaseModel, Field

from opsflow.gpu import MIB, GpuInfo, list_gpus, no_gpu_reason

GIB = 2**30


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


def rate(before: int, after: int, seconds: float) -> float:
    """Per-second rate of a counter between two readings; 0 for a counter reset or no time."""
    if seconds <= 0 or after < before:
        return 0.0
    return (after - before) / seconds


def gpu_samples(infos: Iterable[GpuInfo]) -> list[GpuSample]:
    """GpuSamples (%, MiB: this table's units) from :func:`opsflow.gpu.list_gpus` entries (fraction, bytes).

    >>> gpu_samples([GpuInfo(index=0, uuid="GPU-a", name="A100", memory_used_bytes=1024 * MIB,
    ...                      memory_total_bytes=40960 * MIB, utilization=0.35)])[0].util_percent
    35.0
    """
    return [
        GpuSample(
            index=g.index,
            name=g.name,
            util_percent=g.utilization_percent,
            mem_used_mb=g.memory_used_bytes // MIB,
            mem_total_mb=g.memory_total_bytes // MIB,
        )
        for g in infos
    ]


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


def snapshot_rows(snaps: Iterable[NodeSnapshot]) -> list[dict[str, str | int | float]]:
    """One row per node for a table artifact (``prefect.artifacts.create_table_artifact``), sorted by node."""
    rows: list[dict[str, str | int | float]] = []
    for s in sorted(snaps, key=lambda snap: snap.hostname):
        rows.append(
            {
                "node": s.hostname,
                "time": s.time.isoformat(timespec="seconds"),
                "cpu %": round(s.cpu_percent, 1),
                "cores": s.cpu_count,
                "load 1/5/15": " ".join(f"{x:.2f}" for x in s.load_avg),
                "mem GiB": f"{s.mem_used_bytes / GIB:.1f}/{s.mem_total_bytes / GIB:.1f}",
                "mem %": round(s.mem_percent, 1),
                "net in KiB/s": round(s.net_recv_rate / 1024, 1),
                "net out KiB/s": round(s.net_sent_rate / 1024, 1),
                "gpus": gpu_summary(s),
            }
        )
    return rows


# --- reading the machine -----------------------------------------------------------------------------------------
def read_gpus() -> tuple[list[GpuSample], str | None]:
    """This node's GPUs through :mod:`opsflow.gpu`, or ``([], reason)``."""
    infos = list_gpus()
    if not infos:
        return [], no_gpu_reason() or "GPUs could not be read"
    return gpu_samples(infos), None


def sample_node(
    interval_s: float = 0.5, gpus: Callable[[], tuple[list[GpuSample], str | None]] = read_gpus
) -> NodeSnapshot:
    """Sample this node for ``interval_s`` seconds (CPU % and network rates are averages over it)."""
    net0, t0 = psutil.net_io_counters(), time.monotonic()
    cpu = psutil.cpu_percent(interval=interval_s)
    net1, t1 = psutil.net_io_counters(), time.monotonic()
    mem = psutil.virtual_memory()
    gpu_list, note = gpus()
    return NodeSnapshot(
        hostname=socket.gethostname(),
        time=datetime.now(UTC),
        cpu_percent=cpu,
        cpu_count=psutil.cpu_count() or 1,
        load_avg=psutil.getloadavg(),
        mem_total_bytes=mem.total,
        mem_used_bytes=mem.total - mem.available,  # what programs cannot get back (psutil's `used` omits caches)
        mem_percent=mem.percent,
        net_bytes_sent=net1.bytes_sent,
        net_bytes_recv=net1.bytes_recv,
        net_sent_rate=rate(net0.bytes_sent, net1.bytes_sent, t1 - t0),
        net_recv_rate=rate(net0.bytes_recv, net1.bytes_recv, t1 - t0),
        gpus=gpu_list,
        gpu_note=note,
    )
