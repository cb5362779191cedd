"""The ``config-trial`` deployment on the session's stack, started through the API as ``opsflow trials run`` does.

The statistics on real Spark are in ``tests/integration/test_trials_spark.py`` (the same flow, in-process); this
checks the path a user takes: the deployment of ``prefect.yaml``, the cpu worker, the child runs and the report
of a trial whose application exits at once (every variant FAILED with the reason, the trial still COMPLETED, no
winner), which costs seconds instead of minutes, in sequential mode (the integration test runs the parallel mode),
with a GPU variant that fails because the stack has no worker of the ``gpu`` pool; and a parallel trial that asks
for more cores than the stack's workers have, refused before any round.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

import opsflow
from config_trials.definition import EXAMPLE_TRIAL_YAML
from opsflow.stack.ci_demo import wait_for_run
from opsflow.stack.config import StackConfig

pytestmark = pytest.mark.stack


def test_a_trial_runs_through_the_deployment_and_reports_variants_that_cannot_start(
    stack: StackConfig, tmp_path: Path
) -> None:
    (tmp_path / "crash.py").write_text("raise SystemExit(3)\n")
    definition = tmp_path / "cannot-start.yaml"
    gpu_variant = '  - name: trigger-2s-gpu\n    pool: gpu\n    parameters: {trigger: "2 seconds"}\nrounds:'
    definition.write_text(
        EXAMPLE_TRIAL_YAML.replace("vehicle_counts.py", "crash.py")
        .replace("name: checkpoint-interval", "name: cannot-start")
        .replace("rounds:", gpu_variant, 1)
    )
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
