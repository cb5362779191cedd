"""The NVIDIA GPUs of this host, through nvidia-ml-py (``pynvml``). No driver → no GPUs, never an error.

Example:
    >>> isinstance(list_gpus(), list)
    True
"""

from __future__ import annotations

from pydantic import BaseModel


class GpuInfo(BaseModel):
    index: int
    name: str
    uuid: str
    memory_total_mb: int
    memory_used_mb: int
    processes: int


def list_gpus() -> list[GpuInfo]:
    """Every GPU the NVIDIA driver reports; [] where there is no driver or no GPU."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...: no GPU here
        return []
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            procs = pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            uuid = pynvml.nvmlDeviceGetUUID(handle)
            gpus.append(
                GpuInfo(
                    index=i,
                    name=name.decode() if isinstance(name, bytes) else name,
                    uuid=uuid.decode() if isinstance(uuid, bytes) else uuid,
                    memory_total_mb=int(mem.total) // 2**20,
                    memory_used_mb=int(mem.used) // 2**20,
                    processes=len(procs),
                )
            )
        return gpus
    finally:
        pynvml.nvmlShutdown()
