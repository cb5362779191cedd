"""``opsflow-engine``: the process worker's command for a flow run (stdlib only, so it starts in milliseconds).

It asks the node's warm zygote (the unix socket ``$OPSFLOW_WARM_SOCKET``) to fork a pre-imported engine with
this process's stdin/stdout/stderr, environment and working directory, then stays in place of that child for the
worker: SIGTERM / SIGINT / SIGHUP go on to the child, and it exits as the child did (a signal death is re-raised,
so the worker sees the same return code). Without a socket, or when the zygote declines, it execs the cold
command ``python -m prefect.engine`` in its own place: a node without a zygote runs flows exactly as before.
"""

from __future__ import annotations

import array
import contextlib
import os
import signal
import socket
import sys

from warm_engine.protocol import MAX_MESSAGE, decode, encode, exit_code_of

SOCKET_ENV = "OPSFLOW_WARM_SOCKET"


def cold(why: str) -> None:
    """Exec the cold engine (never returns)."""
    if why:
        print(f"opsflow-engine: cold start ({why})", file=sys.stderr, flush=True)
    os.execv(sys.executable, [sys.executable, "-m", "prefect.engine", *sys.argv[1:]])


def _read_line(conn: socket.socket, buf: bytearray) -> bytes | None:
    while b"\n" not in buf:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        buf += chunk
        if len(buf) > MAX_MESSAGE:
            raise ValueError("message too long")
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    return line


def _outlive(child: int, every_s: float = 0.2) -> int:
    """The zygote died before its child: the child runs on (its flow run is not lost with the zygote), so wait
    until it is gone; its status is unknown, so 1: the worker then marks the run Crashed only if the run did not
    report its own end (a final state stays final)."""
    import time

    while True:
        try:
            with open(f"/proc/{child}/stat", "rb") as stat:
                state = stat.read().rpartition(b")")[2].split()[0]
        except (OSError, IndexError):
            return 1
        if state in (b"Z", b"X"):
            return 1
        time.sleep(every_s)


def main() -> None:
    path = os.environ.get(SOCKET_ENV)
    if not path:
        cold("")
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)  # type: ignore[arg-type]
        request = encode({"env": dict(os.environ), "cwd": os.getcwd(), "argv": sys.argv[1:]})
        conn.sendmsg([request], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [0, 1, 2]))])
        buf = bytearray()
        line = _read_line(conn, buf)
    except (OSError, ValueError) as exc:
        conn.close()
        cold(f"no warm engine at {path}: {exc}")
        return
    first = decode(line) if line else {"cold": "the warm engine closed the connection"}
    if "pid" not in first:
        conn.close()
        cold(str(first.get("cold", first)))
        return
    child = int(first["pid"])

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    try:
        while (line := _read_line(conn, buf)) is not None:
            message = decode(line)
            if "status" in message:
                code = exit_code_of(int(message["status"]))
                break
        else:
            code = _outlive(child)
    except (OSError, ValueError):
        code = _outlive(child)
    conn.close()
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    sys.exit(code)


if __name__ == "__main__":
    main()
