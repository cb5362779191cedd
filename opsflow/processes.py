"""Detached long-running processes: start, record, find, stop, and read their logs (shared by the stack and the
scaler's local worker backend).

Each process is started in its own session (so its whole process group can be signalled), with its output
appended to ``<home>/logs/<key>.log`` and its pid and start time in ``<home>/run/<key>.pid`` (the start time
guards against a recycled pid). ``home`` is any directory the caller owns (the local stack's is its
``OPSFLOW_HOME``). Every child carries ``OPSFLOW_STACK_ID=<home>`` in its environment, which is how
:func:`stack_processes` finds anything started under a home that escaped its process group.

Example:
    >>> from pathlib import Path
    >>> log_file(Path("/srv/h"), "spark-worker-0"), running_process(Path("/nonexistent"), "x") is None
    (PosixPath('/srv/h/logs/spark-worker-0.log'), True)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil
from pydantic import BaseModel

STACK_ID_VAR = "OPSFLOW_STACK_ID"


class ProcessSpec(BaseModel):
    """One long-running process of a component."""

    key: str
    argv: list[str]
    env: dict[str, str] = {}
    cwd: Path | None = None
    stop_grace_s: float = 10.0


def pid_file(home: Path, key: str) -> Path:
    """Where the pid and start time of ``key`` are recorded."""
    return home / "run" / f"{key}.pid"


def log_file(home: Path, key: str) -> Path:
    """The log ``key``'s output is appended to."""
    return home / "logs" / f"{key}.log"


def start_ticks(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (``/proc/<pid>/stat`` field 22), or None.

    The identity check of a recorded pid uses this rather than psutil's ``create_time``: that one adds the boot
    time as the wall clock sees it (``/proc/stat``'s ``btime``, whole seconds), which moves by a second whenever
    the wall clock, slewed or stepped, carries it across a second boundary; every process of a long-running
    stack then looked dead at once. The tick count never changes for the life of the process.

    >>> start_ticks(os.getpid()) == start_ticks(os.getpid()) is not None or not Path("/proc/self/stat").exists()
    True
    """
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: the fields after its last ')' start at field 3.
    rest = text[text.rindex(")") + 2 :].split()
    try:
        return int(rest[22 - 3])
    except (IndexError, ValueError):
        return None


def running_process(home: Path, key: str) -> psutil.Process | None:
    """The live process recorded for ``key``, or None (no pid file, dead, or pid reused)."""
    path = pid_file(home, key)
    try:
        record = json.loads(path.read_text())
        proc = psutil.Process(int(record["pid"]))
        recorded_ticks = record.get("start_ticks")
        if recorded_ticks is not None and start_ticks(proc.pid) is not None:
            if start_ticks(proc.pid) != int(recorded_ticks):
                return None
        elif abs(proc.create_time() - float(record["create_time"])) > 1.0:  # no /proc, or an older record
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except (FileNotFoundError, ValueError, KeyError, psutil.Error):
        return None


def start_process(home: Path, spec: ProcessSpec, base_env: Mapping[str, str]) -> psutil.Process:
    """Start ``spec`` detached, logging to its log file; record its pid."""
    from opsflow.files import atomic_write_text

    log = log_file(home, spec.key)
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**base_env, **spec.env, STACK_ID_VAR: str(home)}
    with open(log, "ab") as out:
        out.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} start: {spec.argv}\n".encode())
        out.flush()
        popen = subprocess.Popen(
            spec.argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=spec.cwd,
            start_new_session=True,
        )
    proc = psutil.Process(popen.pid)
    record = {
        "pid": popen.pid,
        "create_time": proc.create_time(),
        "start_ticks": start_ticks(popen.pid),
        "argv": spec.argv,
    }
    atomic_write_text(pid_file(home, spec.key), json.dumps(record))
    return proc


def exit_code(proc: psutil.Process) -> int | None:
    """The exit code of a child that ended (reaping it), None while it runs."""
    try:
        if proc.status() != psutil.STATUS_ZOMBIE:
            return None
        return proc.wait(timeout=0)
    except psutil.NoSuchProcess:
        return -1
    except psutil.TimeoutExpired:
        return None


def stop_process(home: Path, key: str, grace_s: float = 10.0) -> bool:
    """SIGTERM the process group of ``key``, SIGKILL what is left after ``grace_s``. True if one ran."""
    proc = running_process(home, key)
    pid_file(home, key).unlink(missing_ok=True)
    if proc is None:
        return False
    group = _group_members(proc)
    _signal_all(group, signal.SIGTERM)
    _, alive = psutil.wait_procs(group, timeout=grace_s)
    if alive:
        # Some daemons (prefect worker, for one) ignore the first SIGTERM: do not leave them taking work.
        _signal_all(alive, signal.SIGKILL)
        psutil.wait_procs(alive, timeout=5)
    return True


def stack_processes(home: Path) -> list[psutil.Process]:
    """Every live process that carries this stack's id in its environment."""
    found = []
    me = os.getpid()
    for proc in psutil.process_iter():
        if proc.pid == me:
            continue
        try:
            if proc.environ().get(STACK_ID_VAR) == str(home) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def kill_all(procs: Sequence[psutil.Process], grace_s: float = 5.0) -> None:
    """SIGTERM every process of ``procs``, SIGKILL those left after ``grace_s``."""
    _signal_all(procs, signal.SIGTERM)
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    _signal_all(alive, signal.SIGKILL)
    psutil.wait_procs(alive, timeout=5)


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file ('' when it does not exist)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            return "\n".join(fh.read().decode(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


def port_owner(port: int) -> str | None:
    """Who listens on TCP ``port`` of any local address: 'pid 123 (name)', 'unknown process', or None."""
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            if conn.pid is None:
                return "an unknown process"
            try:
                return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
            except psutil.Error:
                return f"pid {conn.pid}"
    return None


def _group_members(proc: psutil.Process) -> list[psutil.Process]:
    members = [proc]
    with contextlib.suppress(psutil.Error):
        members += proc.children(recursive=True)
    return members


def _signal_all(procs: Sequence[psutil.Process], sig: signal.Signals) -> None:
    for proc in procs:
        try:
            proc.send_signal(sig)
        except psutil.Error:
            continue
