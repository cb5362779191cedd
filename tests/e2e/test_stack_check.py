"""The whole local stack, as `opsflow up` starts it, checked end to end through the `stack-check` deployment."""

from __future__ import annotations

import asyncio

import hostlist
import pytest
from prefect.client.orchestration import get_client

from blocks import load_block
from opsflow.adapters.slurm import SlurmCLI
from opsflow.gpu import list_gpus
from opsflow.stack.blocks import local_blocks
from opsflow.stack.config import StackConfig
from opsflow.stack.demo import run_and_wait
from opsflow.stack.manager import status, up
from tests.support import wait_until

pytestmark = pytest.mark.stack


def test_every_component_is_up(stack: StackConfig) -> None:
    rows = {r.name: r for r in status(stack)}
    expected_gpu = "up" if list_gpus() else "disabled"
    for name, row in rows.items():
        want = expected_gpu if name == "worker-gpu" else "up"
        assert row.state == want, f"{name}: {row.state} {row.detail}"
    assert rows["prefect"].url == f"http://127.0.0.1:{stack.prefect_port}"


def test_stack_check_deployment_completes_on_the_cpu_worker(stack: StackConfig) -> None:
    run = run_and_wait("stack-check/stack-check", timeout_s=300)
    assert run.state is not None and run.state.is_completed(), run.state

    async def artifact_rows() -> list[dict[str, object]]:
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["stack-check"]))
            )
        latest = max(found, key=lambda a: a.created)  # type: ignore[arg-type, return-value]
        assert latest.flow_run_id == run.id
        import json

        data = latest.data if isinstance(latest.data, list) else json.loads(str(latest.data))
        return list(data)

    rows = asyncio.run(artifact_rows())
    assert {r["component"] for r in rows} == {"slurm", "spark", "prometheus", "docker"}
    assert all(r["ok"] for r in rows), rows


def test_slurm_epilog_hook_records_finished_jobs(stack: StackConfig) -> None:
    # The Epilog that `up` configures runs `opsflow stack epilog` on each node of a finished job.
    job = SlurmCLI(conf=stack.slurm_conf).submit("true", nodes=2, output=stack.home / "shared" / "e.out")
    assert job.ok, job
    log = stack.home / "slurm" / "epilog.log"

    def lines() -> list[str]:
        text = log.read_text() if log.exists() else ""
        found = [line for line in text.splitlines() if f"job={job.job_id} " in line]
        return found if len(found) >= 2 else []

    # The epilog may still be running when sbatch --wait returns (the job is COMPLETING).
    nodes = sorted(line.split("node=")[1] for line in wait_until(lines))
    assert nodes == sorted(hostlist.expand_hostlist(job.node_list))


def test_blocks_saved_by_up_load_back(stack: StackConfig) -> None:
    for block in local_blocks(stack):
        loaded = load_block(type(block), "local")
        fields = type(block).model_fields
        assert fields and {f: getattr(loaded, f) for f in fields} == {f: getattr(block, f) for f in fields}


def test_second_up_changes_nothing(stack: StackConfig) -> None:
    before = {r.name: r.pid for r in status(stack)}
    assert up(stack) == []
    assert {r.name: r.pid for r in status(stack)} == before
