"""The site path: with PREFECT_API_URL (and PREFECT_API_AUTH_STRING) set, every call goes to that server.

Two real Prefect servers. Server A is the local stack's, started the way `opsflow up --only prefect` does it (its
work pools, its `local` Blocks, every deployment), in its own home with ports shifted by 28000. Server B stands
for a site: a plain `prefect server start` with its own PREFECT_HOME, SQLite database and basic auth, holding
Blocks named `local` that point elsewhere (another pipeline store, another node-update root). With the
environment pointing at B and OPSFLOW_HOME still at A's home, the CLI (in subprocesses, as a user runs it) and the
Python API must read and write B's places, never A's.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from opsflow.stack.base import StackError
from opsflow.stack.config import StackConfig
from opsflow.stack.env import api_auth_string
from opsflow.stack.manager import down, up
from opsflow.stack.process import stack_processes
from tests.support import clean_env, one_line_error, plain_prefect_server, unavailable

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
OPSFLOW = str(BIN / "opsflow")
#: Not used by any other test or benchmark (they take 10000-30000 in steps of 1000, 24500, 29000).
SITE_A_OFFSET = 28000
#: A definition, as a file of a store's library (``<root>/pipelines/<name>.yaml``).
DEFINITION = "name: {name}\nstages:\n  - {{name: hello, command: [echo, hi]}}\n"
BUNDLE = "examples/node_update/bundle"


@dataclass
class Server:
    """A Prefect server this module reaches: its API URL, its basic-auth string and where its places are."""

    api_url: str
    auth: str
    store_root: Path
    nu_root: Path

    def post(self, path: str, body: dict[str, Any]) -> Any:
        user, _, password = self.auth.partition(":")
        r = httpx.post(f"{self.api_url}{path}", json=body, auth=(user, password), timeout=10)
        r.raise_for_status()
        return r.json()

    def project_runs(self, project: str) -> list[dict[str, Any]]:
        """The flow runs of ``project`` (A's own scheduled deployments have runs of their own)."""
        runs: list[dict[str, Any]] = self.post("/flow_runs/filter", {"limit": 200})
        return [r for r in runs if (r.get("parameters") or {}).get("project") == project]


def save_ledger(root: Path, node: str) -> None:
    """A node-update ledger naming one node, so `nu status` shows whose root it read."""
    from node_update import spool
    from node_update.models import Ledger, NodeRecord

    spool.save_ledger(root, Ledger(nodes={node: NodeRecord(level="20260101000000", reason=f"ledger of {node}")}))


# --- server A: the local stack's Prefect ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def site_a(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    cfg = StackConfig(home=tmp_path_factory.mktemp("site-a")).shifted(SITE_A_OFFSET)
    try:
        up(cfg, ["prefect"], echo=lambda _: None)
    except StackError as exc:
        down(cfg, echo=lambda _: None)
        unavailable(f"the local stack's Prefect did not start: {exc}")
    try:
        # The places the stack's `local` Blocks (opsflow/stack/blocks.py) point at.
        store_root = cfg.home / "pipelines"
        (store_root / "pipelines").mkdir(parents=True, exist_ok=True)
        (store_root / "pipelines" / "alpha.yaml").write_text(DEFINITION.format(name="alpha"))
        nu_root = cfg.home / "shared" / "node-update"
        save_ledger(nu_root, "nida01")
        yield Server(cfg.prefect_api_url, api_auth_string(cfg), store_root, nu_root)
    finally:
        down(cfg, echo=lambda _: None)
    assert stack_processes(cfg.home) == []


# --- server B: a site's Prefect, started by hand ---------------------------------------------------------------
def prefect_env(server: Server, **extra: str) -> dict[str, str]:
    return clean_env(PREFECT_API_URL=server.api_url, PREFECT_API_AUTH_STRING=server.auth, **extra)


def register_site_blocks(server: Server) -> None:
    """The opsflow Block types on B, and B's own `local` Blocks (pointing at B's places, not A's)."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    from blocks import ALL_BLOCKS, NodeUpdateSettings, PipelineStore

    with temporary_settings(updates={PREFECT_API_URL: server.api_url, PREFECT_API_AUTH_STRING: server.auth}):
        for cls in ALL_BLOCKS:
            cls.register_type_and_schema()
        PipelineStore(root=str(server.store_root)).save("local", overwrite=True)
        NodeUpdateSettings(root=str(server.nu_root)).save("local", overwrite=True)


def deploy_pipeline_run(server: Server, cwd: Path) -> None:
    """B's work pools and its `pipeline-run` deployment, from this project's prefect.yaml (as `opsflow up` does)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    from work_pools import ensure_work_pools

    async def pools() -> None:
        async with get_client() as client:
            await ensure_work_pools(client)

    with temporary_settings(updates={PREFECT_API_URL: server.api_url, PREFECT_API_AUTH_STRING: server.auth}):
        asyncio.run(pools())
    argv = [str(BIN / "prefect"), "--no-prompt", "deploy", "--name", "pipeline-run"]
    env = prefect_env(server, PREFECT_HOME=str(cwd / "deploy-prefect-home"))
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"prefect deploy on B failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"


@pytest.fixture(scope="module")
def site_b(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("site-b")
    with plain_prefect_server(base) as (api_url, auth):
        server = Server(api_url, auth, base / "store", base / "node-update")
        (server.store_root / "pipelines").mkdir(parents=True)
        (server.store_root / "pipelines" / "bravo.yaml").write_text(DEFINITION.format(name="bravo"))
        save_ledger(server.nu_root, "nidb01")
        register_site_blocks(server)
        deploy_pipeline_run(server, base)
        yield server


@pytest.fixture(scope="module")
def at_b(site_a: Server, site_b: Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A user's shell pointed at site B, with OPSFLOW_HOME still at the local stack A's home."""
    home_a = site_a.store_root.parent
    return prefect_env(site_b, OPSFLOW_HOME=str(home_a), PREFECT_HOME=str(tmp_path_factory.mktemp("client-home")))


def opsflow(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([OPSFLOW, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def ok(args: list[str], env: dict[str, str]) -> str:
    done = opsflow(args, env)
    assert done.returncode == 0, f"`opsflow {' '.join(args)}` failed ({done.returncode}):\n{done.stderr[-2000:]}"
    return done.stdout


# --- the tests ----------------------------------------------------------------------------------------------------
def test_pipeline_list_lists_the_sites_definitions(at_b: dict[str, str]) -> None:
    out = ok(["pipeline", "list"], at_b)
    assert "bravo" in out
    assert "alpha" not in out


def test_project_create_creates_the_project_in_the_sites_store(
    at_b: dict[str, str], site_a: Server, site_b: Server
) -> None:
    ok(["project", "create", "traffic", "--pipeline", "bravo"], at_b)
    assert (site_b.store_root / "projects" / "traffic").is_dir()
    assert not (site_a.store_root / "projects" / "traffic").exists()
    assert "traffic" in ok(["project", "list"], at_b)


def test_nu_commands_read_and_write_the_sites_root(at_b: dict[str, str], site_a: Server, site_b: Server) -> None:
    codename = time.strftime("%Y%m%d%H%M%S", time.localtime(time.time() + 86400))
    ok(["nu", "publish", codename, "--bundle", BUNDLE, "--nodes", "nid[001-002]"], at_b)
    assert codename in (site_b.nu_root / "active-updates.list").read_text()
    catalog_a = site_a.nu_root / "active-updates.list"
    assert not catalog_a.exists() or codename not in catalog_a.read_text()
    assert codename in ok(["nu", "list"], at_b)
    status = ok(["nu", "status"], at_b)
    assert "nidb01" in status
    assert "nida01" not in status


def test_project_start_creates_its_flow_run_on_the_site(at_b: dict[str, str], site_a: Server, site_b: Server) -> None:
    ok(["project", "create", "started", "--pipeline", "bravo"], at_b)
    ok(["project", "start", "started"], at_b)
    assert len(site_b.project_runs("started")) == 1
    assert site_a.project_runs("started") == []


def test_the_python_api_reaches_the_site(at_b: dict[str, str], site_b: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    import opsflow

    for key in [k for k in os.environ if k.startswith(("PREFECT_", "OPSFLOW_"))]:
        monkeypatch.delenv(key)
    for key in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING", "OPSFLOW_HOME"):
        monkeypatch.setenv(key, at_b[key])
    site = opsflow.connect()
    assert site.api_url == site_b.api_url
    assert not site.is_local
    assert site.block_values("opsflow-pipeline-store")["root"] == str(site_b.store_root)
    assert site.block_values("opsflow-node-update-settings")["root"] == str(site_b.nu_root)
    assert "bravo" in [d.name for d in site.pipelines.definitions()]


@pytest.mark.parametrize("command", [["pipeline", "list"], ["project", "list"], ["nu", "list"], ["nu", "status"]])
def test_a_wrong_auth_string_fails_in_one_line(command: list[str], at_b: dict[str, str]) -> None:
    done = opsflow(command, {**at_b, "PREFECT_API_AUTH_STRING": "site:wrong"})
    assert done.returncode == 1, done.stderr
    assert one_line_error(done.stderr), done.stderr
