"""Helpers shared by the tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import psutil
import pytest

from opsflow.adapters.spark import MasterState, SparkMaster
from opsflow.stack.base import Component, StackError

T = TypeVar("T")


def unavailable(msg: str) -> None:
    """A component this test needs is missing: fail in CI (CI=true), skip on a developer's machine."""
    if os.environ.get("CI") == "true":
        pytest.fail(msg)
    pytest.skip(msg)


def wait_until(probe: Callable[[], T], timeout_s: float = 30.0, every_s: float = 0.5) -> T:
    """Poll ``probe`` until it returns something truthy (bounded); returns that value, or the last one."""
    deadline = time.monotonic() + timeout_s
    value = probe()
    while not value and time.monotonic() < deadline:
        time.sleep(every_s)
        value = probe()
    return value


def kill_and_wait(procs: list[psutil.Process], timeout_s: float = 30.0) -> None:
    """SIGKILL ``procs`` and return once every one is gone (reaped, or a zombie nobody will run again).

    SIGKILL is delivered asynchronously: a test that restarts a component right after ``kill()`` could find
    the old process still alive and take it for the running one.
    """
    for proc in procs:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            continue

    def gone(proc: psutil.Process) -> bool:
        try:
            return proc.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    psutil.wait_procs(procs, timeout=1)
    dead = wait_until(lambda: all(gone(p) for p in procs), timeout_s=timeout_s, every_s=0.1)
    assert dead, "still alive after SIGKILL"


def start_or_unavailable(component: Component) -> None:
    """Start a real component for a test; one that cannot run here fails in CI and skips elsewhere."""
    ok, why = component.enabled()
    if not ok:
        unavailable(f"{component.name} cannot run here: {why}")
    try:
        component.start()
    except StackError as exc:
        component.stop()
        unavailable(f"{component.name} did not start: {exc}")


def wait_for_state(master: SparkMaster, check: Callable[[MasterState], bool], within_s: float = 90.0) -> MasterState:
    """Poll a Spark master until ``check`` holds (workers register and change state asynchronously); bounded,
    returns the last state either way."""
    deadline = time.monotonic() + within_s
    while True:
        state = master.state()
        if check(state) or time.monotonic() > deadline:
            return state
        time.sleep(0.5)


#: What a Prefect server process has in its command line: Prefect's ephemeral ("temporary") server runs
#: ``python -m uvicorn ... prefect.server.api.server:create_app``, a real one ``prefect server start``.
SERVER_MARKERS = ("uvicorn", "prefect.server", "server start")


@dataclass
class WatchedRun:
    """A finished command and every descendant process seen while it ran (their command lines)."""

    returncode: int
    stdout: str
    stderr: str
    children: list[str]

    def servers(self) -> list[str]:
        """The descendants that were Prefect servers (see :data:`SERVER_MARKERS`)."""
        return [c for c in self.children if any(marker in c for marker in SERVER_MARKERS)]


def run_watching_children(
    argv: Sequence[str],
    env: Mapping[str, str],
    timeout_s: float = 120.0,
    every_s: float = 0.05,
    cwd: Path | None = None,
) -> WatchedRun:
    """Run ``argv`` while polling its process tree every ``every_s`` (bounded by ``timeout_s``, then killed).

    Output goes to temporary files, not pipes, so a chatty command never blocks on a full pipe while we poll.
    """
    import psutil

    seen: dict[int, str] = {}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = psutil.Popen(list(argv), env=dict(env), stdout=out, stderr=err, text=True, cwd=cwd)
        deadline = time.monotonic() + timeout_s
        try:
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{' '.join(argv)} ran longer than {timeout_s:.0f} s")
                try:
                    children = proc.children(recursive=True)
                except psutil.NoSuchProcess:
                    break
                for child in children:
                    if child.pid not in seen:
                        with contextlib.suppress(psutil.Error):
                            seen[child.pid] = " ".join(child.cmdline())
                time.sleep(every_s)
        finally:
            if proc.poll() is None:
                for child in proc.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        child.kill()
                proc.kill()
            proc.wait(timeout=10)
        out.seek(0)
        err.seek(0)
        return WatchedRun(proc.returncode, out.read(), err.read(), list(seen.values()))


def clean_env(**overrides: str) -> dict[str, str]:
    """This process's environment without any Prefect or opsflow setting, plus ``overrides``.

    A developer's shell may point at a running stack (``eval "$(opsflow env)"``); a test that runs the CLI in a
    subprocess must not inherit that.
    """
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "OPSFLOW_", "SLURM_"))}
    return {**base, **overrides}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def one_line_error(stderr: str) -> bool:
    """Whether a command failed the opsflow way: one non-empty line on stderr and no traceback."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    return len(lines) == 1 and "Traceback" not in stderr


@contextlib.contextmanager
def plain_prefect_server(base: Path) -> Iterator[tuple[str, str]]:
    """A plain ``prefect server start`` as a site runs one (its own PREFECT_HOME, SQLite and basic auth) on a free
    port under ``base``; yields ``(api_url, "user:password")`` once healthy, stops it afterwards."""
    import secrets
    import sys

    import httpx

    port = free_port()
    auth = f"site:{secrets.token_urlsafe(12)}"
    api_url = f"http://127.0.0.1:{port}/api"
    env = clean_env(
        PREFECT_HOME=str(base / "prefect"),
        PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{base / 'prefect.db'}",
        PREFECT_SERVER_API_AUTH_STRING=auth,
    )
    prefect = str(Path(sys.executable).parent / "prefect")
    argv = [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port), "--analytics-off"]
    log = (base / "server.log").open("w")
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def healthy() -> bool:
        if proc.poll() is not None:
            return True  # ended: stop waiting, reported below
        try:
            user, _, password = auth.partition(":")
            return httpx.get(f"{api_url}/health", auth=(user, password), timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(healthy, timeout_s=180, every_s=0.5)
        if proc.poll() is not None or not healthy():
            unavailable(f"a plain `prefect server start` did not come up:\n{(base / 'server.log').read_text()[-2000:]}")
        yield api_url, auth
    finally:
        stop_group(proc)
        log.close()


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group a test started (``start_new_session=True``), SIGKILL it after 30 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def drain_prefect_clients(timeout_s: float = 60.0) -> None:
    """Deliver the logs and events a flow run in this process queued, while their server still runs.

    Prefect's log and event workers are process-wide singletons bound to the API they first talked to: left with
    a queue when that server stops, they make a later ``prefect_test_harness`` wait out a client timeout per
    event on exit (tests/integration/test_trials_spark.py hung so once). Call it inside the server's settings.
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=timeout_s)
    EventsWorker.drain_all(timeout=timeout_s)
