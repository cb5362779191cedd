"""The ``cpu`` and ``gpu`` work pools: base job templates (``cpu.json``, ``gpu.json``) and their idempotent setup.

Both are ``process`` pools here; a site swaps the templates for docker or kubernetes ones (same pool names, so
deployments do not change). Placement is Prefect's: a stage that needs a GPU goes to ``gpu``.

Example:
    >>> sorted(POOLS)
    ['cpu', 'gpu']
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
from prefect.exceptions import ObjectNotFound

POOLS: dict[str, str] = {
    "cpu": "CPU work: Slurm/Spark control, pipeline stages without GPUs",
    "gpu": "Work that needs an NVIDIA GPU (a worker runs only where nvidia-ml-py finds one)",
}
POOL_TYPE = "process"


def base_job_template(pool: str) -> dict[str, Any]:
    """The base job template shipped for ``pool``."""
    text = resources.files(__name__).joinpath(f"{pool}.json").read_text()
    template: dict[str, Any] = json.loads(text)
    return template


async def ensure_work_pools(client: PrefectClient) -> list[str]:
    """Create or update the pools so they match the shipped templates; returns the pools it changed."""
    changed = []
    for name, description in POOLS.items():
        template = base_job_template(name)
        try:
            pool = await client.read_work_pool(name)
        except ObjectNotFound:
            await client.create_work_pool(
                WorkPoolCreate(name=name, type=POOL_TYPE, base_job_template=template, description=description)
            )
            changed.append(name)
            continue
        if pool.base_job_template != template or pool.description != description:
            await client.update_work_pool(name, WorkPoolUpdate(base_job_template=template, description=description))
            changed.append(name)
    return changed
