"""What this node offers for enforcing stage limits, and the cgroup v2 writes a plan needs (the adapter of
:mod:`stage_pipeline.limits`).

A delegated cgroup v2 is ``$OPSFLOW_CGROUP`` or the runner's own cgroup v2, usable when it is writable and its
``cgroup.subtree_control`` already enables ``cpu`` and ``memory`` (a systemd unit with ``Delegate=yes`` and a
worker started in a leaf below it, or a container with its own cgroup namespace). A cgroup v1 machine, or a
hybrid one whose v2 hierarchy holds no controllers, has none: the prlimit/taskset fallback runs there.

Example:
    >>> host = probe_host()
    >>> len(host.cores) >= 1
    True
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from stage_pipeline.limits import CGROUP_ENV, HostLimits, LimitPlan

log = logging.getLogger(__name__)

#: Controllers a stage cgroup needs from its parent.
NEEDED_CONTROLLERS = frozenset({"cpu", "memory"})


def cgroup2_mount(mountinfo: str) -> Path | None:
    """Where the cgroup v2 hierarchy is mounted, from ``/proc/self/mountinfo`` (None: not mounted).

    >>> cgroup2_mount("30 25 0:26 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw\\n")
    PosixPath('/sys/fs/cgroup/unified')
    """
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" in fields:
            sep = fields.index("-")
            if sep + 1 < len(fields) and fields[sep + 1] == "cgroup2" and len(fields) > 4:
                return Path(fields[4])
    return None


def own_cgroup2(proc_cgroup: str) -> str | None:
    """This process's path in the cgroup v2 hierarchy, from ``/proc/self/cgroup`` (its ``0::`` line).

    >>> own_cgroup2("4:memory:/x\\n0::/system.slice/worker.service\\n")
    '/system.slice/worker.service'
    """
    for line in proc_cgroup.splitlines():
        if line.startswith("0::"):
            return line[3:] or "/"
    return None


def delegated_cgroup(env: Mapping[str, str] | None = None, proc: Path = Path("/proc/self")) -> Path | None:
    """A cgroup v2 directory the runner may create stage cgroups in, with cpu and memory; None where there is none."""
    env = os.environ if env is None else env
    try:
        if env.get(CGROUP_ENV):
            candidate = Path(env[CGROUP_ENV])
        else:
            mount = cgroup2_mount((proc / "mountinfo").read_text())
            own = own_cgroup2((proc / "cgroup").read_text())
            if mount is None or own is None:
                return None
            candidate = mount / own.lstrip("/")
        enabled = set((candidate / "cgroup.subtree_control").read_text().split())
    except OSError:
        return None
    if not enabled >= NEEDED_CONTROLLERS or not os.access(candidate, os.W_OK):
        return None
    return candidate


def probe_host(env: Mapping[str, str] | None = None) -> HostLimits:
    """This node's means of enforcing limits (cheap: a few small reads; done per stage start)."""
    return HostLimits(
        cores=sorted(os.sched_getaffinity(0)),
        cgroup=delegated_cgroup(env),
        prlimit=shutil.which("prlimit"),
        taskset=shutil.which("taskset"),
        sh=shutil.which("sh") or "/bin/sh",
    )


@contextlib.contextmanager
def enforced(plan: LimitPlan) -> Iterator[list[str]]:
    """Create the plan's cgroup (if any) for the stage's lifetime; yields the argv prefix. The cgroup is removed
    afterwards (the runner has killed the stage's tree by then; a removal that still fails is logged)."""
    for note in plan.notes:
        log.warning("%s", note)
    if plan.cgroup is None:
        yield plan.prefix
        return
    plan.cgroup.mkdir(exist_ok=True)
    try:
        for name, value in plan.cgroup_files.items():
            (plan.cgroup / name).write_text(value)
        yield plan.prefix
    finally:
        _remove_cgroup(plan.cgroup)


def _remove_cgroup(group: Path, wait_s: float = 5.0) -> None:
    # rmdir fails with EBUSY while a (dying) process is still in it.
    deadline = time.monotonic() + wait_s
    while True:
        try:
            group.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if time.monotonic() >= deadline:
                log.warning("cannot remove stage cgroup %s: %s", group, exc)
                return
            time.sleep(0.05)
