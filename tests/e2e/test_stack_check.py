"""The whole local stack, as `opsflow up` starts it, checked end to end through the `stack-check` deployment."""

from __future__ import annotations

import asyncio

import pytest
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment

from opsflow.gpu import list_gpus
from opsflow.stack.config import StackConfig
from opsflow.stack.manager import status, up

pytestmark = pytest.mark.stack


def test_every_component_is_up(stack: StackConfig) -> None:
    rows = {r.name: r for r in status(stack)}
    expected_gpu = "up" if list_gpus() else "disabled"
    for name, row in rows.items():
        want = expected_gpu if name == "worker-gpu" else "up"
        assert row.state == want, f"{name}: {row.state} {row.detail}"
    assert rows["prefect"].url == f"http://127.0.0.1:{stack.prefect_port}"


def test_stack_check_deployment_completes_on_the_cpu_worker(stack: StackConfig) -> None:
    run = run_deployment("stack-check/stack-check", timeout=300)
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
    # The stack-check job above ran on two nodes; the Epilog configured by `up` ran on each of them.
    log = stack.home / "slurm" / "epilog.log"
    lines = log.read_text().splitlines()
    assert any("job=" in line and "node=nid" in line for line in lines), lines


def test_second_up_changes_nothing(stack: StackConfig) -> None:
    before = {r.name: r.pid for r in status(stack)}
    assert up(stack) == []
    assert {r.name: r.pid for r in status(stack)} == before
