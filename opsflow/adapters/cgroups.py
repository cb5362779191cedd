"""CPU throttling of running processes through the cgroup v1 ``cpu`` controller (CFS quota).

Used by the configuration trials' chaos (``throttle-cpu``): the processes move into a fresh cgroup whose quota
is a share of one core, and back to the cgroups they came from afterwards; the cgroup is then removed. Needs
the ``cpu`` controller mounted writable (cgroup v1, as on this machine, at ``/sys/fs/cgroup/cpu``); where it is
not, :func:`cpu_controller` says why and nothing is changed.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from opsflow.errors import AdapterError

CPU_ROOT = Path("/sys/fs/cgroup/cpu")
PERIOD_US = 100_000


def cpu_controller(root: Path = CPU_ROOT) -> str:
    """Why CPU throttling cannot work here ("" when it can)."""
    if not (root / "cpu.cfs_quota_us").exists():
        return f"no cgroup v1 cpu controller at {root}"
    if not os.access(root, os.W_OK):
        return f"{root} is not writable (throttling needs root)"
    return ""


def _cgroup_of(pid: int) -> str:
    """The process's path in the cpu hierarchy (from ``/proc/<pid>/cgroup``)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            return path
    return "/"


class Throttle:
    """``pids`` held to ``share`` of one core until :meth:`release` (idempotent; also a context manager)."""

    def __init__(self, pids: list[int], share: float, name: str, root: Path = CPU_ROOT) -> None:
        why = cpu_controller(root)
        if why:
            raise AdapterError(f"cannot throttle CPU: {why}")
        self.root = root
        self.group = root / name
        self.origin: dict[int, str] = {}
        self.group.mkdir(exist_ok=True)
        (self.group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (self.group / "cpu.cfs_quota_us").write_text(str(max(1000, int(share * PERIOD_US))))
        for pid in pids:
            try:
                self.origin[pid] = _cgroup_of(pid)
                (self.group / "cgroup.procs").write_text(str(pid))
            except (OSError, ValueError):
                self.origin.pop(pid, None)  # it ended meanwhile
        if not self.origin:
            self.release()

    def release(self) -> None:
        for pid, path in self.origin.items():
            with contextlib.suppress(OSError):  # an ended process needs no way back
                (self.root / path.lstrip("/") / "cgroup.procs").write_text(str(pid))
        self.origin = {}
        with contextlib.suppress(OSError):
            self.group.rmdir()

    @property
    def pids(self) -> list[int]:
        return list(self.origin)

    def __enter__(self) -> Throttle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
