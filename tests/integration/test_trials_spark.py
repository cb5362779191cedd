"""A configuration trial on the real Spark standalone cluster, run by the ``config-trial`` flow against a real
Prefect server (Prefect's test harness: a temporary server on SQLite), with its child runs and artifacts.

One trial, run once for the module, in parallel mode (every variant's round at once, one core each, their feeds
started together): the baseline, its identical twin (the A/A check: not declared different), a variant with a
known slowdown (a fixed sleep per batch) and one configured to fail (a window Spark cannot parse), 7 rounds
paired by round (in parallel mode a round's variants share its input, its moment and its chaos); the worker
stopped for a second at the same moment of every round, and in the last round the executors throttled to half a
core (cgroup v1 CFS quota), then killed (Spark starts new ones: every variant still completes). Every variant's
round is a real ``spark-submit`` of ``examples/config_trials/vehicle_counts.py``. The tests read what the flow
returned, its child runs and artifacts on the server, and the files the rounds left. Sequential mode (the
default) goes through the deployment in ``tests/e2e/test_config_trials.py`` and the demo.

The stack's own Spark is not used: beside the whole stack on two cores a round's start-up takes 40-60 s.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from config_trials.definition import TrialDefinition, load_definition
from config_trials.inputs import round_hash
from config_trials.judge import TrialReport
from config_trials.report import load_results, write_report
from config_trials.spark_runner import round_dir
from opsflow.stack.config import StackConfig
from opsflow.stack.env import child_env
from opsflow.stack.spark import SparkComponent
from tests.support import start_or_unavailable

pytestmark = pytest.mark.stack
PORT_OFFSET = 27000
ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 7

TRIAL = f"""\
name: spark-check
application:
  module: {ROOT / "examples" / "config_trials" / "vehicle_counts.py"}
  arguments: [--window, "5 seconds"]
input:
  seed: 11
  vehicles: {{min: 40, max: 120, period_s: 5}}
variants:
  - name: base
    baseline: true
    parameters: {{trigger: "1 second"}}
  - name: twin
    parameters: {{trigger: "1 second"}}
  - name: slow
    parameters: {{trigger: "1 second", batch-delay-ms: "4000"}}
  - name: broken
    parameters: {{trigger: "1 second", window: "five seconds"}}
rounds: {ROUNDS}
# Paired: the last round's chaos shifts every variant's latency by seconds (a killed executor's replacement takes
# that long, and every later batch waits for it); unpaired, that one base round outranked slow's other rounds in
# a clean-clone CI (p 0.15 at 5 rounds, 1.5 s delay). The paired test looks at each round's difference. 7 rounds:
# the exact signed-rank test reaches 0.0156, Holm over 2 comparisons 0.031; 6 would reach 0.0625, and so does 7
# with one round reversed. The delay runs as a task on the executor: as a driver-side sleep it overlapped the
# killed executor's replacement, and the chaos round came out reversed (base 13.6 s, p_adjusted 0.0625 in CI).
pairing: rounds
round_s: 5
warmup_s: 1.5
metrics:
  latency: {{direction: lower, critical: true, band: 0.10}}
seed: 2
mode: parallel
chaos:
  - {{at_s: 3, action: stop-worker, for_s: 1}}
  # In the last round only, where they cost the measurement least: the throttle inside the warm-up, the kill
  # just before the feed ends.
  - {{at_s: 0.2, action: throttle-cpu, for_s: 1, quota: 0.5, rounds: [{ROUNDS}]}}
  - {{at_s: 4.8, action: kill-executor, rounds: [{ROUNDS}]}}
"""


class Outcome(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    state: str
    report: TrialReport
    children: dict[str, tuple[str, str]]
    #: what the server stored of each child run's parameters
    parameters: dict[str, str]
    artifacts: dict[str, Any]
    out: Path
    definition: TrialDefinition


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkComponent]:
    # one worker with a core and 512 MiB per variant (two physical cores: Spark does not check)
    cfg = StackConfig(
        home=tmp_path_factory.mktemp("trials"), spark_workers=1, spark_worker_cores=4, spark_worker_memory="2g"
    ).shifted(PORT_OFFSET)
    comp = SparkComponent(cfg, child_env(cfg))
    start_or_unavailable(comp)
    yield comp
    comp.stop()


@pytest.fixture(scope="module")
def trial(spark: SparkComponent, tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
    from prefect.testing.utilities import prefect_test_harness

    from blocks import SparkCluster
    from flows.config_trial import config_trial

    here = tmp_path_factory.mktemp("spark-check")
    definition = here / "spark-check.yaml"
    definition.write_text(TRIAL)
    out = here / "out"
    with prefect_test_harness(server_startup_timeout=120):
        SparkCluster(master_url=spark.cfg.spark_master_url, ui_url=spark.cfg.spark_master_ui_url).save(
            "trials-test", overwrite=True
        )
        state = config_trial(str(definition), str(out), "trials-test", return_state=True)
        with get_client(sync_client=True) as client:
            parent = state.state_details.flow_run_id
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent])),
                limit=100,
            )
            artifacts = {a.key: a.data for a in client.read_artifacts() if a.key}
        report = TrialReport.model_validate(state.result()) if state.is_completed() else None
    assert report is not None, state
    return Outcome(
        state=state.type.value,
        report=report,
        children={
            r.name: (r.state.type.value if r.state else "?", r.state.message or "" if r.state else "") for r in runs
        },
        parameters={r.name: json.dumps(r.parameters) for r in runs},
        artifacts=artifacts,
        out=out,
        definition=load_definition(definition),
    )


def round_latencies(trial: Outcome) -> dict[str, list[float]]:
    """Each measured variant's latency per round, for the message of a failed verdict."""
    def latency(r: int, v: str) -> float:
        return float(json.loads((round_dir(trial.out, r, v) / "result.json").read_text())["values"]["latency"])

    return {v: [round(latency(r, v), 2) for r in range(ROUNDS)] for v in ("base", "twin", "slow")}


def test_the_known_slowdown_is_worse_on_latency_with_a_corrected_p_below_alpha(trial: Outcome) -> None:
    [slow] = [c for c in trial.report.comparisons if c.variant == "slow"]
    assert slow.verdict == "worse", (round_latencies(trial), slow)
    assert slow.p_adjusted is not None and slow.p_adjusted < 0.05
    assert slow.ci_low is not None and slow.ci_low > 1.0
    assert trial.report.variants["slow"].status == "disqualified"  # latency is critical
    assert trial.report.winner == "base"


def test_the_identical_twin_is_not_declared_different(trial: Outcome) -> None:
    [twin] = [c for c in trial.report.comparisons if c.variant == "twin"]
    assert twin.verdict in ("same", "inconclusive"), twin
    assert trial.report.variants["twin"].status != "disqualified"


def test_every_variant_round_is_a_child_run_and_the_failing_variant_failed_once_with_its_reason(
    trial: Outcome,
) -> None:
    assert trial.state == "COMPLETED"
    states = {name: state for name, (state, _) in trial.children.items()}
    expected = {f"{v} round {r}": "COMPLETED" for v in ("base", "twin", "slow") for r in range(1, ROUNDS + 1)}
    assert states == {**expected, "broken round 1": "FAILED"}, states
    assert "the application exited with 1" in trial.children["broken round 1"][1]
    for name, stored in trial.parameters.items():  # the Block's name, not the trial process's environment
        assert '"spark_block": "trials-test"' in stored and "PATH" not in stored, (name, stored)
    broken = trial.report.variants["broken"]
    assert broken.status == "failed" and broken.rounds == 1
    assert broken.reason.startswith("round 1: the application exited with 1"), broken.reason


def test_every_variant_read_the_same_seeded_input_and_was_measured(trial: Outcome) -> None:
    assert trial.report.input_consistent
    d = trial.definition
    for r in range(ROUNDS):
        for v in ("base", "twin", "slow"):
            result = json.loads((round_dir(trial.out, r, v) / "result.json").read_text())
            assert result["input_sha256"] == round_hash(d.input.seed, r, int(d.round_s), d.input.vehicles), (r, v)
            assert result["values"]["latency"] > 0


def test_the_variants_of_a_round_fed_together_and_chaos_hit_them_at_the_same_moment(trial: Outcome) -> None:
    for r in range(ROUNDS):
        fed, hit = [], []
        for v in ("base", "twin", "slow"):
            fed_from = json.loads((round_dir(trial.out, r, v) / "result.json").read_text())["fed_from"]
            chaos = json.loads((round_dir(trial.out, r, v) / "chaos.json").read_text())
            by_action = {c["action"]: c for c in chaos}
            expected = {"stop-worker", "throttle-cpu", "kill-executor"} if r == ROUNDS - 1 else {"stop-worker"}
            assert set(by_action) == expected and len(chaos) == len(expected), (r, v, chaos)
            assert all(abs(c["at_s"] - c["planned_s"]) < 0.5 for c in chaos), chaos  # on time, not late
            stop = by_action["stop-worker"]
            assert stop["did"].startswith("stopped worker pid") and stop["at_s"] >= 3.0, stop
            if r == ROUNDS - 1:
                assert by_action["throttle-cpu"]["did"].startswith("throttled pid"), by_action
                assert by_action["throttle-cpu"]["did"].endswith("to 50% of a core for 1 s"), by_action
                assert re.fullmatch(r"killed executor pid \[\d+\]", by_action["kill-executor"]["did"]), by_action
            fed.append(fed_from)
            hit.append(fed_from + stop["at_s"])
        assert max(fed) - min(fed) < 0.2, (r, fed)
        assert max(hit) - min(hit) < 1.0, (r, hit)


def test_the_report_is_an_artifact_and_files_rebuilt_from_the_raw_data(trial: Outcome) -> None:
    assert "| slow | latency | worse |" in str(trial.artifacts["trial-spark-check"])
    assert "trial-spark-check-progress" in trial.artifacts
    for name in ("report.md", "report.json", "latency.png", "definition.yaml"):
        assert (trial.out / name).stat().st_size > 0, name
    assert (trial.out / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(load_results(trial.out)) == 3 * ROUNDS + 1
    assert write_report(trial.out, trial.definition) == trial.report
    stored = json.loads((trial.out / "report.json").read_text())["report"]
    assert TrialReport.model_validate(stored) == trial.report
