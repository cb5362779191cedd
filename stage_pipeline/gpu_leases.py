"""Exclusive GPUs: a GPU stage leases its GPUs for the attempt's lifetime, one ``flock`` per GPU index.

Lease files (``gpu-<index>.lock``) live in one node-local directory (:func:`stage_pipeline.limits.lease_dir`,
``$OPSFLOW_GPU_LEASES``), so concurrent stage-run processes on a node never share a GPU. A lease is the lock on
an open file held by the stage-run process: when it ends, however it ends (``kill -9`` included), the kernel
drops the lock. The holder writes its name and pid into the file, so a refused stage can say who holds what.
The node's GPUs come from :func:`opsflow.gpu.list_gpus` (NVML); tests pass a stand-in list.

Example:
    >>> import tempfile
    >>> from opsflow.gpu import GpuInfo
    >>> gpus = [GpuInfo(index=i, uuid=f"GPU-{i}", name="A100", memory_used_bytes=0, memory_total_bytes=1)
    ...         for i in (0, 1)]
    >>> leases = Path(tempfile.mkdtemp())
    >>> with GpuLease(1, gpus, leases, holder="p.train.1") as first, GpuLease(1, gpus, leases) as second:
    ...     first.ids, second.ids
    (['0'], ['1'])
    >>> GpuLease(3, gpus, leases).acquire()
    Traceback (most recent call last):
    ...
    stage_pipeline.gpu_leases.GpuShortage: the stage asks for 3 GPUs; this node has 2: 2 free, 0 in use
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from opsflow.errors import OpsflowError
from opsflow.gpu import GpuInfo, list_gpus
from stage_pipeline.limits import gpu_env, lease_dir, shortage_message
from stage_pipeline.runners import RunOutcome, StageJob, StageRunner, _now


class GpuShortage(OpsflowError, RuntimeError):
    """Too few free GPUs on this node for the stage (the message says how many are free and in use)."""


class GpuLease:
    """``count`` of ``gpus`` held exclusively from :meth:`acquire` (or ``with``) until :meth:`release`."""

    def __init__(self, count: int, gpus: list[GpuInfo], directory: Path, holder: str = "") -> None:
        self.count, self.gpus, self.directory, self.holder = count, gpus, Path(directory), holder
        self._held: dict[int, int] = {}  # GPU index -> fd holding its lock

    @property
    def ids(self) -> list[str]:
        """The held GPUs' indexes, as CUDA_VISIBLE_DEVICES and Docker's device_ids take them."""
        return [str(index) for index in sorted(self._held)]

    def _path(self, index: int) -> Path:
        return self.directory / f"gpu-{index}.lock"

    def acquire(self) -> GpuLease:
        """Lock the lowest-numbered free GPUs; :class:`GpuShortage` (nothing held) when fewer than ``count``."""
        self.directory.mkdir(parents=True, exist_ok=True)
        in_use: dict[int, str] = {}
        for gpu in sorted(self.gpus, key=lambda g: g.index):
            if len(self._held) == self.count:
                break
            fd = os.open(self._path(gpu.index), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                in_use[gpu.index] = _holder_of(fd)
                os.close(fd)
                continue
            except BaseException:
                os.close(fd)
                raise
            self._held[gpu.index] = fd
            _write_holder(fd, f"{self.holder or 'a stage'} (pid {os.getpid()})")
        if len(self._held) < self.count:
            for gpu in self.gpus:  # the ones not tried yet count as free or in use, for the message
                if gpu.index not in self._held and gpu.index not in in_use and _locked(self._path(gpu.index)):
                    in_use[gpu.index] = ""
            self.release()
            raise GpuShortage(shortage_message(self.count, len(self.gpus), in_use))
        return self

    def release(self) -> None:
        """Drop every lock held (idempotent). The lease files stay: they are the locks' names, not state."""
        for fd in self._held.values():
            with contextlib.suppress(OSError):
                os.close(fd)  # closing the only descriptor releases the flock
        self._held = {}

    def __enter__(self) -> GpuLease:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def _write_holder(fd: int, text: str) -> None:
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode() + b"\n", 0)


def _holder_of(fd: int) -> str:
    try:
        return os.pread(fd, 200, 0).decode(errors="replace").strip()
    except OSError:
        return ""


def _locked(path: Path) -> bool:
    """Whether another process holds ``path``'s lock now (a missing file: not locked)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def leased_job(job: StageJob, ids: list[str]) -> StageJob:
    """``job`` holding GPUs ``ids``: a container gets exactly those devices; a process is told them in
    CUDA_VISIBLE_DEVICES (after the stage's own env, so a stage cannot widen its share by setting it).

    >>> from pathlib import Path
    >>> shell = leased_job(StageJob(argv=["train"], workdir=Path("/w"), gpus=1, env={"A": "1"}), ["1"])
    >>> shell.gpu_ids, shell.env["CUDA_VISIBLE_DEVICES"], shell.env["A"]
    (['1'], '1', '1')
    >>> leased_job(StageJob(image="trainer", workdir=Path("/w"), gpus=1), ["1"]).env
    {}
    """
    env = job.env if job.image is not None else {**job.env, **gpu_env(ids)}
    return job.model_copy(update={"gpu_ids": list(ids), "env": env})


def run_with_gpus(
    runner: StageRunner,
    job: StageJob,
    on_line: Callable[[str], None],
    should_abort: Callable[[], bool],
    inventory: Callable[[], list[GpuInfo]] = list_gpus,
    directory: Path | None = None,
) -> RunOutcome:
    """Run ``job`` with ``runner``, holding ``job.gpus`` GPUs of this node (``inventory()``) for the whole run;
    too few free GPUs is the outcome's error, nothing runs. A job asking for no GPU runs as it is."""
    if job.gpus == 0:
        return runner.run(job, on_line, should_abort)
    where = lease_dir(os.environ, os.geteuid()) if directory is None else directory
    started = _now()
    lease = GpuLease(job.gpus, inventory(), where, holder=job.name)
    try:
        lease.acquire()
    except (GpuShortage, OSError) as exc:
        why = exc if isinstance(exc, GpuShortage) else f"cannot lease GPUs in {where}: {exc}"
        return RunOutcome(error=f"stage {job.name}: {why}", started=started, ended=_now())
    try:
        return runner.run(leased_job(job, lease.ids), on_line, should_abort)
    finally:
        lease.release()
