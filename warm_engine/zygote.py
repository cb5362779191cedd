"""The warm engine of one worker node: imports Prefect and the project's flows once, then forks one child per flow
run that a launcher (:mod:`warm_engine.launcher`) asks for. ``python -m warm_engine.zygote --socket PATH``.

The zygote is one thread with no event loop, no Prefect client and no open connection, so a fork copies nothing
that a child could share by mistake. A child takes the launcher's fds as its stdin/stdout/stderr, its environment
and working directory, starts a new process group as a cold engine would have its own, refreshes Prefect's
settings from that environment and runs ``prefect.engine``'s main: the flow run is the same as from the cold
command, only without 4-5 s of imports. A stage the flow starts is still its own process tree (the runners).

Before each fork the zygote checks that no module it imported from this project changed on disk since: if one
did, it declines (the launcher starts cold) and exits, so a deployed change is never served by stale code. A
launcher that disconnects before its child ended (the worker killed it) takes its child down with SIGTERM, then
SIGKILL after a grace; a zygote that dies leaves its children running (the launchers wait for them).
"""

from __future__ import annotations

import argparse
import array
import contextlib
import importlib
import os
import select
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from warm_engine.protocol import FDS, MAX_MESSAGE, decode, encode

PROJECT_ROOT = Path(__file__).resolve().parents[1]
#: What a flow run of this project imports; loaded once, before any fork.
PRELOAD = (
    "prefect",
    "prefect.engine",
    "prefect.flow_engine",
    "prefect.client.orchestration",
    "prefect.deployments",
    "prefect.artifacts",
    "prefect.events",
    "prefect.flow_runs",
    "prefect.input",
    "flows.stage_run",
    "flows.pipeline_run",
)
KILL_GRACE_S = 10.0


@dataclass
class Child:
    conn: socket.socket
    pid: int
    orphaned_at: float | None = None


@dataclass
class Zygote:
    sock_path: Path
    children: dict[int, Child] = field(default_factory=dict)
    code_mtimes: dict[str, float] = field(default_factory=dict)

    def preload(self) -> None:
        for name in PRELOAD:
            importlib.import_module(name)
        self.code_mtimes = _project_modules()

    def stale(self) -> str | None:
        """Why the code on disk is newer than what this zygote imported (None: it is the same)."""
        for path, mtime in self.code_mtimes.items():
            try:
                if os.stat(path).st_mtime != mtime:
                    return f"{path} changed since the warm engine started"
            except OSError:
                return f"{path} is gone"
        return None

    def serve(self) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock_path.parent.mkdir(parents=True, exist_ok=True)
        self.sock_path.unlink(missing_ok=True)
        listener.bind(str(self.sock_path))
        os.chmod(self.sock_path, 0o600)  # only the worker's user may ask for a fork
        listener.listen(64)
        print(f"warm engine ready on {self.sock_path} ({len(self.code_mtimes)} project modules)", flush=True)
        serving = True
        while serving or self.children:
            watched = [listener] if serving else []
            watched += [c.conn for c in self.children.values() if c.orphaned_at is None]
            readable, _, _ = select.select(watched, [], [], 0.2)
            for ready in readable:
                if ready is not listener:
                    self._hung_up(ready)
                elif not self._accept(listener):
                    # Stale code: new launchers start cold from now on; the running children are still reported.
                    serving = False
                    listener.close()
                    self.sock_path.unlink(missing_ok=True)
            self._reap()
            self._kill_orphans()
        if serving:
            listener.close()
            self.sock_path.unlink(missing_ok=True)

    def _accept(self, listener: socket.socket) -> bool:
        """Serve one launcher; False when the zygote must stop serving (its code is stale)."""
        conn, _ = listener.accept()
        conn.settimeout(5.0)  # a peer that connects and sends nothing must not hold up every other launcher
        try:
            request, fds = _receive(conn)
        except (OSError, ValueError) as exc:
            _send(conn, {"cold": f"bad request: {exc}"})
            conn.close()
            return True
        why = self.stale()
        if why is not None:
            _send(conn, {"cold": why})
            conn.close()
            for fd in fds:
                os.close(fd)
            print(f"warm engine: {why}; serving no more", flush=True)
            return False
        pid = os.fork()
        if pid == 0:  # the child: never returns
            listener.close()
            for other in self.children.values():
                other.conn.close()
            _become_engine(conn, request, fds)
        for fd in fds:
            os.close(fd)
        self.children[pid] = Child(conn=conn, pid=pid)
        _send(conn, {"pid": pid})
        return True

    def _hung_up(self, conn: socket.socket) -> None:
        """A launcher's connection is readable: it sent nothing more, so it closed (the worker stopped it)."""
        for child in self.children.values():
            if child.conn is conn and child.orphaned_at is None:
                child.orphaned_at = time.monotonic()
                _signal(child.pid, signal.SIGTERM)

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is not None:
                if child.orphaned_at is None:
                    _send(child.conn, {"status": status})
                child.conn.close()

    def _kill_orphans(self) -> None:
        now = time.monotonic()
        for child in self.children.values():
            if child.orphaned_at is not None and now - child.orphaned_at > KILL_GRACE_S:
                _signal(child.pid, signal.SIGKILL)


def _project_modules() -> dict[str, float]:
    """The project's own imported module files and their mtimes."""
    found: dict[str, float] = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and Path(path).is_relative_to(PROJECT_ROOT) and ".venv" not in Path(path).parts:
            try:
                found[path] = os.stat(path).st_mtime
            except OSError:
                continue
    return found


def _receive(conn: socket.socket) -> tuple[dict[str, object], list[int]]:
    fds = array.array("i")
    data, ancdata, _, _ = conn.recvmsg(MAX_MESSAGE, socket.CMSG_SPACE(FDS * fds.itemsize))
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    received = list(fds)
    if len(received) != FDS:
        for fd in received:
            os.close(fd)
        raise ValueError(f"expected {FDS} file descriptors, got {len(received)}")
    buf = data
    while not buf.endswith(b"\n"):
        more = conn.recv(MAX_MESSAGE)
        if not more or len(buf) > MAX_MESSAGE:
            raise ValueError("incomplete request")
        buf += more
    return decode(buf), received


def _send(conn: socket.socket, message: dict[str, object]) -> None:
    with contextlib.suppress(OSError):  # the launcher is gone; its child is taken down by _hung_up
        conn.sendall(encode(message))


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum)


def _become_engine(conn: socket.socket, request: dict[str, object], fds: list[int]) -> None:
    code = 1
    try:
        conn.close()
        os.setpgid(0, 0)  # its own group, as the worker's cold engine process has: signals reach it and its tree
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        env = request.get("env")
        argv = request.get("argv") or []
        if not isinstance(env, dict) or not isinstance(argv, list):
            raise ValueError("env must be an object and argv a list")
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in env.items()})
        os.chdir(str(request.get("cwd") or "/"))
        sys.argv = ["prefect.engine", *map(str, argv)]
        import runpy

        import prefect.context

        prefect.context.refresh_global_settings_context()  # the run's PREFECT_* variables, not the zygote's
        runpy.run_module("prefect.engine", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # the child ends here whatever happened, with the trace shown
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m warm_engine.zygote", description=__doc__.split("\n")[0])
    parser.add_argument("--socket", required=True, help="the unix socket the launchers connect to")
    args = parser.parse_args(argv)
    zygote = Zygote(sock_path=Path(args.socket))
    zygote.preload()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        zygote.serve()
    finally:
        Path(args.socket).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
