"""The warm engine with real processes: a zygote on a unix socket and the `opsflow-engine` launcher (issue 15).

Without a Prefect server the engine ends at once ("Invalid flow run id"), which is enough to see where it ran:
in a fork of the zygote (no "cold start" line, and fast), or cold (the launcher says why). The flow runs
themselves are the e2e tests' (tests/e2e/test_pipelines.py runs every pipeline on this path).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import clean_env, wait_until

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = Path(sys.executable).parent / "opsflow-engine"


@pytest.fixture
def zygote(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    sock = tmp_path / "warm.sock"
    log = (tmp_path / "zygote.log").open("wb")
    argv = [sys.executable, "-m", "warm_engine.zygote", "--socket", str(sock)]
    proc = subprocess.Popen(argv, cwd=ROOT, env=clean_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: sock.exists() or proc.poll() is not None, timeout_s=120), "no socket"
        assert proc.poll() is None, (tmp_path / "zygote.log").read_text()
        yield sock, proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def launch(sock: Path | None, run_id: str = "not-a-uuid") -> subprocess.CompletedProcess[str]:
    env = clean_env(PREFECT__FLOW_RUN_ID=run_id)
    if sock is not None:
        env["OPSFLOW_WARM_SOCKET"] = str(sock)
    return subprocess.run([str(LAUNCHER)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_a_flow_run_starts_as_a_fork_of_the_warm_engine(zygote: tuple[Path, subprocess.Popen[bytes]]) -> None:
    sock, proc = zygote
    forked = launch(sock)
    # The engine's own check ran (in the fork), and its exit code came back through the launcher.
    assert forked.returncode == 1 and "Invalid flow run id" in forked.stderr, forked.stderr
    assert "cold start" not in forked.stderr
    assert proc.poll() is None, "the zygote must outlive its children"
    again = launch(sock)
    assert again.returncode == 1 and "cold start" not in again.stderr


def test_without_a_warm_engine_the_launcher_runs_the_cold_engine(tmp_path: Path) -> None:
    silent = launch(None)
    assert silent.returncode == 1 and "Invalid flow run id" in silent.stderr and "cold start" not in silent.stderr
    missing = launch(tmp_path / "nobody.sock")
    assert missing.returncode == 1 and "Invalid flow run id" in missing.stderr
    assert "opsflow-engine: cold start (no warm engine at" in missing.stderr


def test_changed_code_on_disk_is_never_served_warm(zygote: tuple[Path, subprocess.Popen[bytes]]) -> None:
    sock, proc = zygote
    module = ROOT / "flows" / "stage_run.py"
    before = module.stat()
    try:
        os.utime(module, (before.st_atime, before.st_mtime + 5))
        stale = launch(sock)
    finally:
        os.utime(module, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert stale.returncode == 1 and "changed since the warm engine started" in stale.stderr, stale.stderr
    assert "Invalid flow run id" in stale.stderr  # it still ran, cold
    assert wait_until(lambda: not sock.exists(), timeout_s=10), "a stale zygote must stop serving"
    assert wait_until(lambda: proc.poll() is not None, timeout_s=10)
    after = launch(sock)
    assert after.returncode == 1 and "cold start (no warm engine at" in after.stderr
