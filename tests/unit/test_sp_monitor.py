"""Node monitoring: a real psutil reading, the table rows, and the no-GPU case."""

from __future__ import annotations

import socket
import threading
from datetime import UTC, datetime

import psutil
import pytest

from opsflow.gpu import MIB, GpuInfo
from stage_pipeline import monitor
from stage_pipeline.monitor import GpuSample, NodeSnapshot, gpu_samples, rate, read_gpus, sample_node, snapshot_rows

A100 = GpuSample(index=0, name="A100", util_percent=35.0, mem_used_mb=2048, mem_total_mb=40960)


def snap(hostname: str, **changes: object) -> NodeSnapshot:
    base = NodeSnapshot(
        hostname=hostname, time=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC), cpu_percent=12.34, cpu_count=8,
        load_avg=(0.5, 0.25, 0.125), mem_total_bytes=16 * 2**30, mem_used_bytes=4 * 2**30, mem_percent=25.0,
        net_bytes_sent=10, net_bytes_recv=20, net_sent_rate=2048.0, net_recv_rate=10240.0,
    )  # fmt: skip
    return base.model_copy(update=changes)


def test_a_real_sample_is_plausible() -> None:
    s = sample_node(interval_s=0.2)
    assert s.hostname == socket.gethostname()
    assert 0.0 <= s.cpu_percent <= 100.0
    assert s.cpu_count == psutil.cpu_count()
    assert all(x >= 0 for x in s.load_avg)
    assert 0 < s.mem_used_bytes <= s.mem_total_bytes == psutil.virtual_memory().total
    assert 0.0 < s.mem_percent < 100.0
    assert s.net_sent_rate >= 0 and s.net_recv_rate >= 0
    assert (s.gpus == []) == (s.gpu_note is not None)


def send(address: tuple[str, int], payload: bytes) -> None:
    with socket.create_connection(address) as client:
        client.sendall(payload)


def test_network_totals_count_traffic() -> None:
    before = psutil.net_io_counters().bytes_recv
    payload = b"x" * 2**20
    with socket.create_server(("127.0.0.1", 0)) as server:
        # A thread sends, so a full socket buffer cannot block the reader below.
        sender = threading.Thread(target=send, args=(server.getsockname(), payload))
        sender.start()
        conn, _ = server.accept()
        got = 0
        with conn:
            while chunk := conn.recv(65536):
                got += len(chunk)
        sender.join()
    assert got == len(payload)
    assert sample_node(interval_s=0.05).net_bytes_recv >= before + len(payload)


def test_rate() -> None:
    assert rate(100, 600, 0.5) == 1000.0
    assert rate(600, 100, 0.5) == 0.0  # counter reset
    assert rate(100, 600, 0.0) == 0.0


def test_no_driver_gives_no_gpus_and_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    pynvml = pytest.importorskip("pynvml")

    def no_driver() -> None:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)

    monkeypatch.setattr(pynvml, "nvmlInit", no_driver)
    gpus, note = read_gpus()
    assert gpus == []
    assert note is not None and note.startswith("no NVIDIA driver")
    s = sample_node(interval_s=0.01)
    assert s.gpus == [] and s.gpu_note == note


def test_gpus_come_from_the_inventory_in_percent_and_mib() -> None:
    infos = [
        GpuInfo(
            index=0, name="A100", uuid="GPU-a", memory_total_bytes=40960 * MIB, memory_used_bytes=2048 * MIB,
            utilization=0.35, processes=1,
        ),
        GpuInfo(index=1, name="A100", uuid="GPU-b", memory_total_bytes=40960 * MIB, memory_used_bytes=0),
    ]  # fmt: skip
    samples = gpu_samples(infos)
    assert samples[0] == A100
    assert samples[1].util_percent is None and samples[1].mem_used_mb == 0
    s = sample_node(interval_s=0.01, gpus=lambda: (samples, None))
    assert s.gpus == samples and s.gpu_note is None


def test_rows_one_per_node_sorted_with_readable_cells() -> None:
    rows = snapshot_rows([snap("node-b", gpus=[A100]), snap("node-a", gpu_note="no NVIDIA driver (x)")])
    assert [r["node"] for r in rows] == ["node-a", "node-b"]
    a, b = rows
    assert a == {
        "node": "node-a", "time": "2025-01-02T03:04:05+00:00", "cpu %": 12.3, "cores": 8,
        "load 1/5/15": "0.50 0.25 0.12", "mem GiB": "4.0/16.0", "mem %": 25.0,
        "net in KiB/s": 10.0, "net out KiB/s": 2.0, "gpus": "none (no NVIDIA driver (x))",
    }  # fmt: skip
    assert b["gpus"] == "0: A100 35% 2.0/40.0 GiB"
    assert snapshot_rows([]) == []


def test_monitor_reads_gpus_through_opsflow_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    info = GpuInfo(
        index=0, name="H100", uuid="GPU-h", memory_total_bytes=81920 * MIB, memory_used_bytes=MIB, utilization=0.9
    )
    monkeypatch.setattr(monitor, "list_gpus", lambda: [info])
    gpus, note = read_gpus()
    assert note is None
    assert gpus == [GpuSample(index=0, name="H100", util_percent=90.0, mem_used_mb=1, mem_total_mb=81920)]
