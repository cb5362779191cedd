"""The Prefect server (SQLite, basic auth) and one process worker per work pool.

Once the server is healthy it gets the ``cpu``/``gpu`` work pools, the Block types with the local stack's
Block documents, and every deployment of ``prefect.yaml`` (``prefect deploy --all``).
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx

from opsflow.gpu import list_gpus
from opsflow.stack.base import Component, StackError
from opsflow.stack.env import prefect_client_settings
from opsflow.stack.process import ProcessSpec, running_process

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _auth(env: dict[str, str]) -> tuple[str, str]:
    user, _, password = env["PREFECT_API_AUTH_STRING"].partition(":")
    return user, password


class PrefectComponent(Component):
    name = "prefect"
    start_timeout_s = 120.0

    def processes(self) -> list[ProcessSpec]:
        db = self.cfg.dir("prefect") / "prefect.db"
        return [
            ProcessSpec(
                key="prefect-server",
                argv=[
                    str(Path(sys.executable).parent / "prefect"),
                    "server",
                    "start",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.cfg.prefect_port),
                    "--analytics-off",
                ],
                env={
                    "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{db}",
                    "PREFECT_SERVER_API_AUTH_STRING": self.env["PREFECT_API_AUTH_STRING"],
                },
            )
        ]

    def ports(self) -> list[int]:
        return [self.cfg.prefect_port]

    def url(self) -> str:
        return f"http://127.0.0.1:{self.cfg.prefect_port}"

    def healthy(self) -> bool:
        try:
            r = httpx.get(f"{self.cfg.prefect_api_url}/health", auth=_auth(self.env), timeout=2)
            return r.status_code == 200
        except httpx.HTTPError:
            return False

    def after_start(self) -> None:
        from opsflow.stack.blocks import save_local_blocks
        from work_pools import ensure_work_pools

        async def setup() -> None:
            from prefect.client.orchestration import get_client

            async with get_client() as client:
                await ensure_work_pools(client)

        with prefect_client_settings(self.cfg):
            asyncio.run(setup())
            save_local_blocks(self.cfg)
        deploy_all(self.env)


def deploy_all(env: dict[str, str]) -> None:
    """Apply every deployment of the project's ``prefect.yaml`` to the server ``env`` points at."""
    if not (PROJECT_ROOT / "prefect.yaml").exists():
        return  # installed without the project tree: nothing to deploy from
    argv = [str(Path(sys.executable).parent / "prefect"), "--no-prompt", "deploy", "--all"]
    done = subprocess.run(argv, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise StackError(f"prefect: `prefect deploy --all` failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


class WorkerComponent(Component):
    """A ``prefect worker`` polling one pool; healthy once the server has a heartbeat from this very process.

    The server keeps listing a worker ONLINE for a while after it died, so ONLINE alone would call a just
    restarted worker healthy before it registered (or when it failed to).
    """

    pool = "cpu"
    requires = ("prefect",)
    limit = 4

    @property
    def worker_name(self) -> str:
        return f"opsflow-{self.pool}-{socket.gethostname()}"

    def processes(self) -> list[ProcessSpec]:
        argv = [
            str(Path(sys.executable).parent / "prefect"),
            "worker",
            "start",
            "--pool",
            self.pool,
            "--type",
            "process",
            "--name",
            self.worker_name,
            "--limit",
            str(self.limit),
            "--install-policy",
            "never",
        ]
        # The worker ignores its first SIGTERM: a short grace, then SIGKILL (see process.stop_process).
        return [ProcessSpec(key=f"worker-{self.pool}", argv=argv, cwd=PROJECT_ROOT, stop_grace_s=5.0)]

    def ports(self) -> list[int]:
        return []

    def url(self) -> str:
        return f"http://127.0.0.1:{self.cfg.prefect_port}/work-pools/work-pool/{self.pool}"

    def healthy(self) -> bool:
        try:
            r = httpx.post(
                f"{self.cfg.prefect_api_url}/work_pools/{self.pool}/workers/filter",
                json={},
                auth=_auth(self.env),
                timeout=2,
            )
        except httpx.HTTPError:
            return False
        if r.status_code != 200:
            return False
        proc = running_process(self.cfg.home, f"worker-{self.pool}")
        if proc is None:
            return False
        started = proc.create_time()
        return any(
            w.get("name") == self.worker_name
            and w.get("status") == "ONLINE"
            and _timestamp(w.get("last_heartbeat_time")) >= started - 1.0
            for w in r.json()
        )


def _timestamp(iso: object) -> float:
    """Seconds since the epoch of an ISO 8601 time from the API; 0 when absent or malformed."""
    if not isinstance(iso, str):
        return 0.0
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        return 0.0
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


class CpuWorkerComponent(WorkerComponent):
    name = "worker-cpu"
    pool = "cpu"


class GpuWorkerComponent(WorkerComponent):
    name = "worker-gpu"
    pool = "gpu"

    def enabled(self) -> tuple[bool, str]:
        gpus = list_gpus()
        if not gpus:
            return False, "no NVIDIA GPU found by nvidia-ml-py: the gpu pool has no worker here"
        return True, ""

    def detail(self) -> str:
        return ", ".join(f"GPU{g.index} {g.name}" for g in list_gpus())
