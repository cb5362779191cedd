"""Node monitoring, the I/O side: CPU, memory, network I/O (psutil) and GPUs (through opsflow.gpu) of the node
this runs on, and the published samples of every node under the store's root.

The models and the table (:mod:`stage_pipeline.node_table`) are pure and re-exported here; :func:`sample_node`
reads the machine, :func:`publish_sample` / :func:`publish_loop` write this node's sample to
``<root>/.nodes/<hostname>.json`` (atomic: temporary file, fsync, rename, so a reader never sees half a file),
:func:`read_published` reads every node's. A node without an NVIDIA driver has no GPUs, reported as an empty
list with a note saying why.

Example:
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> path = publish_sample(root, sample_node(0.01, hostname="node-a"), interval_s=10)
    >>> path.relative_to(root).as_posix()
    '.nodes/node-a.json'
    >>> samples, problems = read_published(root)
    >>> [s.snapshot.hostname for s in samples], problems
    (['node-a'], [])
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

import psutil

from opsflow.files import atomic_write_text
from opsflow.gpu import MIB, GpuInfo, list_gpus, no_gpu_reason
from stage_pipeline.node_table import (
    NODES_DIR,
    GpuSample,
    NodeSnapshot,
    PublishedSample,
    gpu_summary,
    rate,
    sample_file_name,
    snapshot_rows,
)

__all__ = [
    "GpuSample", "NodeSnapshot", "PublishedSample", "gpu_samples", "gpu_summary", "nodes_dir", "publish_loop",
    "publish_sample", "rate", "read_gpus", "read_published", "sample_node", "snapshot_rows",
]  # fmt: skip


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


# --- reading the machine -----------------------------------------------------------------------------------------
def read_gpus() -> tuple[list[GpuSample], str | None]:
    """This node's GPUs through :mod:`opsflow.gpu`, or ``([], reason)``."""
    infos = list_gpus()
    if not infos:
        return [], no_gpu_reason() or "GPUs could not be read"
    return gpu_samples(infos), None


def sample_node(
    interval_s: float = 0.5,
    gpus: Callable[[], tuple[list[GpuSample], str | None]] = read_gpus,
    hostname: str | None = None,
) -> NodeSnapshot:
    """Sample this node for ``interval_s`` seconds (CPU % and network rates are averages over it).

    ``hostname``: the name to report (default ``socket.gethostname()``, the name the stack's workers carry).
    """
    net0, t0 = psutil.net_io_counters(), time.monotonic()
    cpu = psutil.cpu_percent(interval=interval_s)
    net1, t1 = psutil.net_io_counters(), time.monotonic()
    mem = psutil.virtual_memory()
    gpu_list, note = gpus()
    return NodeSnapshot(
        hostname=hostname or socket.gethostname(),
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


# --- publishing: one file per node under the store's root ---------------------------------------------------------
def nodes_dir(root: Path) -> Path:
    """Where the nodes of a store publish their samples: ``<root>/.nodes``."""
    return Path(root) / NODES_DIR


def publish_sample(root: Path, snapshot: NodeSnapshot, interval_s: float) -> Path:
    """Write ``snapshot`` as its node's published sample (atomically); returns the file."""
    path = nodes_dir(root) / sample_file_name(snapshot.hostname)
    atomic_write_text(path, PublishedSample(interval_s=interval_s, snapshot=snapshot).model_dump_json(indent=1))
    return path


def publish_loop(
    root: Path,
    interval_s: float = 10.0,
    hostname: str | None = None,
    rounds: int | None = None,
    on_sample: Callable[[Path, NodeSnapshot], None] | None = None,
) -> int:
    """Sample this node and publish it every ``interval_s`` seconds, ``rounds`` times (None: until killed).

    CPU % and the network rates are averaged over the first second of each interval (or all of a shorter one).
    Returns the number of samples written.
    """
    written = 0
    while rounds is None or written < rounds:
        started = time.monotonic()
        snap = sample_node(min(1.0, interval_s), hostname=hostname)
        path = publish_sample(root, snap, interval_s)
        written += 1
        if on_sample is not None:
            on_sample(path, snap)
        if rounds is not None and written >= rounds:
            break
        time.sleep(max(0.0, interval_s - (time.monotonic() - started)))
    return written


def read_published(root: Path) -> tuple[list[PublishedSample], list[str]]:
    """Every node's published sample under ``root``, and one line per file that could not be read."""
    samples: list[PublishedSample] = []
    problems: list[str] = []
    folder = nodes_dir(root)
    if not folder.is_dir():
        return samples, problems
    for path in sorted(folder.glob("*.json")):
        if path.name.startswith("."):  # a publisher's temporary file
            continue
        try:
            samples.append(PublishedSample.model_validate_json(path.read_bytes()))
        except (OSError, ValueError) as exc:
            problems.append(f"{path}: unreadable sample: {str(exc).splitlines()[0]}")
    return samples, problems
