"""Work pools as the Prefect server sees them: which workers of a pool are online (shared by the subsystems that
place runs on the ``cpu`` / ``gpu`` pools: pipeline stages, GPU variants of configuration trials)."""

from __future__ import annotations

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import Worker, WorkerStatus


def online_workers(pool: str) -> list[str]:
    """Names of the workers of ``pool`` the server sees ONLINE (heartbeat within its window); [] for no pool."""
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            workers = client.read_workers_for_work_pool(work_pool_name=pool)
        except ObjectNotFound:
            return []
    return [w.name for w in workers if w.status == WorkerStatus.ONLINE]


def workers_of_every_pool() -> list[tuple[str, Worker]]:
    """(pool name, worker) of every worker of every work pool on the server, in pool order."""
    with get_client(sync_client=True) as client:
        pools = client.read_work_pools()
        return [(pool.name, w) for pool in pools for w in client.read_workers_for_work_pool(work_pool_name=pool.name)]
