"""How a stage's ``resources`` are enforced on its process (pure: the probing and the writes are elsewhere).

A shell stage's ``cpus`` and ``memory`` become either a cgroup v2 of its own (``memory.max`` with no swap
beyond it, ``cpu.max`` as a CFS quota) where the runner has a writable, delegated cgroup v2 with the ``cpu``
and ``memory`` controllers, or else the fallback: the address-space rlimit (``prlimit --as``) and a CPU affinity
of ``ceil(cpus)`` cores (``taskset``), both from util-linux and both as an argv prefix, so nothing runs between
fork and exec. :func:`plan_limits` makes that choice from what :mod:`stage_pipeline.limit_probe` found; the
GPU half of exclusivity (one lease file per GPU) is in :mod:`stage_pipeline.gpu_leases`, whose pure rules
(:func:`lease_dir`, :func:`gpu_env`, :func:`shortage_message`) are here.

Rules (seed 002, stage resources): a stage gets at most the memory and CPUs it asks for; a GPU is used by one
stage at a time.

Example:
    >>> host = HostLimits(cores=[0, 1, 2, 3], prlimit="/usr/bin/prlimit", taskset="/usr/bin/taskset")
    >>> plan = plan_limits(cpus=1.5, memory_bytes=64 << 20, host=host, key="p.detect.1")
    >>> plan.mechanism, plan.prefix
    ('rlimit', ['/usr/bin/prlimit', '--as=67108864', '--', '/usr/bin/taskset', '--cpu-list', '1,2'])
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

#: The CFS period a cgroup v2 ``cpu.max`` quota is written against (the kernel's default, 100 ms).
CPU_PERIOD_US = 100_000
#: Environment variable naming a writable, delegated cgroup v2 directory the runner may create stage cgroups in.
CGROUP_ENV = "OPSFLOW_CGROUP"
#: Environment variable naming the node-local directory of GPU lease files.
LEASE_DIR_ENV = "OPSFLOW_GPU_LEASES"
#: The constant script that puts its own shell into a cgroup and then becomes the stage (``$1``: the cgroup's
#: ``cgroup.procs``; the stage's argv follows). Nothing from the stage's definition is ever part of it.
JOIN_CGROUP_SCRIPT = 'echo $$ > "$1" && shift && exec "$@"'

Mechanism = Literal["cgroup-v2", "rlimit", "none"]


class HostLimits(BaseModel):
    """What this node offers for enforcing limits, as :func:`stage_pipeline.limit_probe.probe_host` found it."""

    cores: list[int] = Field(description="CPUs the runner itself may run on (its affinity), lowest first")
    cgroup: Path | None = Field(None, description="Writable cgroup v2 with cpu and memory delegated; None: none")
    prlimit: str | None = Field(None, description="Path of util-linux's prlimit; None: not installed")
    taskset: str | None = Field(None, description="Path of util-linux's taskset; None: not installed")
    sh: str = Field("/bin/sh", description="The shell that runs JOIN_CGROUP_SCRIPT")


class LimitPlan(BaseModel):
    """How one stage's limits are enforced: an argv prefix, and for cgroup v2 the group to create first."""

    mechanism: Mechanism = "none"
    prefix: list[str] = Field(default_factory=list, description="Goes before the stage's (unprivileged) argv")
    cgroup: Path | None = Field(None, description="cgroup v2 directory to create before the start, remove after")
    cgroup_files: dict[str, str] = Field(default_factory=dict, description="Interface files to write into it")
    cores: list[int] | None = Field(None, description="The CPUs of the affinity fallback; None: any")
    notes: list[str] = Field(default_factory=list, description="What is not enforced, and why (logged)")


def pick_cores(cores: list[int], count: int, key: str) -> list[int]:
    """``count`` of ``cores``, consecutive from a start that ``key`` (the attempt's name) hashes to, so concurrent
    one-core stages spread over the node instead of all sharing its first core.

    >>> pick_cores([0, 1, 2, 3], 2, "p.detect.1"), pick_cores([0, 1], 2, "any")
    ([1, 2], [0, 1])
    """
    if count >= len(cores):
        return list(cores)
    start = zlib.crc32(key.encode()) % len(cores)
    return sorted((cores + cores)[start : start + count])


def safe_group_name(key: str) -> str:
    """A cgroup directory name for ``key``.

    >>> safe_group_name("traffic.detect.2/x")
    'opsflow-traffic.detect.2_x'
    """
    return "opsflow-" + re.sub(r"[^A-Za-z0-9._-]", "_", key)


def plan_limits(
    cpus: float | None, memory_bytes: int | None, host: HostLimits, key: str, gpus: int = 0, unique: str = ""
) -> LimitPlan:
    """Which mechanism enforces ``cpus`` and ``memory_bytes`` for the attempt ``key``, and the argv prefix.

    cgroup v2 where ``host.cgroup`` is set: the whole process tree shares ``memory.max`` (no swap beyond it) and
    a quota of ``cpus`` cores. Otherwise every process of the stage gets ``RLIMIT_AS = memory_bytes`` (address
    space, so a program reserving far more than it touches fails early; not applied to GPU stages, as CUDA maps
    the GPU's memory into the address space) and, when ``ceil(cpus)`` is below the node's cores, an affinity
    to that many cores. ``unique`` tells apart two runs of one attempt (the runner's pid).

    >>> host = HostLimits(cores=[0, 1], cgroup=Path("/sys/fs/cgroup/opsflow"))
    >>> plan = plan_limits(cpus=0.5, memory_bytes=1 << 30, host=host, key="p.a.1")
    >>> plan.mechanism, str(plan.cgroup), plan.cgroup_files["cpu.max"], plan.prefix[-1].endswith("a.1/cgroup.procs")
    ('cgroup-v2', '/sys/fs/cgroup/opsflow/opsflow-p.a.1', '50000 100000', True)
    >>> plan_limits(cpus=2, memory_bytes=None, host=HostLimits(cores=[0, 1], taskset="taskset"), key="k")
    LimitPlan(mechanism='none', prefix=[], cgroup=None, cgroup_files={}, cores=None, notes=[])
    >>> plan_limits(None, 1 << 30, HostLimits(cores=[0]), "k", gpus=1).notes
    ['memory 1073741824 bytes not enforced: no cgroup v2 here, and an address-space limit would break CUDA']
    """
    if cpus is None and memory_bytes is None:
        return LimitPlan()
    if host.cgroup is not None:
        group = host.cgroup / (safe_group_name(key) + (f"-{unique}" if unique else ""))
        files: dict[str, str] = {}
        if memory_bytes is not None:
            files["memory.max"] = str(memory_bytes)
            files["memory.swap.max"] = "0"
        if cpus is not None:
            files["cpu.max"] = f"{max(1000, round(cpus * CPU_PERIOD_US))} {CPU_PERIOD_US}"
        prefix = [host.sh, "-c", JOIN_CGROUP_SCRIPT, "opsflow-join-cgroup", str(group / "cgroup.procs")]
        return LimitPlan(mechanism="cgroup-v2", prefix=prefix, cgroup=group, cgroup_files=files)
    plan = LimitPlan()
    if memory_bytes is not None:
        if gpus > 0:
            plan.notes.append(
                f"memory {memory_bytes} bytes not enforced: no cgroup v2 here, and an address-space limit would"
                " break CUDA"
            )
        elif host.prlimit is None:
            plan.notes.append(f"memory {memory_bytes} bytes not enforced: no cgroup v2 and no prlimit (util-linux)")
        else:
            plan.prefix += [host.prlimit, f"--as={memory_bytes}", "--"]
    if cpus is not None and (want := math.ceil(cpus)) < len(host.cores):
        if host.taskset is None:
            plan.notes.append(f"cpus {cpus:g} not enforced: no cgroup v2 and no taskset (util-linux)")
        else:
            plan.cores = pick_cores(host.cores, want, key)
            plan.prefix += [host.taskset, "--cpu-list", ",".join(map(str, plan.cores))]
    if plan.prefix:
        plan.mechanism = "rlimit"
    return plan


# --- GPUs ------------------------------------------------------------------------------------------------------
def lease_dir(env: Mapping[str, str], euid: int) -> Path:
    """The node-local directory of GPU lease files: ``$OPSFLOW_GPU_LEASES``, else ``/run/opsflow/gpu-leases`` for
    root, the user's runtime directory, or a per-user directory under /tmp. Every stage-run process of a node
    must use the same one (one service user per node, as workers run).

    >>> str(lease_dir({}, 0)), str(lease_dir({"XDG_RUNTIME_DIR": "/run/user/7"}, 7)), str(lease_dir({}, 7))
    ('/run/opsflow/gpu-leases', '/run/user/7/opsflow-gpu-leases', '/tmp/opsflow-gpu-leases-7')
    >>> str(lease_dir({"OPSFLOW_GPU_LEASES": "/var/lib/leases"}, 0))
    '/var/lib/leases'
    """
    if env.get(LEASE_DIR_ENV):
        return Path(env[LEASE_DIR_ENV])
    if euid == 0:
        return Path("/run/opsflow/gpu-leases")
    if env.get("XDG_RUNTIME_DIR"):
        return Path(env["XDG_RUNTIME_DIR"]) / "opsflow-gpu-leases"
    return Path(f"/tmp/opsflow-gpu-leases-{euid}")


def gpu_env(ids: list[str]) -> dict[str, str]:
    """What a shell stage holding GPUs ``ids`` (NVML indexes) is told: CUDA numbers GPUs in PCI order then, as
    NVML and nvidia-smi do, so the indexes mean the same GPUs.

    >>> gpu_env(["1", "3"])
    {'CUDA_VISIBLE_DEVICES': '1,3', 'NVIDIA_VISIBLE_DEVICES': '1,3', 'CUDA_DEVICE_ORDER': 'PCI_BUS_ID'}
    """
    visible = ",".join(ids)
    return {"CUDA_VISIBLE_DEVICES": visible, "NVIDIA_VISIBLE_DEVICES": visible, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


def shortage_message(asked: int, total: int, in_use: Mapping[int, str]) -> str:
    """Why a GPU stage cannot start: how many GPUs it asks for, how many are free and which are in use by whom.

    >>> shortage_message(2, 2, {0: "p.train.1 (pid 41)"})
    'the stage asks for 2 GPUs; this node has 2: 1 free, 1 in use (GPU 0 by p.train.1 (pid 41))'
    >>> shortage_message(1, 0, {})
    'the stage asks for 1 GPU; this node has none'
    """
    asked_text = f"the stage asks for {asked} GPU{'s' if asked != 1 else ''}"
    if total == 0:
        return f"{asked_text}; this node has none"
    holders = ", ".join(f"GPU {index} by {who}" if who else f"GPU {index}" for index, who in sorted(in_use.items()))
    text = f"{asked_text}; this node has {total}: {total - len(in_use)} free, {len(in_use)} in use"
    return text + (f" ({holders})" if holders else "")
