"""The NVIDIA GPUs of this host: the one adapter over nvidia-ml-py (``pynvml``).

Every module that needs GPUs (the scaler's inventory and utilisation metric, node monitoring, the stack's gpu
worker) reads them through :func:`list_gpus` and gets one model, :class:`GpuInfo`, in one set of units: memory in
bytes, utilisation as a fraction 0..1. A module whose output promises other units (MiB, %) converts at its own edge.
No driver means no GPUs, never an error; :func:`no_gpu_reason` says why the list is empty.

Example:
    >>> isinstance(list_gpus(), list)
    True
    >>> g = GpuInfo(index=0, uuid="GPU-a", name="A100", memory_used_bytes=2 * MIB,
    ...             memory_total_bytes=40960 * MIB, utilization=0.35)
    >>> g.memory_free_bytes // MIB, g.utilization_percent
    (40958, 35.0)
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from pydantic import BaseModel, Field

log = logging.getLogger(__name__)

#: Bytes in a MiB (what nvidia-smi calls MiB).
MIB = 2**20

__all__ = ["MIB", "GpuInfo", "list_gpus", "no_gpu_reason"]


class GpuInfo(BaseModel):
    """One GPU as the driver reports it at reading time."""

    index: int = Field(description="The driver's index (nvidia-smi's numbering); not stable across reboots")
    uuid: str = Field(description="The driver's UUID (GPU-...), stable: what workers are pinned by")
    name: str = Field(description="Product name, e.g. 'NVIDIA A100-SXM4-40GB'")
    memory_used_bytes: int = Field(ge=0, description="Memory in use by anyone, the driver's context included")
    memory_total_bytes: int = Field(ge=0, description="Memory the GPU has")
    utilization: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Share of the driver's last sample period in which a kernel ran; None where it cannot be read",
    )
    processes: int = Field(default=0, ge=0, description="Compute processes running on it (anyone's)")

    @property
    def memory_free_bytes(self) -> int:
        """Memory not in use."""
        return max(0, self.memory_total_bytes - self.memory_used_bytes)

    @property
    def utilization_percent(self) -> float | None:
        """:attr:`utilization` in percent, for display."""
        return None if self.utilization is None else round(self.utilization * 100.0, 6)


def _text(value: Any) -> str:
    # Older nvidia-ml-py releases return bytes, newer ones str.
    return value.decode() if isinstance(value, bytes) else str(value)


def _read_gpu(nvml: Any, index: int) -> GpuInfo:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    mem = nvml.nvmlDeviceGetMemoryInfo(handle)
    try:
        utilization: float | None = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu) / 100.0
    except nvml.NVMLError as exc:  # MIG instances and some vGPUs do not report it: unknown, not an error
        log.debug("GPU %d reports no utilisation: %s", index, exc)
        utilization = None
    return GpuInfo(
        index=index,
        uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
        name=_text(nvml.nvmlDeviceGetName(handle)),
        memory_used_bytes=int(mem.used),
        memory_total_bytes=int(mem.total),
        utilization=utilization,
        processes=len(nvml.nvmlDeviceGetComputeRunningProcesses(handle)),
    )


def _nvml(nvml: Any | None) -> Any | None:
    if nvml is not None:
        return nvml
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


def list_gpus(nvml: Any | None = None) -> list[GpuInfo]:
    """Every GPU the NVIDIA driver reports, lowest index first; [] where there is no driver or no GPU.

    ``nvml`` is the ``pynvml`` module (the default) or a stand-in with its functions, for tests. A driver fault
    while reading gives [] rather than an exception: a tick or a monitor sample then sees no GPU and goes on.

    >>> class NoDriver:
    ...     class NVMLError(Exception): ...
    ...     def nvmlInit(): raise NoDriver.NVMLError("Driver Not Loaded")
    >>> list_gpus(NoDriver)
    []
    """
    lib = _nvml(nvml)
    if lib is None:
        return []
    try:
        lib.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...: no GPU here
        return []
    try:
        return [_read_gpu(lib, i) for i in range(lib.nvmlDeviceGetCount())]
    except Exception as exc:  # a driver fault mid-way: report no GPU rather than fail the caller
        log.debug("NVML failed while reading the GPUs: %s", exc)
        return []
    finally:
        with contextlib.suppress(Exception):
            lib.nvmlShutdown()


def no_gpu_reason(nvml: Any | None = None) -> str | None:
    """Why :func:`list_gpus` finds no GPU, in words; None when it finds some.

    >>> class NoDriver:
    ...     class NVMLError(Exception): ...
    ...     def nvmlInit(): raise NoDriver.NVMLError("Driver Not Loaded")
    >>> no_gpu_reason(NoDriver)
    'no NVIDIA driver (Driver Not Loaded)'
    """
    lib = _nvml(nvml)
    if lib is None:
        return "nvidia-ml-py is not installed"
    try:
        lib.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return f"no NVIDIA driver ({exc})"
    try:
        count = lib.nvmlDeviceGetCount()
    except Exception as exc:
        return f"the NVIDIA driver cannot count its GPUs ({exc})"
    finally:
        with contextlib.suppress(Exception):
            lib.nvmlShutdown()
    if count == 0:
        return "the NVIDIA driver reports no GPU"
    return None if list_gpus(lib) else "GPUs could not be read"
