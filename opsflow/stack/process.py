"""Supervision of the stack's long-running processes: the shared helpers of :mod:`opsflow.processes`.

The stack and the auto-scaler's local worker backend start, find and stop their processes the same way (pid
files under ``<home>/run``, logs under ``<home>/logs``), so the code lives once, below both; this module keeps
the names the stack's components import.

Example:
    >>> from pathlib import Path
    >>> pid_file(Path("/srv/h"), "prefect-server")
    PosixPath('/srv/h/run/prefect-server.pid')
"""

from __future__ import annotations

from opsflow.processes import (
    STACK_ID_VAR,
    ProcessSpec,
    exit_code,
    kill_all,
    log_file,
    pid_file,
    port_owner,
    running_process,
    stack_processes,
    start_process,
    stop_process,
    tail,
)

__all__ = [
    "STACK_ID_VAR",
    "ProcessSpec",
    "exit_code",
    "kill_all",
    "log_file",
    "pid_file",
    "port_owner",
    "running_process",
    "stack_processes",
    "start_process",
    "stop_process",
    "tail",
]
