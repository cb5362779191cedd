"""CPU throttling through the cgroup v1 cpu controller (opsflow.adapters.cgroups), on a real busy process."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from opsflow.adapters.cgroups import CPU_ROOT, Throttle, cpu_controller
from tests.support import unavailable

BUSY = "while True: pass"


@pytest.fixture
def busy() -> Iterator[psutil.Process]:
    why = cpu_controller()
    if why:
        unavailable(f"CPU throttling cannot work here: {why}")
    proc = subprocess.Popen([sys.executable, "-c", BUSY])
    try:
        yield psutil.Process(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def cpu_seconds(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system


def test_a_throttled_process_gets_its_share_and_goes_back_where_it_was(busy: psutil.Process) -> None:
    cgroups = Path(f"/proc/{busy.pid}/cgroup")
    before = cgroups.read_text()
    with Throttle([busy.pid], 0.2, "opsflow-test-throttle") as throttle:
        assert throttle.pids == [busy.pid]
        assert (CPU_ROOT / "opsflow-test-throttle" / "cpu.cfs_quota_us").read_text().strip() == "20000"
        start = cpu_seconds(busy)
        time.sleep(2.0)
        used = cpu_seconds(busy) - start
    # The kernel enforces 20 ms per 100 ms period: 0.4 s in 2 s, plus at most one period of slack.
    assert used < 0.55, used
    assert cgroups.read_text() == before
    assert not (CPU_ROOT / "opsflow-test-throttle").exists()


def test_a_process_that_ended_is_skipped_and_nothing_is_left(busy: psutil.Process) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    throttle = Throttle([gone.pid], 0.5, "opsflow-test-gone")
    assert throttle.pids == []
    assert not (CPU_ROOT / "opsflow-test-gone").exists()
    throttle.release()  # twice: nothing to do, no error
