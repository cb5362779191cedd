"""The ``config-trial`` deployment on the session's stack, started through the API as ``opsflow trials run`` does.

The statistics on real Spark are in ``tests/integration/test_trials_spark.py`` (the same flow, in-process); this
checks the path a user takes: the deployment of ``prefect.yaml``, the cpu worker, the child runs and the report
of a trial whose application exits at once (every variant FAILED with the reason, the trial still COMPLETED, no
winner), which costs seconds instead of minutes, in sequential mode (the integration test runs the parallel mode),
with a GPU variant that fails because the stack has no worker of the ``gpu`` pool; the same GPU variant once a
worker of the ``gpu`` pool is up (the stack's own gpu worker component, told that this machine has a GPU): its
round is a run of ``variant-round/gpu`` on that pool; and a parallel trial that asks for more cores than the
stack's workers have, refused before any round.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

import opsflow
from config_trials.definition import EXAMPLE_TRIAL_YAML
from opsflow.stack.ci_demo import wait_for_run
from opsflow.stack.config import StackConfig
from opsflow.stack.env import child_env, prefect_client_settings
from opsflow.stack.prefect import GpuWorkerComponent

pytestmark = pytest.mark.stack
GPU_VARIANT = '  - name: trigger-2s-gpu\n    pool: gpu\n    parameters: {trigger: "2 seconds"}\nrounds:'


class StandInGpuWorker(GpuWorkerComponent):
    """The stack's gpu pool worker on a machine without an NVIDIA GPU (the pool, not a GPU, is under test)."""

    def enabled(self) -> tuple[bool, str]:
        return True, ""


@pytest.fixture
def gpu_worker(stack: StackConfig) -> Iterator[str]:
    worker = StandInGpuWorker(stack, child_env(stack))
    assert worker.start(), worker.status()
    yield worker.worker_name
    worker.stop()
    # The server lists a stopped worker ONLINE for a while: remove it, so that later tests see no gpu worker.
    with prefect_client_settings(stack), get_client(sync_client=True) as client:
        gone = client.request(
            "DELETE",
            "/work_pools/{work_pool_name}/workers/{name}",
            path_params={"work_pool_name": "gpu", "name": worker.worker_name},
        )
        assert gone.status_code == 204, gone.text


def cannot_start(tmp_path: Path, name: str) -> Path:
    """The example trial with a GPU variant, its application replaced by one that exits with 3 at once."""
    (tmp_path / "crash.py").write_text("raise SystemExit(3)\n")
    definition = tmp_path / f"{name}.yaml"
    definition.write_text(
        EXAMPLE_TRIAL_YAML.replace("vehicle_counts.py", "crash.py")
        .replace("name: checkpoint-interval", f"name: {name}")
        .replace("rounds:", GPU_VARIANT, 1)
    )
    return definition


def test_a_trial_runs_through_the_deployment_and_reports_variants_that_cannot_start(
    stack: StackConfig, tmp_path: Path
) -> None:
    definition = cannot_start(tmp_path, "cannot-start")
    started = opsflow.connect(stack.home).trials.run(definition, tmp_path / "out")
    assert started.url.endswith(f"/runs/flow-run/{started.flow_run_id}")
    run = wait_for_run(started.flow_run_id, timeout_s=300)
    assert run.state and run.state.type.value == "COMPLETED", run.state
    assert run.deployment_id is not None and run.parameters["definition_path"] == str(definition.resolve())
    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id]))
        )
    assert sorted((c.name, c.state.type.value if c.state else "?") for c in children) == [
        ("trigger-2s round 1", "FAILED"),
        ("trigger-6s round 1", "FAILED"),
    ]
    report = json.loads((tmp_path / "out" / "report.json").read_text())["report"]
    assert report["winner"] == "" and report["comparisons"] == []
    assert {v["status"] for v in report["variants"].values()} == {"failed"}
    gpu = report["variants"].pop("trigger-2s-gpu")["reason"]
    assert gpu == "round 1: no worker of the gpu pool is online: a gpu variant runs only where one is", gpu
    reasons = [v["reason"] for v in report["variants"].values()]
    assert all(r.startswith("round 1: the application exited with 3 before its query ran") for r in reasons), reasons


def test_a_gpu_variant_s_round_is_a_run_of_the_gpu_deployment_on_the_gpu_pool(
    stack: StackConfig, gpu_worker: str, tmp_path: Path
) -> None:
    definition = cannot_start(tmp_path, "on-the-gpu-pool")
    started = opsflow.connect(stack.home).trials.run(definition, tmp_path / "out")
    run = wait_for_run(started.flow_run_id, timeout_s=300)
    assert run.state and run.state.type.value == "COMPLETED", run.state
    with prefect_client_settings(stack), get_client(sync_client=True) as client:
        [child] = [
            c
            for c in client.read_flow_runs(
                flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id]))
            )
            if c.name == "trigger-2s-gpu round 1"
        ]
        deployment = client.read_deployment(child.deployment_id) if child.deployment_id else None
    assert deployment is not None and deployment.name == "gpu" and child.work_pool_name == "gpu", child
    assert child.state is not None and child.state.type.value == "FAILED"
    assert "PATH" not in json.dumps(child.parameters)  # the Block's name travels, not the trial's environment
    report = json.loads((tmp_path / "out" / "report.json").read_text())["report"]
    reason = report["variants"]["trigger-2s-gpu"]["reason"]
    assert reason.startswith("round 1: the application exited with 3 before its query ran"), reason


def test_a_parallel_trial_that_needs_more_cores_than_the_workers_have_fails_before_any_round(
    stack: StackConfig, tmp_path: Path
) -> None:
    definition = tmp_path / "too-wide.yaml"
    definition.write_text(
        EXAMPLE_TRIAL_YAML.replace("name: checkpoint-interval", "name: too-wide")
        .replace("mode: sequential", "mode: parallel")
        .replace('{trigger: "6 seconds"}', '{trigger: "6 seconds"}\n    spark: {spark.cores.max: "64"}')
    )
    (tmp_path / "vehicle_counts.py").write_text("raise SystemExit('never started')\n")
    started = opsflow.connect(stack.home).trials.run(definition, tmp_path / "out")
    run = wait_for_run(started.flow_run_id, timeout_s=300)
    assert run.state and run.state.type.value == "FAILED", run.state
    assert "parallel mode runs 2 applications at once: they need 65 cores" in (run.state.message or ""), run.state
    assert not list((tmp_path / "out").glob("round-*"))
