"""WORK IN PROGRESS (not collected: the file name does not start with test_): the auto-scaler's MAPE ticks
against the real local Spark cluster and Prometheus of the stack.

Known failure that keeps it out of the suite: during a PySpark CPU-bound job the cpu metric reads about 0.15
per worker, because prometheus-process-exporter runs with -children=false and the Python workers that burn the CPU
are not in any process group the query sums (spark-executor counts only the executor JVM). Fix the exporter
groups (a `spark-python` group for pyspark.daemon / pyspark.worker processes), then rename this file to
test_spark_autoscale.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsflow.adapters.spark import SparkMaster, sum_of_squares_argv
from opsflow.stack.config import StackConfig
from opsflow.stack.env import child_env
from opsflow.stack.manager import components
from spark_scaler.backends import LocalProcessBackend
from spark_scaler.config import ScalerConfig, load_config_text
from spark_scaler.controller import TickResult, load_state, tick
from spark_scaler.metrics import default_queries
from spark_scaler.models import Action
from tests.support import wait_until

pytestmark = pytest.mark.stack

CPU_JOB = textwrap.dedent(
    """
    import sys, time
    from pyspark.sql import SparkSession
    spark = SparkSession.builder.appName("opsflow-load").getOrCreate()
    seconds, parts = float(sys.argv[1]), int(sys.argv[2])  # read on the driver: executors have other argv
    def burn(i):
        end = time.time() + seconds
        x = 0
        while time.time() < end:
            x += 1
        return x
    spark.sparkContext.parallelize(range(parts), parts).map(burn).count()
    spark.stop()
    """
)


def config(stack: StackConfig, *, minimum: int = 1, maximum: int = 3, cooldown: float = 10) -> ScalerConfig:
    query = default_queries()["cpu"].replace("\n", " ")
    return load_config_text(
        textwrap.dedent(
            f"""
            general:
              interval_seconds: 2
              cooldown_period_seconds: {cooldown}
              recurrence_factor: 2
              prometheus_url: "{stack.prometheus_url}"
            metrics:
              cpu:
                query: '{query}'
                target_utilization: 0.5
                thresholds: {{min: 0.2, max: 0.6}}
            worker:
              service_name: spark-worker
              thresholds: {{min: {minimum}, max: {maximum}}}
            opsflow:
              backend: local
              spark_master_ui_url: "{stack.spark_master_ui_url}"
              spark_master_url: "{stack.spark_master_url}"
              scale_in: graceful
              scale_down_stabilization_seconds: 20
              warmup_seconds: 0
            """
        ),
        "test.yaml",
    )


@pytest.fixture
def backend(stack: StackConfig) -> Iterator[LocalProcessBackend]:
    backend = LocalProcessBackend(stack, child_env(stack), register_timeout_s=90, drain_timeout_s=120)
    yield backend
    # Leave the cluster as `up` made it: its configured workers and no others.
    for ref in backend.workers():
        if not ref.id.endswith(tuple(f"-{i}" for i in range(stack.spark_workers))):
            backend.stop_worker(ref, graceful=False)
    (spark,) = components(stack, ["spark"])
    spark.start()


def alive(stack: StackConfig) -> int:
    return len(SparkMaster(ui_url=stack.spark_master_ui_url).state().alive_workers)


def run_ticks(
    cfg: ScalerConfig, backend: LocalProcessBackend, state: Path, until: object, limit: int
) -> list[TickResult]:
    results = []
    for _ in range(limit):
        results.append(tick(cfg, backend, state))
        if until(results[-1]):  # type: ignore[operator]
            break
        time.sleep(cfg.general.interval_seconds)
    return results


def test_load_scales_out_then_idle_scales_in_to_the_minimum(
    stack: StackConfig, backend: LocalProcessBackend, tmp_path: Path
) -> None:
    cfg, state = config(stack, maximum=3), tmp_path / "state.json"
    script = tmp_path / "load.py"
    script.write_text(CPU_JOB)
    env = child_env(stack)
    argv = sum_of_squares_argv(env["SPARK_HOME"], stack.spark_master_url, script, 8, 8, "opsflow-load", sys.executable)
    log = tmp_path / "load.log"
    with open(log, "wb") as sink:
        job = subprocess.Popen(argv, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        master = SparkMaster(ui_url=stack.spark_master_ui_url)
        assert wait_until(lambda: master.state().running_apps, timeout_s=120), log.read_text()[-2000:]
        results = run_ticks(cfg, backend, state, lambda r: r.decision.action == Action.SCALE_OUT, limit=40)
        out = results[-1]
        assert out.decision.action == Action.SCALE_OUT, [r.decision.reason for r in results]
        assert out.error is None and out.decision.target <= 3
        assert wait_until(lambda: alive(stack) == out.decision.target, timeout_s=90)
    finally:
        assert job.wait(timeout=300) == 0, log.read_text()[-3000:]
    results = run_ticks(
        cfg, backend, state, lambda r: r.decision.target == 1 and r.decision.action == Action.SCALE_IN, limit=60
    )
    assert results[-1].decision.action == Action.SCALE_IN, [r.decision.reason for r in results[-5:]]
    assert wait_until(lambda: alive(stack) == 1, timeout_s=120)
    assert all(1 <= r.decision.target <= 3 for r in results)


def test_bounds_hold_and_a_restarted_controller_keeps_its_cooldown(
    stack: StackConfig, backend: LocalProcessBackend, tmp_path: Path
) -> None:
    state = tmp_path / "state.json"
    assert alive(stack) >= 1
    cfg = config(stack, minimum=3, maximum=3, cooldown=600)
    first = tick(cfg, backend, state)
    assert first.decision.action == Action.SCALE_OUT and first.decision.target == 3, first.decision.reason
    assert wait_until(lambda: alive(stack) == 3, timeout_s=90)
    saved = load_state(state)
    assert saved.last_action_at is not None
    # A new controller (fresh objects, the same state file) under a config whose bounds are met: it holds,
    # because the cooldown recorded by the first one still runs.
    relaxed = config(stack, minimum=1, maximum=3, cooldown=600)
    again = tick(relaxed, LocalProcessBackend(stack, child_env(stack)), state)
    assert again.decision.action == Action.HOLD, again.decision.reason
    assert "cooldown" in again.decision.reason


def test_prometheus_stopped_mid_run_holds(stack: StackConfig, backend: LocalProcessBackend, tmp_path: Path) -> None:
    cfg, state = config(stack), tmp_path / "state.json"
    (prometheus,) = components(stack, ["prometheus"])
    prometheus.stop()
    try:
        before = alive(stack)
        results = [tick(cfg, backend, state) for _ in range(4)]
        assert all(r.decision.action == Action.HOLD for r in results)
        assert all("missing data" in r.decision.reason for r in results)
        assert any("cpu" in p for p in results[0].observation.problems)
        assert alive(stack) == before
    finally:
        prometheus.start()
    assert os.path.exists(state)
