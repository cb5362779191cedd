"""The monitoring component for real: Debian's Prometheus and process exporter plus opsflow's metrics endpoint,
started in a temporary home on shifted ports."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from opsflow.adapters.prometheus import PrometheusAPI, PrometheusError, Sample
from opsflow.stack.base import StackError
from opsflow.stack.config import StackConfig
from opsflow.stack.env import child_env
from opsflow.stack.process import stack_processes
from opsflow.stack.prometheus import GROUP_METRICS, PrometheusComponent
from tests.support import unavailable

pytestmark = pytest.mark.stack

OFFSET = 23000
BROKEN_OFFSET = 23050  # the broken-storage stack, so that it never meets the healthy one's ports
T = TypeVar("T")


def component(home: Path, offset: int) -> PrometheusComponent:
    cfg = StackConfig(home=home).shifted(offset)
    comp = PrometheusComponent(cfg, child_env(cfg))
    ok, why = comp.enabled()
    if not ok:
        unavailable(f"prometheus component disabled here: {why}")
    return comp


def wait_for(probe: Callable[[], T], accept: Callable[[T], bool], timeout_s: float = 30.0) -> T:
    """``probe()`` until ``accept`` takes its value (bounded); the last value either way."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if accept(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


def values(samples: list[Sample]) -> list[float]:
    return [s.value for s in samples]


@pytest.fixture(scope="module")
def comp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusComponent]:
    comp = component(tmp_path_factory.mktemp("prometheus-home"), OFFSET)
    try:
        comp.start()
    except StackError as exc:
        unavailable(f"prometheus component could not start: {exc}")
    yield comp
    comp.stop()


@pytest.fixture(scope="module")
def api(comp: PrometheusComponent) -> PrometheusAPI:
    return PrometheusAPI(comp.cfg.prometheus_url)


def test_up_and_idempotent(comp: PrometheusComponent) -> None:
    status = comp.status()
    assert status.state == "up", status
    assert status.url == comp.cfg.prometheus_url
    assert comp.start() is False


def test_targets_list_the_stack_jobs(comp: PrometheusComponent, api: PrometheusAPI) -> None:
    # Ready is not yet discovered: Prometheus hands static targets to its scrapers within a few seconds.
    expected = {"opsflow", "process", "spark-master", "spark-applications"}
    by_job = {t.job: t for t in wait_for(api.targets, lambda ts: expected <= {t.job for t in ts})}
    assert expected <= set(by_job)
    assert by_job["opsflow"].scrape_url == f"http://127.0.0.1:{comp.cfg.metrics_port}/metrics"
    assert by_job["process"].scrape_url == f"http://127.0.0.1:{comp.cfg.process_exporter_port}/metrics"


def test_opsflow_endpoint_is_scraped(api: PrometheusAPI) -> None:
    assert values(wait_for(lambda: api.query('up{job="opsflow"}'), lambda v: values(v) == [1.0])) == [1.0]
    # The endpoint sees the pid files of its own home: the prometheus component is up.
    query = 'opsflow_stack_component_up{component="prometheus"}'
    assert values(wait_for(lambda: api.query(query), lambda v: values(v) == [1.0])) == [1.0]


def test_process_exporter_groups_only_this_stack(api: PrometheusAPI) -> None:
    query = f'namedprocess_namegroup_num_procs{{groupname="{GROUP_METRICS}"}}'
    assert values(wait_for(lambda: api.query(query), lambda v: values(v) == [1.0])) == [1.0]
    # No Spark runs in this home; Spark of other stacks on this machine must not be counted.
    assert api.query('namedprocess_namegroup_num_procs{groupname=~"spark.*"}') == []


def test_bad_query_names_url_and_query(api: PrometheusAPI) -> None:
    with pytest.raises(PrometheusError) as err:
        api.query("up{")
    assert "'up{'" in str(err.value)
    assert api.url in str(err.value)
    assert "bad_data" in str(err.value)


def test_unreachable_prometheus_is_a_clear_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        with pytest.raises(PrometheusError, match=r"cannot reach Prometheus at .*'up'"):
            PrometheusAPI(url, timeout_s=2).query("up")


def test_detail_counts_targets(comp: PrometheusComponent) -> None:
    assert "targets up" in comp.detail()


def test_stop_leaves_no_process(comp: PrometheusComponent) -> None:
    # Last test of the module: it ends the shared stack.
    assert comp.stop() is True
    assert stack_processes(comp.cfg.home) == []
    assert comp.status().state == "down"


def test_storage_path_that_is_a_file_fails_start_with_its_log(tmp_path: Path) -> None:
    comp = component(tmp_path, BROKEN_OFFSET)
    data = tmp_path / "prometheus" / "data"
    data.parent.mkdir(parents=True)
    data.write_text("not a directory\n")
    try:
        with pytest.raises(StackError) as err:
            comp.start()
        message = str(err.value)
        assert message.startswith("prometheus: ")
        assert "prometheus-server" in message
        assert "not a directory" in message  # from Prometheus's own log
        assert stack_processes(tmp_path) == []
    finally:
        comp.stop()
