"""Stage runners: run one stage attempt (a local process or a container), stream its lines, report how it ended.

Both runners share one loop: a reader thread only moves raw output chunks into a queue, and the caller's thread
splits them into lines and calls ``on_line``, so callbacks run in the caller's context (Prefect's run logger is
bound to it). A process's stdout and stderr share one pipe (their order is kept); a container's arrive as two
streams, each split on its own, so a line is never cut by the other stream (their relative order is the engine's).
``should_abort`` and the timeout are checked about every :data:`POLL_S` seconds.

Example:
    >>> splitter = LineSplitter()
    >>> splitter.feed(b"frame 1/2\\r\\nfra") + splitter.feed(b"me 2/2\\rdone") + splitter.flush()
    ['frame 1/2', 'frame 2/2', 'done']
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Literal, Protocol

import psutil
import requests
from docker.errors import DockerException
from pydantic import BaseModel, Field, model_validator

from stage_pipeline.limit_probe import enforced, probe_host
from stage_pipeline.limits import HostLimits, plan_limits
from stage_pipeline.workspace import unprivileged_prefix

POLL_S = 0.2
#: How often DockerRunner asks the engine whether a container whose log stream is still open has exited.
PROBE_S = 5.0
#: How long a stage gets between SIGTERM and SIGKILL.
KILL_GRACE_S = 3.0
#: A "line" longer than this (output without newlines) is passed on in pieces rather than buffered without bound.
MAX_LINE_BYTES = 64 * 1024
#: Container label naming the stage, so leftovers of a crashed runner can be found (``docker ps -f label=...``).
STAGE_LABEL = "opsflow.stage"
#: Python stages flush each line at once instead of in 8 KiB blocks, so progress and errors arrive live.
STREAMING_ENV = {"PYTHONUNBUFFERED": "1"}

_TERMINATOR = re.compile(rb"\r\n|\r|\n")


def area_env(
    resources: Path | str | None, inputs: Path | str | None, asks: Path | str | None = None
) -> dict[str, str]:
    """Where a stage finds the read-only areas: ``OPSFLOW_RESOURCES`` (the pool) and ``OPSFLOW_INPUT`` (its
    project's uploaded input), as paths on the node or in the container; and ``OPSFLOW_ASK``, where it puts
    requests for input while it runs (:mod:`stage_pipeline.stage_input`).

    >>> area_env("/resources", None)
    {'OPSFLOW_RESOURCES': '/resources'}
    """
    found = {"OPSFLOW_RESOURCES": resources, "OPSFLOW_INPUT": inputs, "OPSFLOW_ASK": asks}
    return {k: str(v) for k, v in found.items() if v is not None}


class StageJob(BaseModel):
    """One stage attempt to run: ``argv`` on this node, or ``argv`` in a container of ``image``."""

    name: str = Field("stage", description="Stage name (container label, messages)")
    argv: list[str] = Field(default_factory=list, description="Program and arguments; with an image, its command")
    image: str | None = Field(None, description="Container image; None runs argv as a local process")
    env: dict[str, str] = Field(default_factory=dict, description="Variables added to the stage's environment")
    workdir: Path = Field(description="The attempt's workspace: cwd of a process, /workspace in a container")
    resources: Path | None = Field(None, description="Read-only resource pool, /resources in a container")
    inputs: Path | None = Field(None, description="The project's read-only input area, /input in a container")
    asks: Path | None = Field(None, description="Where the stage asks for input, /opsflow-ask in a container")
    timeout_s: float | None = Field(None, gt=0, description="Killed after this many seconds; None: no limit")
    cpus: float | None = Field(None, gt=0, description="CPU cores it may use; None: no limit")
    memory_bytes: int | None = Field(None, gt=0, description="Memory it may use; None: no limit")
    gpus: int = Field(0, ge=0, description="Number of GPUs it asks for")
    gpu_ids: list[str] = Field(default_factory=list, description="The GPU indexes or UUIDs it holds (leased)")
    labels: dict[str, str] = Field(default_factory=dict, description="Extra container labels")

    @model_validator(mode="after")
    def _has_something_to_run(self) -> StageJob:
        if not self.argv and self.image is None:
            raise ValueError("a stage job needs argv, an image, or both")
        return self


class RunOutcome(BaseModel):
    """How a stage attempt ended. ``exit_code`` is 128 + N for a signal N (as shells and Docker report it)."""

    exit_code: int | None = Field(None, description="None when it never started or the code is unknown")
    aborted: bool = False
    timed_out: bool = False
    error: str | None = Field(None, description="Why the stage could not be started or followed")
    started: datetime
    ended: datetime

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and not (self.aborted or self.timed_out or self.error)


class StageRunner(Protocol):
    def run(self, job: StageJob, on_line: Callable[[str], None], should_abort: Callable[[], bool]) -> RunOutcome:
        """Run ``job`` to its end, calling ``on_line`` per output line; stop it once ``should_abort()`` is true."""
        ...


class LineSplitter:
    """Bytes in, lines out: ``\\n``, ``\\r\\n`` and a lone ``\\r`` (progress bars) end a line; bad UTF-8 is replaced."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[str]:
        self._buf += data
        lines, start = [], 0
        for m in _TERMINATOR.finditer(self._buf):
            if m.group() == b"\r" and m.end() == len(self._buf):
                break  # may be the first half of \r\n: wait for the next chunk
            lines.append(self._buf[start : m.start()])
            start = m.end()
        self._buf = self._buf[start:]
        while len(self._buf) > MAX_LINE_BYTES:
            lines.append(self._buf[:MAX_LINE_BYTES])
            self._buf = self._buf[MAX_LINE_BYTES:]
        return [line.decode("utf-8", errors="replace") for line in lines]

    def flush(self) -> list[str]:
        """The unterminated rest, as a last line."""
        rest, self._buf = self._buf.rstrip(b"\r"), b""
        return [rest.decode("utf-8", errors="replace")] if rest else []


def _now() -> datetime:
    return datetime.now(UTC)


def _exit_status(returncode: int) -> int:
    """Popen's -N for signal N as 128 + N.

    >>> _exit_status(-9), _exit_status(3)
    (137, 3)
    """
    return 128 - returncode if returncode < 0 else returncode


#: A chunk of output: (stream, bytes); the stream is 1 for stdout and 2 for stderr, as file descriptors go.
Chunk = tuple[int, bytes]


def _pump(chunks: Iterable[Chunk], out: queue.Queue[Chunk | None]) -> None:
    """Reader thread body: move chunks into ``out``, then None (end of output, or the source failed)."""
    try:
        for chunk in chunks:
            out.put(chunk)
    except (OSError, ValueError, DockerException, requests.RequestException):
        pass  # the stream was closed under us (kill, removal): the end of the output either way
    finally:
        out.put(None)


class _Output:
    """The caller's side of a reader thread: its queue, a line splitter per stream, whether the end was seen."""

    def __init__(self, on_line: Callable[[str], None]) -> None:
        self.chunks: queue.Queue[Chunk | None] = queue.Queue()
        self.on_line = on_line
        self.ended = False
        self._lines: dict[int, LineSplitter] = {}

    def deliver(self, timeout_s: float) -> bool:
        """Pass on the next chunk's lines (waiting up to ``timeout_s``); False when nothing came."""
        if self.ended:
            return False
        try:
            chunk = self.chunks.get(timeout=timeout_s)
        except queue.Empty:
            return False
        if chunk is None:
            self.ended = True
            return False
        stream, data = chunk
        for line in self._lines.setdefault(stream, LineSplitter()).feed(data):
            self.on_line(line)
        return True

    def watch(
        self, should_abort: Callable[[], bool], finished: Callable[[], bool], timeout_s: float | None
    ) -> Literal["finished", "aborted", "timed_out"]:
        """Deliver lines until ``finished()``, ``should_abort()`` (checked every POLL_S) or the timeout."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        next_abort_check = 0.0
        while True:
            if not self.deliver(POLL_S) and self.ended:
                time.sleep(POLL_S)  # output closed, process still running: keep polling, do not spin
            if finished():
                return "finished"
            now = time.monotonic()
            if now >= next_abort_check:
                next_abort_check = now + POLL_S
                if should_abort():
                    return "aborted"
            if deadline is not None and now >= deadline:
                return "timed_out"

    def drain(self, wait_s: float) -> None:
        """Deliver the rest, up to the reader's end marker or ``wait_s``, then the unterminated last line."""
        deadline = time.monotonic() + wait_s
        while not self.ended and (left := deadline - time.monotonic()) > 0:
            self.deliver(left)
        for splitter in self._lines.values():
            for line in splitter.flush():
                self.on_line(line)


class ShellRunner:
    """A stage as a local process tree: ``[*unprivileged prefix, *argv]`` in ``job.workdir``.

    The stage runs in its own session, so a Ctrl-C or SIGTERM aimed at the worker's process group does not reach
    it, and everything it starts can be found and killed as one tree (children plus any orphan left in its
    session). When the stage's main process ends, whatever it left running in its session is killed too: a stage
    is over when its main process is, and nothing may write to its workspace after it is sealed. If the runner
    itself dies, the stage keeps its session and is not killed here (its next write to the closed pipe usually
    ends it): the flow marks such an attempt lost.

    ``job.cpus`` and ``job.memory_bytes`` are enforced as :func:`stage_pipeline.limits.plan_limits` decides for
    this node (``host``: what :func:`stage_pipeline.limit_probe.probe_host` finds, probed per run by default).
    """

    def __init__(
        self, prefix: list[str] | None = None, kill_grace_s: float = KILL_GRACE_S, host: HostLimits | None = None
    ) -> None:
        self.prefix = unprivileged_prefix() if prefix is None else prefix
        self.kill_grace_s = kill_grace_s
        self.host = host

    def run(self, job: StageJob, on_line: Callable[[str], None], should_abort: Callable[[], bool]) -> RunOutcome:
        if job.image is not None:
            raise ValueError(f"stage {job.name}: ShellRunner cannot run image {job.image} (use DockerRunner)")
        started = _now()
        host = self.host or probe_host()
        plan = plan_limits(job.cpus, job.memory_bytes, host, job.name, gpus=job.gpus, unique=str(os.getpid()))
        for note in plan.notes:  # what this node cannot enforce, in the stage's own log (and the run's)
            on_line(f"opsflow: {note}")
        with enforced(plan) as limits:
            return self._run(job, [*limits, *self.prefix, *job.argv], started, on_line, should_abort)

    def _run(
        self, job: StageJob, argv: list[str], started: datetime, on_line: Callable[[str], None],
        should_abort: Callable[[], bool],
    ) -> RunOutcome:  # fmt: skip
        env = {**STREAMING_ENV, **os.environ, **area_env(job.resources, job.inputs, job.asks), **job.env}
        try:
            proc = subprocess.Popen(
                argv, cwd=job.workdir, env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            return RunOutcome(error=f"cannot start {job.argv[0]!r}: {exc}", started=started, ended=_now())
        assert proc.stdout is not None
        output = _Output(on_line)
        threading.Thread(target=_pump, args=(_read_chunks(proc.stdout), output.chunks), daemon=True).start()
        try:
            how = output.watch(should_abort, lambda: _has_exited(proc.pid), job.timeout_s)
        finally:
            # Also on a KeyboardInterrupt or an exception from on_line: no stage process outlives run().
            kill_tree(proc, self.kill_grace_s)
        output.drain(wait_s=5.0)
        proc.stdout.close()
        return RunOutcome(
            exit_code=_exit_status(proc.wait()), aborted=how == "aborted", timed_out=how == "timed_out",
            started=started, ended=_now(),
        )  # fmt: skip


def _read_chunks(stream: IO[bytes]) -> Iterator[Chunk]:
    """Whatever the pipe holds now (at most 64 KiB), without waiting for a full buffer."""
    fd = stream.fileno()
    while data := os.read(fd, 65536):
        yield 1, data


def _has_exited(pid: int) -> bool:
    """Whether our child ``pid`` has exited, leaving it unreaped (so its pid, the session id, is not reused)."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def kill_tree(proc: subprocess.Popen[bytes], grace_s: float = KILL_GRACE_S) -> None:
    """SIGTERM the stage's main process, its descendants and every other process of its session; SIGKILL
    whatever is left after ``grace_s``. The main process is reaped by ``proc.wait()`` (its exit code is kept)."""
    others: dict[int, psutil.Process] = {}
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(proc.pid).children(recursive=True):
            others[child.pid] = child
    # Orphans re-parented away from the tree still carry the session id (= the main pid, unreaped so unique).
    for candidate in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if candidate.pid != proc.pid and os.getsid(candidate.pid) == proc.pid:
                others[candidate.pid] = candidate
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    for p in others.values():
        with contextlib.suppress(psutil.Error):
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    alive = _wait_gone(list(others.values()), grace_s)
    try:
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    _wait_gone(alive, grace_s)


def _running(p: psutil.Process) -> bool:
    # An orphan's zombie waits for whatever reaper adopted it; it runs nothing and holds no files.
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _wait_gone(procs: list[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """Wait up to ``timeout_s`` for ``procs`` to end; those still running."""
    deadline = time.monotonic() + timeout_s
    while (alive := [p for p in procs if _running(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive
