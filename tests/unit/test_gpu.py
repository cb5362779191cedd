"""The one NVML adapter (opsflow.gpu), against a stand-in for nvidia-ml-py: units, faults, and its two users."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from opsflow.gpu import MIB, GpuInfo, list_gpus, no_gpu_reason
from spark_scaler.gpus import GpuInventory, NvmlGpuUtilization


class NVMLError(Exception):
    pass


@dataclass
class FakeGpu:
    uuid: bytes | str
    name: bytes | str
    used: int
    total: int
    util_percent: int | None  # None: the device does not report utilisation (MIG, some vGPUs)
    pids: list[int] = field(default_factory=list)


class FakeNvml:
    """The handful of pynvml functions opsflow.gpu calls, over a list of GPUs."""

    NVMLError = NVMLError

    def __init__(self, gpus: list[FakeGpu], *, init_error: str | None = None, fail_at: str | None = None) -> None:
        self.gpus = gpus
        self.init_error = init_error
        self.fail_at = fail_at
        self.open = 0

    def _maybe_fail(self, where: str) -> None:
        if self.fail_at == where:
            raise NVMLError(f"{where}: Unknown Error")

    def nvmlInit(self) -> None:
        if self.init_error:
            raise NVMLError(self.init_error)
        self.open += 1

    def nvmlShutdown(self) -> None:
        self.open -= 1

    def nvmlDeviceGetCount(self) -> int:
        self._maybe_fail("count")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        return self.gpus[index]

    def nvmlDeviceGetMemoryInfo(self, handle: FakeGpu) -> Any:
        self._maybe_fail("memory")
        return SimpleNamespace(used=handle.used, total=handle.total, free=handle.total - handle.used)

    def nvmlDeviceGetUtilizationRates(self, handle: FakeGpu) -> Any:
        if handle.util_percent is None:
            raise NVMLError("Not Supported")
        return SimpleNamespace(gpu=handle.util_percent, memory=0)

    def nvmlDeviceGetUUID(self, handle: FakeGpu) -> bytes | str:
        return handle.uuid

    def nvmlDeviceGetName(self, handle: FakeGpu) -> bytes | str:
        return handle.name

    def nvmlDeviceGetComputeRunningProcesses(self, handle: FakeGpu) -> list[Any]:
        return [SimpleNamespace(pid=p, usedGpuMemory=MIB) for p in handle.pids]


def two_gpus() -> list[FakeGpu]:
    return [
        FakeGpu(b"GPU-a", b"NVIDIA A100", used=512 * MIB, total=40960 * MIB, util_percent=35, pids=[101, 102]),
        FakeGpu("GPU-b", "NVIDIA A100", used=0, total=40960 * MIB, util_percent=None),
    ]


def test_gpus_are_read_in_bytes_and_fractions_and_nvml_is_closed_again() -> None:
    nvml = FakeNvml(two_gpus())
    a, b = list_gpus(nvml)
    assert a == GpuInfo(
        index=0, uuid="GPU-a", name="NVIDIA A100", memory_used_bytes=512 * MIB, memory_total_bytes=40960 * MIB,
        utilization=0.35, processes=2,
    )  # fmt: skip
    assert a.memory_free_bytes == 40448 * MIB and a.utilization_percent == 35.0
    assert b.uuid == "GPU-b" and b.utilization is None and b.utilization_percent is None and b.processes == 0
    assert nvml.open == 0
    assert no_gpu_reason(nvml) is None and nvml.open == 0


def test_no_driver_is_no_gpu_with_a_reason() -> None:
    nvml = FakeNvml(two_gpus(), init_error="Driver Not Loaded")
    assert list_gpus(nvml) == []
    assert no_gpu_reason(nvml) == "no NVIDIA driver (Driver Not Loaded)"
    assert no_gpu_reason(FakeNvml([])) == "the NVIDIA driver reports no GPU"


@pytest.mark.parametrize("where", ["count", "memory"])
def test_a_driver_fault_while_reading_is_no_gpu_not_an_exception(where: str) -> None:
    nvml = FakeNvml(two_gpus(), fail_at=where)
    assert list_gpus(nvml) == []
    assert nvml.open == 0
    assert no_gpu_reason(nvml) is not None


def test_this_host_reads_without_raising() -> None:
    gpus = list_gpus()
    assert (gpus == []) == (no_gpu_reason() is not None)
    assert all(0.0 <= (g.utilization or 0.0) <= 1.0 and g.memory_used_bytes <= g.memory_total_bytes for g in gpus)


def test_the_scaler_reads_utilisation_and_inventory_through_the_adapter() -> None:
    nvml = FakeNvml(two_gpus())
    util = NvmlGpuUtilization(lambda: list_gpus(nvml))
    assert util.utilization() == {"GPU-a": 0.35, "GPU-b": None}
    assert util.utilization(["GPU-b", "GPU-gone"]) == {"GPU-b": None, "GPU-gone": None}
    assert NvmlGpuUtilization(lambda: list_gpus(FakeNvml([], init_error="x"))).utilization(["GPU-a"]) == {"GPU-a": None}
    # GPU-a runs two processes of someone else: only GPU-b is free for a worker.
    assert [g.uuid for g in GpuInventory(lambda: list_gpus(nvml)).free_gpus()] == ["GPU-b"]
