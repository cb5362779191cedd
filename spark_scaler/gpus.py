"""GPU inventory of this host for GPU-aware scaling (the thesis's open item 8.2.3), and GPU utilisation.

A GPU is *free* for a new worker when no process of anyone else runs on it, its used memory is under a
threshold and enough memory is left; a GPU already pinned to one of our workers is never free. The selection is
pure (:func:`select_free_gpus`, :func:`pick_gpu`): tests inject inventories, the scaler reads nvidia-ml-py's
(:func:`opsflow.gpu.list_gpus`, the one NVML adapter). Each GPU worker is then started pinned to the picked GPU by
its backend. The thresholds are in MiB (nvidia-smi's unit, what an operator types); the inventory is in bytes.

Example:
    >>> g = [GpuInfo(index=0, name="A", uuid="GPU-a", memory_total_bytes=16000 * MIB, memory_used_bytes=0),
    ...      GpuInfo(index=1, name="A", uuid="GPU-b", memory_total_bytes=16000 * MIB, memory_used_bytes=0)]
    >>> pick_gpu(g, taken={"GPU-a"}).uuid
    'GPU-b'
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from opsflow.gpu import MIB, GpuInfo, list_gpus

#: A new worker needs at least this much free GPU memory.
DEFAULT_MIN_FREE_MEMORY_MB = 1024
#: A GPU using more than this (by anyone) counts as busy: the driver's own context takes a few hundred MiB.
DEFAULT_MAX_USED_MEMORY_MB = 512

__all__ = [
    "DEFAULT_MAX_USED_MEMORY_MB",
    "DEFAULT_MIN_FREE_MEMORY_MB",
    "GpuInfo",
    "GpuInventory",
    "NvmlGpuUtilization",
    "is_free",
    "pick_gpu",
    "select_free_gpus",
]


def is_free(
    gpu: GpuInfo,
    *,
    used_by_us: Collection[str] = frozenset(),
    min_free_memory_mb: int = DEFAULT_MIN_FREE_MEMORY_MB,
    max_used_memory_mb: int = DEFAULT_MAX_USED_MEMORY_MB,
) -> bool:
    """Whether a new worker may take ``gpu`` (pure).

    >>> is_free(GpuInfo(index=0, name="A", uuid="u", memory_total_bytes=8000 * MIB, memory_used_bytes=300 * MIB,
    ...                 processes=1))
    False
    """
    if gpu.uuid in used_by_us:
        return False
    return (
        gpu.processes == 0
        and gpu.memory_used_bytes <= max_used_memory_mb * MIB
        and gpu.memory_free_bytes >= min_free_memory_mb * MIB
    )


def select_free_gpus(
    gpus: Sequence[GpuInfo],
    *,
    used_by_us: Collection[str] = frozenset(),
    min_free_memory_mb: int = DEFAULT_MIN_FREE_MEMORY_MB,
    max_used_memory_mb: int = DEFAULT_MAX_USED_MEMORY_MB,
) -> list[GpuInfo]:
    """The free GPUs of an inventory, lowest index first (pure)."""
    if min_free_memory_mb < 0 or max_used_memory_mb < 0:
        raise ValueError("min_free_memory_mb and max_used_memory_mb must not be negative")
    free = [
        g
        for g in gpus
        if is_free(
            g, used_by_us=used_by_us, min_free_memory_mb=min_free_memory_mb, max_used_memory_mb=max_used_memory_mb
        )
    ]
    return sorted(free, key=lambda g: g.index)


def pick_gpu(gpus: Sequence[GpuInfo], taken: Collection[str]) -> GpuInfo | None:
    """The GPU for the next worker: the lowest-index one whose UUID is not ``taken``; None when all are (pure).

    Picking with the UUIDs of every running worker as ``taken`` never puts two workers on one GPU.

    >>> pick_gpu([], set()) is None
    True
    """
    for gpu in sorted(gpus, key=lambda g: g.index):
        if gpu.uuid not in taken:
            return gpu
    return None


class GpuInventory:
    """The GPUs of this host (nvidia-ml-py), or an injected list / callable for tests and other hosts.

    Example:
        >>> GpuInventory([]).free_gpus()
        []
    """

    def __init__(self, source: Sequence[GpuInfo] | Callable[[], list[GpuInfo]] | None = None) -> None:
        self._source = source if source is not None else list_gpus

    def gpus(self) -> list[GpuInfo]:
        """Every GPU, read now."""
        return list(self._source()) if callable(self._source) else list(self._source)

    def free_gpus(
        self,
        min_free_memory_mb: int = DEFAULT_MIN_FREE_MEMORY_MB,
        used_by_us: Collection[str] = frozenset(),
        max_used_memory_mb: int = DEFAULT_MAX_USED_MEMORY_MB,
    ) -> list[GpuInfo]:
        """The GPUs a new worker may take (see :func:`is_free`)."""
        return select_free_gpus(
            self.gpus(),
            used_by_us=used_by_us,
            min_free_memory_mb=min_free_memory_mb,
            max_used_memory_mb=max_used_memory_mb,
        )

    def pick(self, used_by_us: Collection[str], min_free_memory_mb: int = DEFAULT_MIN_FREE_MEMORY_MB) -> GpuInfo | None:
        """The free GPU for the next worker, or None when no GPU is free."""
        return pick_gpu(self.free_gpus(min_free_memory_mb, used_by_us), used_by_us)


class NvmlGpuUtilization:
    """GPU utilisation (0..1, the share of time a kernel ran), read through :func:`opsflow.gpu.list_gpus`.

    Never raises: no driver gives ``{}`` (or None for each asked UUID), a GPU that cannot be read gives None.
    ``source`` replaces the reading (tests, other hosts).

    Example:
        >>> NvmlGpuUtilization([GpuInfo(index=0, name="A", uuid="GPU-a", memory_total_bytes=MIB,
        ...                             memory_used_bytes=0, utilization=0.5)]).utilization(["GPU-a", "GPU-x"])
        {'GPU-a': 0.5, 'GPU-x': None}
    """

    def __init__(self, source: Sequence[GpuInfo] | Callable[[], list[GpuInfo]] | None = None) -> None:
        self._source = source if source is not None else list_gpus

    def utilization(self, uuids: Collection[str] | None = None) -> dict[str, float | None]:
        """UUID → utilisation of the GPUs in ``uuids`` (every GPU when None); None for a GPU not found or unread."""
        gpus = self._source() if callable(self._source) else self._source
        by_uuid = {g.uuid: g.utilization for g in gpus}
        if uuids is None:
            return by_uuid
        return {uuid: by_uuid.get(uuid) for uuid in uuids}
