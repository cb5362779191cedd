"""Node monitoring of every node (seed 002, req. 1510-1520) with real processes and a real Prefect server.

Two `opsflow nodes publish` processes stand for two worker nodes (different ``--hostname``) writing into one
store root; a plain `prefect server start` (its own PREFECT_HOME, SQLite and basic auth, like a site's) holds
the ``cpu`` and ``gpu`` work pools and workers registered through the API's heartbeat endpoint, as a
`prefect worker` on each node registers itself. `opsflow nodes` and the ``node-monitor`` flow must then give one
table: a fresh node with numbers, a node whose publisher stopped as STALE, a node with a worker but no publisher
as MISSING. The local stack's ``nodes`` component runs the same publisher and is healthy once its file is fresh.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from opsflow.stack.config import StackConfig
from opsflow.stack.env import child_env
from opsflow.stack.nodes import NodePublisherComponent
from stage_pipeline.monitor import nodes_dir, read_published
from stage_pipeline.node_table import MEASUREMENTS
from tests.support import clean_env, drain_prefect_clients, plain_prefect_server, stop_group, wait_until

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
#: node-a publishes every 5 s (stale after 15 s: a loaded machine keeps it fresh), node-b every 0.5 s (stale 1.5 s
#: after its publisher stops).
INTERVAL_A_S, INTERVAL_B_S = 5.0, 0.5


@dataclass
class Server:
    api_url: str
    auth: str
    store_root: Path

    def post(self, path: str, body: dict[str, Any]) -> Any:
        user, _, password = self.auth.partition(":")
        r = httpx.post(f"{self.api_url}{path}", json=body, auth=(user, password), timeout=10)
        r.raise_for_status()
        return r.json() if r.content else None

    def settings(self) -> Any:
        from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

        return temporary_settings(updates={PREFECT_API_URL: self.api_url, PREFECT_API_AUTH_STRING: self.auth})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A site's Prefect server with the work pools and a PipelineStore Block `local` over a temporary root."""
    base = tmp_path_factory.mktemp("nodes-site")
    with plain_prefect_server(base) as (api_url, auth):
        srv = Server(api_url, auth, base / "store")
        from prefect.client.orchestration import get_client

        from blocks import PipelineStore
        from work_pools import ensure_work_pools

        async def pools() -> None:
            async with get_client() as client:
                await ensure_work_pools(client)

        with srv.settings():
            asyncio.run(pools())
            PipelineStore.register_type_and_schema()
            PipelineStore(root=str(srv.store_root)).save("local", overwrite=True)
        yield srv
        with srv.settings():
            drain_prefect_clients()  # the node-monitor flow ran in this process against this server


def publisher(root: Path, hostname: str, interval_s: float) -> subprocess.Popen[bytes]:
    argv = [str(BIN / "opsflow"), "nodes", "publish", "--root", str(root), "--hostname", hostname,
            "--interval", str(interval_s)]  # fmt: skip
    return subprocess.Popen(argv, cwd=ROOT, env=clean_env(), stdout=subprocess.DEVNULL, start_new_session=True)


def heartbeat(server: Server, pool: str, name: str) -> None:
    """What a `prefect worker start --pool POOL --name NAME` sends while it polls."""
    server.post(f"/work_pools/{pool}/workers/heartbeat", {"name": name, "heartbeat_interval_seconds": 30})


def by_node(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["node"]: r for r in rows}


def check_table(rows: list[dict[str, Any]]) -> None:
    nodes = by_node(rows)
    assert set(nodes) == {"node-a", "node-b", "node-c"}, rows
    a, b, c = nodes["node-a"], nodes["node-b"], nodes["node-c"]
    assert a["pools"] == "cpu ONLINE" and a["workers"] == "opsflow-cpu-node-a"
    assert a["sample"].endswith(" s ago") and 0 <= a["cpu %"] <= 100 and a["cores"] >= 1, a
    assert b["pools"] == "gpu ONLINE" and b["sample"].startswith("STALE: "), b
    assert all(b[col] == "" for col in MEASUREMENTS), b  # no old numbers shown as current
    assert c["pools"] == "cpu ONLINE" and c["sample"] == "MISSING: no sample published", c


def test_two_publishers_and_every_pools_workers_make_one_table(server: Server) -> None:
    root = server.store_root
    procs = [publisher(root, "node-a", INTERVAL_A_S), publisher(root, "node-b", INTERVAL_B_S)]
    try:

        def both() -> bool:
            samples, _ = read_published(root)
            return {s.snapshot.hostname for s in samples} == {"node-a", "node-b"}

        assert wait_until(both, timeout_s=60, every_s=0.2), list(nodes_dir(root).iterdir())
        for pool, name in [("cpu", "opsflow-cpu-node-a"), ("gpu", "opsflow-gpu-node-b"), ("cpu", "opsflow-cpu-node-c")]:
            heartbeat(server, pool, name)
        stop_group(procs[1])  # node-b's publisher ends: its last sample goes stale after 3 intervals
        time.sleep(3 * INTERVAL_B_S + 1.5)

        env = clean_env(PREFECT_API_URL=server.api_url, PREFECT_API_AUTH_STRING=server.auth,
                        PREFECT_HOME=str(root.parent / "client-home"))  # fmt: skip
        done = subprocess.run([str(BIN / "opsflow"), "nodes", "--json"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
        check_table(json.loads(done.stdout))

        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

        from flows.node_monitor import ARTIFACT_KEY, node_monitor

        with server.settings():
            rows = node_monitor(store_block="local")
            check_table(rows)
            only_ours = ArtifactFilter(key=ArtifactFilterKey(any_=[ARTIFACT_KEY]))
            with get_client(sync_client=True) as client:
                found = client.read_artifacts(artifact_filter=only_ours)
        assert len(found) == 1, found  # one run, one artifact for every node (no key per host)
        data: Any = found[0].data
        check_table(json.loads(data) if isinstance(data, str) else data)
    finally:
        for proc in procs:
            stop_group(proc)


def test_the_stack_component_publishes_this_node(tmp_path: Path) -> None:
    cfg = StackConfig(home=tmp_path / "home", node_sample_every_s=2.0)
    comp = NodePublisherComponent(cfg, child_env(cfg))
    try:
        assert comp.start() is True
        assert comp.is_up() and comp.status().state == "up"
        samples, problems = read_published(cfg.home / "pipelines")
        assert problems == [] and [s.snapshot.hostname for s in samples] == [socket.gethostname()]
        assert comp.start() is False  # idempotent: up already
    finally:
        comp.stop()
    assert not comp.is_up() and comp.status().state == "down"
