"""The real Spark standalone cluster (master + 2 workers from pyspark) in a home and ports of its own."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import httpx
import pytest

from opsflow.adapters.spark import run_sum_of_squares, sum_of_squares, worker_host, worker_key
from opsflow.stack.base import StackError
from opsflow.stack.config import StackConfig
from opsflow.stack.env import child_env
from opsflow.stack.process import running_process, stack_processes, start_process
from opsflow.stack.spark import SparkComponent
from tests.support import unavailable, wait_for_state

pytestmark = pytest.mark.stack
PORT_OFFSET = 21000


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkComponent]:
    cfg = StackConfig(home=tmp_path_factory.mktemp("spark"), spark_workers=2).shifted(PORT_OFFSET)
    comp = SparkComponent(cfg, child_env(cfg))
    ok, why = comp.enabled()
    if not ok:
        unavailable(f"Spark cannot run here: {why}")
    try:
        assert comp.start() is True
    except StackError as exc:
        comp.stop()
        unavailable(f"Spark did not start: {exc}")
    yield comp
    comp.stop()


def test_master_is_alive_with_one_worker_per_loopback_host(spark: SparkComponent) -> None:
    state = spark.master.state()
    assert state.status == "ALIVE"
    assert sorted(w.host for w in state.alive_workers) == ["127.0.0.2", "127.0.0.3"]
    assert state.total_cores == 2 * spark.cfg.spark_worker_cores
    status = spark.status()
    assert status.state == "up"
    assert status.detail.startswith("2 workers alive, 2 cores")


def test_second_start_changes_nothing(spark: SparkComponent) -> None:
    pids = [running_process(spark.cfg.home, p.key) for p in spark.processes()]
    assert spark.start() is False
    assert [running_process(spark.cfg.home, p.key) for p in spark.processes()] == pids


def test_pyspark_job_runs_on_the_cluster(spark: SparkComponent) -> None:
    env = {**spark.env, "SPARK_CONF_DIR": str(spark.conf_dir)}
    result = run_sum_of_squares(spark.cfg.spark_master_url, 100_000, partitions=4, env=env)
    assert result.value == sum_of_squares(100_000) == 333_328_333_350_000
    finished = {a.id: a for a in spark.master.state().completedapps}
    assert finished[result.app_id].state == "FINISHED"
    assert finished[result.app_id].cores == 2  # it had an executor on each worker


def test_prometheus_servlets_of_master_and_worker(spark: SparkComponent) -> None:
    text = spark.master.prometheus_text()
    assert 'metrics_master_aliveWorkers_Value{type="gauges"} 2' in text.splitlines()
    assert "metrics_master_workers_Value" in text
    worker_ui = f"http://{worker_host(0)}:{spark.cfg.spark_worker_ui_base_port}"
    worker_text = httpx.get(f"{worker_ui}/metrics/prometheus/", timeout=5).text
    assert 'metrics_worker_coresFree_Value{type="gauges"}' in worker_text


def test_an_added_worker_joins_and_sigpwr_decommissions_it(spark: SparkComponent) -> None:
    # What an autoscaler does: start worker_spec(n) beside the others, later signal it to leave gracefully.
    host = worker_host(2)
    proc = start_process(spark.cfg.home, spark.worker_spec(2), spark.env)
    state = wait_for_state(spark.master, lambda s: host in {w.host for w in s.alive_workers}, within_s=60)
    assert host in {w.host for w in state.alive_workers}
    proc.send_signal(signal.SIGPWR)
    state = wait_for_state(
        spark.master, lambda s: any(w.host == host and w.state != "ALIVE" for w in s.workers), within_s=60
    )
    assert {w.host: w.state for w in state.workers}[host] == "DECOMMISSIONED"
    assert running_process(spark.cfg.home, worker_key(2)) is not None  # decommissioned workers stay up


def test_stop_ends_every_process_of_the_home_including_added_workers(spark: SparkComponent) -> None:
    assert stack_processes(spark.cfg.home)
    assert spark.stop() is True
    assert stack_processes(spark.cfg.home) == []
    assert spark.status().state == "down"
    assert running_process(spark.cfg.home, worker_key(2)) is None
