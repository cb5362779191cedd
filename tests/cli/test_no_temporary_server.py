"""No `opsflow` command starts a temporary Prefect server, and the read-only ones do not import Prefect at all.

Prefect starts an ephemeral server (``python -m uvicorn ... prefect.server.api.server:create_app``) when a flow is
called with no API configured; the CLI must use a client instead, and its safety net (``opsflow/cli/__init__.py``)
turns that mode off. Each command runs in a subprocess against a temporary ``OPSFLOW_HOME`` with no Prefect
setting inherited, while its process tree is polled every 50 ms. Timings are the benchmark's business
(``benchmarks/cli_latency.py``), never asserted here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.support import WatchedRun, clean_env, run_watching_children

ROOT = Path(__file__).resolve().parents[2]
OPSFLOW = str(Path(sys.executable).parent / "opsflow")
DEFINITION = "examples/video_tracking/pipeline.yaml"
SCALER_CONFIG = "examples/spark_scaler/autoscaler.yaml"
TRIAL = "examples/config_trials/checkpoint.yaml"

#: Commands that need no running server (the local stack is down in these tests).
NO_SERVER = [
    ["status"],
    ["nu", "status"],
    ["nu", "list"],
    ["nu", "tick", "--dry-run"],
    ["pipeline", "list"],
    ["pipeline", "validate", DEFINITION],
    ["project", "list"],
    ["scaler", "preview", "--config", SCALER_CONFIG],
    ["scaler", "status", "--config", SCALER_CONFIG],
    ["trials", "validate", TRIAL],
    ["nodes"],
    ["nodes", "--local"],
]
#: The commands that only read files: they must not import Prefect.
READ_ONLY = [
    ["nu", "status"],
    ["nu", "list"],
    ["pipeline", "list"],
    ["pipeline", "validate", DEFINITION],
    ["project", "list"],
    ["scaler", "preview", "--config", SCALER_CONFIG],
    ["scaler", "status", "--config", SCALER_CONFIG],
    ["trials", "validate", TRIAL],
    ["nodes", "--local"],
]
#: The ones that must also succeed with nothing running.
SUCCEED_WITHOUT_SERVER = [
    ["status"],
    ["nu", "status"],
    ["nu", "list"],
    ["pipeline", "validate", DEFINITION],
    ["trials", "validate", TRIAL],
    ["nodes"],
    ["nodes", "--local"],
]

#: Runs the typer app in-process, then says whether Prefect got imported and from where (our frames only).
IMPORT_PROBE = r"""
import sys, traceback

first = []

class Spy:
    def find_spec(self, name, path=None, target=None):
        if name == "prefect" and not first:
            frames = traceback.extract_stack()[:-1]
            first.append([f"{f.filename}:{f.lineno}" for f in frames
                          if "site-packages" not in f.filename and not f.filename.startswith("<")])
        return None

sys.meta_path.insert(0, Spy())
from opsflow.cli import app
try:
    app(sys.argv[1:], prog_name="opsflow", standalone_mode=False)
except SystemExit:
    pass
except Exception as exc:
    print(f"raised {type(exc).__name__}: {exc}", file=sys.stderr)
sys.stdout.flush()
print("PREFECT_IMPORTED=" + ("yes" if "prefect" in sys.modules else "no"))
print("IMPORTED_FROM=" + " <- ".join(reversed(first[0])) if first else "IMPORTED_FROM=")
"""


def failed_cleanly(stderr: str) -> bool:
    """An ``error: ...`` message (it may quote an engine's own lines, e.g. sinfo's) and no traceback."""
    return stderr.lstrip().startswith("error:") and "Traceback" not in stderr


def ids(commands: list[list[str]]) -> list[str]:
    return [" ".join(c[:3]) for c in commands]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A stack home with nothing running, one published update, and a Slurm config that fails at once.

    The empty ``slurm.conf`` makes ``sinfo`` exit immediately (a missing one makes it retry for 60 s), so
    ``nu tick --dry-run`` fails fast instead of finding a cluster: what matters here is what it starts.
    """
    base = tmp_path_factory.mktemp("no-server")
    home = base / "home"
    slurm_conf = home / "slurm" / "etc" / "slurm.conf"
    slurm_conf.parent.mkdir(parents=True)
    slurm_conf.write_text("")
    environ = clean_env(OPSFLOW_HOME=str(home), PREFECT_HOME=str(base / "prefect-home"), SLURM_CONF=str(slurm_conf))
    published = run_watching_children(
        [OPSFLOW, "nu", "publish", "20261201120000", "--bundle", "examples/node_update/bundle", "--nodes",
         "nid[001-002]"],
        environ,
        cwd=ROOT,
    )  # fmt: skip
    assert published.returncode == 0, published.stderr
    assert not published.servers(), published.servers()
    return environ


@pytest.mark.parametrize("command", NO_SERVER, ids=ids(NO_SERVER))
def test_a_command_never_starts_a_prefect_server(command: list[str], env: dict[str, str]) -> None:
    run = run_watching_children([OPSFLOW, *command], env, cwd=ROOT)
    assert run.servers() == [], f"`opsflow {' '.join(command)}` started a Prefect server: {run.servers()}"
    assert run.returncode == 0 or failed_cleanly(run.stderr), (
        f"`opsflow {' '.join(command)}` failed with a traceback (rc {run.returncode}):\n{run.stderr[-2000:]}"
    )
    if command in SUCCEED_WITHOUT_SERVER:
        assert run.returncode == 0, run.stderr


def test_a_published_update_shows_in_the_local_catalog(env: dict[str, str]) -> None:
    run = run_watching_children([OPSFLOW, "nu", "list"], env, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert "20261201120000" in run.stdout


@pytest.mark.parametrize("command", READ_ONLY, ids=ids(READ_ONLY))
def test_a_read_only_command_does_not_import_prefect(command: list[str], env: dict[str, str]) -> None:
    run = run_watching_children([sys.executable, "-c", IMPORT_PROBE, *command], env, cwd=ROOT)
    lines = dict(line.split("=", 1) for line in run.stdout.splitlines() if line.startswith(("PREFECT_", "IMPORTED_")))
    assert lines.get("PREFECT_IMPORTED") == "no", (
        f"`opsflow {' '.join(command)}` imported prefect, first from {lines.get('IMPORTED_FROM')}\n{run.stderr[-1500:]}"
    )
    assert run.servers() == []


# --- the safety net: Prefect's ephemeral mode is off in the CLI process ------------------------------------------
SHOW_SETTING = "import os, opsflow.cli; print(os.environ.get('PREFECT_SERVER_EPHEMERAL_ENABLED'))"


@pytest.mark.parametrize(
    ("user_env", "expected"),
    [
        ({}, "false"),
        ({"PREFECT_SERVER_EPHEMERAL_ENABLED": "true"}, "true"),
        ({"PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "true"}, "true"),  # the older name of the same setting
    ],
    ids=["off-by-default", "user-chose-on", "user-chose-on-by-old-name"],
)
def test_the_cli_turns_the_temporary_server_off_unless_the_user_chose(
    user_env: dict[str, str], expected: str, env: dict[str, str]
) -> None:
    run = run_watching_children([sys.executable, "-c", SHOW_SETTING], {**env, **user_env}, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == expected


#: A command that (wrongly) calls a flow with no API: the CLI says so in one line instead of starting a server.
CALLS_A_FLOW = r"""
from opsflow.cli import app  # first, as in the console script: Prefect reads its settings when imported
from prefect import flow

@flow
def some_flow() -> int:
    return 1

@app.command("call-a-flow")
def call_a_flow() -> None:
    some_flow()

app(["call-a-flow"], prog_name="opsflow")
"""


def test_a_command_that_calls_a_flow_with_no_api_fails_in_one_line_without_a_server(env: dict[str, str]) -> None:
    run = run_watching_children([sys.executable, "-c", CALLS_A_FLOW], env, cwd=ROOT)
    assert run.servers() == []
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    assert "never starts a temporary one" in run.stderr.strip().splitlines()[-1]


#: A grandchild that lives for half a second with a server marker in its command line (and exits 0).
SHORT_LIVED_SERVER = (
    "import subprocess, sys; "
    "subprocess.run([sys.executable, '-c', 'import time; time.sleep(0.5)', 'uvicorn', 'prefect.server'], check=True)"
)


def test_the_watcher_sees_a_short_lived_server_grandchild(env: dict[str, str]) -> None:
    """The checks above would notice a server: a grandchild living half a second is seen by the 50 ms polling.

    (Prefect's ephemeral server is such a child: ``python -m uvicorn ... prefect.server.api.server:create_app``;
    starting a real one here would cost 20-40 s and is flaky on SQLite under load.)
    """
    run: WatchedRun = run_watching_children([sys.executable, "-c", SHORT_LIVED_SERVER], env, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert len(run.servers()) == 1, run.children
