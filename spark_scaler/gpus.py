"""GPU inventory of this host for GPU-aware scaling (the thesis's open item 8.2.3), and GPU utilisation.

A GPU is *free* for a new worker when no process of anyone else runs on it, its used memory is under a
threshold and enough memory is left; a GPU already pinned to one of our workers is never free. The selection is
pure (:func:`select_free_gpus`, :func:`pick_gpu`): tests inject inventories, the scaler reads nvidia-ml-py's
(:func:`opsflow.gpu.list_gpus`). Each GPU worker is then started pinned to the picked GPU by its backend.

Example:
    >>> g = [GpuInfo(index=0, name="A", uuid="GPU-a", memory_total_mb=16000, memory_used_mb=0, processes=0),
    ...      GpuInfo(index=1, name="A", uuid="GPU-b", memory_total_mb=16000, memory_used_mb=0, processes=0)]
    >>> pick_gpu(g, taken={"GPU-a"}).uuid
    'GPU-b'
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Collection, Sequence
from typing import Any

from opsflow.gpu import GpuInfo, list_gpus

log = logging.getLogger(__name__)

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

    >>> is_free(GpuInfo(index=0, name="A", uuid="u", memory_total_mb=8000, memory_used_mb=300, processes=1))
    False
    """
    if gpu.uuid in used_by_us:
        return False
    return (
        gpu.processes == 0
        and gpu.memory_used_mb <= max_used_memory_mb
        and gpu.memory_total_mb - gpu.memory_used_mb >= min_free_memory_mb
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
    """GPU utilisation (0..1, the share of time a kernel ran) from ``nvmlDeviceGetUtilizationRates``.

    Never raises: no driver gives ``{}``, a GPU that cannot be read gives None for it.

    Example:
        >>> isinstance(NvmlGpuUtilization().utilization(), dict)
        True
    """

    def utilization(self, uuids: Collection[str] | None = None) -> dict[str, float | None]:
        """UUID → utilisation of the GPUs in ``uuids`` (every GPU when None)."""
        try:
            import pynvml

            pynvml.nvmlInit()
        except Exception:  # no library, no driver: no GPU here
            return {uuid: None for uuid in uuids or ()}
        try:
            handles: dict[str, Any] = {}
            if uuids is None:
                for i in range(pynvml.nvmlDeviceGetCount()):
                    handle = pynvml.nvmlDeviceGetHandleByIndex(i)
                    uuid = pynvml.nvmlDeviceGetUUID(handle)
                    handles[uuid.decode() if isinstance(uuid, bytes) else str(uuid)] = handle
            else:
                for uuid in uuids:
                    try:
                        handles[uuid] = pynvml.nvmlDeviceGetHandleByUUID(uuid)
                    except pynvml.NVMLError:
                        handles[uuid] = None
            values: dict[str, float | None] = {}
            for uuid, handle in handles.items():
                try:
                    values[uuid] = None if handle is None else pynvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100.0
                except pynvml.NVMLError as exc:
                    log.debug("cannot read the utilisation of GPU %s: %s", uuid, exc)
                    values[uuid] = None
            return values
        except Exception as exc:  # a driver fault mid-way: report nothing rather than fail a tick
            log.debug("NVML failed: %s", exc)
            return {uuid: None for uuid in uuids or ()}
        finally:
            with contextlib.suppress(Exception):
                pynvml.nvmlShutdown()
