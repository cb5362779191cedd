"""Pure parts of the monitoring component: prometheus.yml, the process-exporter config, opsflow's metrics and the
Prometheus API parsers (no server involved)."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from opsflow.adapters.prometheus import PrometheusError, parse_query_response, parse_targets_response
from opsflow.stack.config import StackConfig
from opsflow.stack.metrics_server import StackCollector, component_of, component_states
from opsflow.stack.prometheus import PrometheusComponent, process_exporter_config, prometheus_config, worker_group
from opsflow.stack.spark import PYSPARK_MARK_OPTION

HOME = Path("/tmp/opsflow home+1")  # a space and regex metacharacters: must stay literal
CFG = StackConfig(home=HOME).shifted(23000)

JARS = "/venv/lib/python3.11/site-packages/pyspark/jars"
# Command lines as /proc shows them (argv joined by spaces, as the exporter matches them), trimmed.
MASTER_CMD = (
    f"/usr/lib/jvm/java-17-openjdk-amd64/bin/java -cp {HOME}/spark/conf/:{JARS}/* -Djava.io.tmpdir={HOME}/spark/tmp "
    "-Xmx384m org.apache.spark.deploy.master.Master --host 127.0.0.1 --port 30077 --webui-port 31080"
)
WORKER_CMD = (
    f"/usr/lib/jvm/java-17-openjdk-amd64/bin/java -cp {HOME}/spark/conf/:{JARS}/* -Xmx384m "
    "org.apache.spark.deploy.worker.Worker --host 127.0.0.3 --webui-port 31082 --cores 1 --memory 1g "
    f"--work-dir {HOME}/spark/work/spark-worker-1 spark://127.0.0.1:30077"
)
EXECUTOR_CMD = (
    f"/usr/lib/jvm/java-17-openjdk-amd64/bin/java -cp {HOME}/spark/conf/:{JARS}/* -Xmx512M "
    "org.apache.spark.executor.CoarseGrainedExecutorBackend --driver-url spark://CoarseGrainedScheduler@127.0.0.1:4"
    "1234 --executor-id 0 --hostname 127.0.0.2 --cores 1 --app-id app-20261123120003-0000"
)
# What the exporter reads for the stack's PySpark Python (argv joined by spaces; see spark.pyspark_python_script).
PYSPARK_DAEMON_CMD = f"/venv/bin/python -X {PYSPARK_MARK_OPTION}={HOME}/spark/ -m pyspark.daemon"
METRICS_CMD = f"/venv/bin/python -m opsflow.stack.metrics_server --port 32464 --home {HOME}"


# --- prometheus.yml ------------------------------------------------------------------------------------------
def _jobs(text: str) -> dict[str, dict[str, Any]]:
    return {job["job_name"]: job for job in yaml.safe_load(text)["scrape_configs"]}


def test_prometheus_config_scrapes_every_5s_within_timeout() -> None:
    glob = yaml.safe_load(prometheus_config(CFG))["global"]
    assert glob["scrape_interval"] == "5s"
    assert int(glob["scrape_timeout"].rstrip("s")) <= 5


@pytest.mark.parametrize(
    ("job", "target", "path"),
    [
        ("spark-master", "127.0.0.1:31080", "/metrics/master/prometheus/"),
        ("spark-applications", "127.0.0.1:31080", "/metrics/applications/prometheus/"),
        ("opsflow", "127.0.0.1:32464", "/metrics"),
        ("process", "127.0.0.1:32256", "/metrics"),
        ("prometheus", "127.0.0.1:32090", "/metrics"),
    ],
)
def test_prometheus_config_jobs_follow_the_ports(job: str, target: str, path: str) -> None:
    entry = _jobs(prometheus_config(CFG))[job]
    assert entry["static_configs"] == [{"targets": [target]}]
    assert entry["metrics_path"] == path


# --- process-exporter config ---------------------------------------------------------------------------------
def _groups(home: Path | None) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(process_exporter_config(home))["process_names"]
    return groups


def _group_of(cmdline: str, home: Path | None = HOME) -> str | None:
    """The name the exporter gives ``cmdline``: the first group whose regexes all match (Python's re and Go's
    RE2 agree on the constructs used: \\s, \\S, \\b, (?P<name>...), escaped punctuation)."""
    for group in _groups(home):
        matches = [re.search(rx, cmdline) for rx in group["cmdline"]]
        if all(matches):
            captured = {k: v for m in matches if m for k, v in m.groupdict().items() if v is not None}
            name: str = group["name"]
            for key, value in captured.items():
                name = name.replace(f"{{{{.Matches.{key}}}}}", value)
            return name
    return None


def test_exporter_groups_in_first_match_order() -> None:
    names = [g["name"] for g in _groups(HOME)]
    assert names == [
        "spark-master",
        "spark-worker:{{.Matches.host}}",
        "spark-worker",
        "spark-executor",
        "spark-python",
        "opsflow-metrics",
    ]
    jvm_groups = [g for g in _groups(HOME) if g["name"].startswith("spark-") and g["name"] != "spark-python"]
    assert all(g["comm"] == ["java"] for g in jvm_groups)


@pytest.mark.parametrize(
    ("cmdline", "group"),
    [
        (MASTER_CMD, "spark-master"),
        (WORKER_CMD, worker_group("127.0.0.3")),
        (WORKER_CMD.replace(" --host 127.0.0.3", ""), "spark-worker"),
        (EXECUTOR_CMD, "spark-executor"),
        (METRICS_CMD, "opsflow-metrics"),
        (PYSPARK_DAEMON_CMD, "spark-python"),
        (PYSPARK_DAEMON_CMD.replace("pyspark.daemon", "pyspark.worker"), "spark-python"),
        # The driver runs the same Python with the same mark, but it is the application, not executor work.
        (PYSPARK_DAEMON_CMD.replace("-m pyspark.daemon", "/tmp/job.py 8"), None),
        ("/usr/bin/prometheus --config.file=x", None),
    ],
)
def test_exporter_groups_classify_command_lines(cmdline: str, group: str | None) -> None:
    assert _group_of(cmdline) == group


@pytest.mark.parametrize("cmdline", [MASTER_CMD, WORKER_CMD, EXECUTOR_CMD, METRICS_CMD, PYSPARK_DAEMON_CMD])
def test_exporter_ignores_processes_of_other_stacks(cmdline: str) -> None:
    other = cmdline.replace(str(HOME), "/tmp/opsflow home+12")
    assert _group_of(other) is None


def test_exporter_without_home_counts_every_spark_jvm() -> None:
    other = WORKER_CMD.replace(str(HOME), "/srv/elsewhere")
    assert _group_of(other, home=None) == worker_group("127.0.0.3")


def test_exporter_config_is_valid_yaml_with_literal_template() -> None:
    text = process_exporter_config(HOME)
    assert "spark-worker:{{.Matches.host}}" in text
    assert _groups(HOME)[0]["cmdline"][0] == re.escape(f"{HOME}/spark/")


# --- the component's processes -------------------------------------------------------------------------------
def test_processes_order_keys_and_loopback_ports() -> None:
    comp = PrometheusComponent(CFG, {})
    specs = comp.processes()
    assert [s.key for s in specs] == ["prometheus-opsflow-metrics", "prometheus-process-exporter", "prometheus-server"]
    metrics, exporter, server = (s.argv for s in specs)
    assert metrics[1:] == ["-m", "opsflow.stack.metrics_server", "--port", "32464", "--home", str(HOME)]
    assert exporter[exporter.index("-web.listen-address") + 1] == "127.0.0.1:32256"
    assert exporter[exporter.index("-config.path") + 1] == str(HOME / "prometheus" / "process-exporter.yml")
    assert "--web.listen-address=127.0.0.1:32090" in server
    assert f"--storage.tsdb.path={HOME}/prometheus/data" in server
    assert comp.ports() == [32464, 32256, 32090]


# --- opsflow's metrics endpoint ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "component"),
    [
        ("spark-master", "spark"),
        ("spark-worker-12", "spark"),
        ("slurm-slurmd-nid001", "slurm"),
        ("prometheus-process-exporter", "prometheus"),
        ("worker-cpu", "worker-cpu"),
        ("worker-gpu", "worker-gpu"),
        ("podman", "podman"),
    ],
)
def test_component_of(key: str, component: str) -> None:
    assert component_of(key) == component


def test_component_is_down_when_any_process_died() -> None:
    alive = {"spark-master": True, "spark-worker-0": False, "slurm-slurmctld": True, "worker-cpu": True}
    assert component_states(alive) == {"slurm": True, "spark": False, "worker-cpu": True}
    assert component_states({}) == {}


def test_collector_renders_values_at_scrape_time() -> None:
    state = {"prefect-server": True}
    registry = CollectorRegistry()
    registry.register(StackCollector(HOME, alive=lambda: state))
    first = generate_latest(registry).decode()
    assert "opsflow_up 1.0" in first
    assert 'opsflow_stack_component_up{component="prefect"} 1.0' in first
    assert re.search(r'opsflow_build_info\{python="[\d.]+",version="[^"]+"\} 1\.0', first)
    state["prefect-server"] = False
    assert 'opsflow_stack_component_up{component="prefect"} 0.0' in generate_latest(registry).decode()


# --- Prometheus API answers (captured from Prometheus 2.42) ----------------------------------------------------
VECTOR = {
    "status": "success",
    "data": {
        "resultType": "vector",
        "result": [
            {
                "metric": {"__name__": "up", "instance": "127.0.0.1:31080", "job": "spark-master"},
                "value": [1795435228.739, "1"],
            },
            {
                "metric": {"__name__": "up", "instance": "127.0.0.1:32464", "job": "opsflow"},
                "value": [1795435228.739, "0"],
            },
            {"metric": {"job": "x"}, "value": [1795435228.739, "NaN"]},
        ],
    },
}
SCALAR = {"status": "success", "data": {"resultType": "scalar", "result": [1795435228.84, "2"]}}
MATRIX = {
    "status": "success",
    "data": {
        "resultType": "matrix",
        "result": [{"metric": {"job": "opsflow"}, "values": [[1795435223.191, "1"], [1795435228.191, "1"]]}],
    },
}
BAD_DATA = {
    "status": "error",
    "errorType": "bad_data",
    "error": 'invalid parameter "query": 1:4: parse error: unexpected end of input inside braces',
}
TARGETS = {
    "status": "success",
    "data": {
        "activeTargets": [
            {
                "discoveredLabels": {"__address__": "127.0.0.1:32464", "job": "opsflow"},
                "labels": {"instance": "127.0.0.1:32464", "job": "opsflow"},
                "scrapePool": "opsflow",
                "scrapeUrl": "http://127.0.0.1:32464/metrics",
                "globalUrl": "http://vm:32464/metrics",
                "lastError": "",
                "lastScrape": "2026-11-23T12:00:42.556659941Z",
                "lastScrapeDuration": 0.003264859,
                "health": "up",
                "scrapeInterval": "5s",
                "scrapeTimeout": "4s",
            },
            {
                "labels": {"instance": "127.0.0.1:31080", "job": "spark-applications"},
                "scrapePool": "spark-applications",
                "scrapeUrl": "http://127.0.0.1:31080/metrics/applications/prometheus/",
                "lastError": 'Get "http://127.0.0.1:31080/metrics/applications/prometheus/": dial tcp '
                "127.0.0.1:31080: connect: connection refused",
                "health": "down",
            },
        ],
        "droppedTargets": [],
    },
}


def test_parse_vector() -> None:
    samples = parse_query_response(VECTOR)
    assert [(s.labels.get("job"), s.value) for s in samples[:2]] == [("spark-master", 1.0), ("opsflow", 0.0)]
    assert samples[0].name == "up"
    assert samples[0].timestamp == pytest.approx(1795435228.739)
    assert math.isnan(samples[2].value)


def test_parse_scalar_is_one_unlabelled_sample() -> None:
    [sample] = parse_query_response(SCALAR)
    assert (sample.labels, sample.value) == ({}, 2.0)


def test_parse_matrix_is_refused_with_the_query() -> None:
    with pytest.raises(PrometheusError, match=r"'up\[10s\]'.*matrix"):
        parse_query_response(MATRIX, "up[10s]")


def test_parse_error_names_query_and_reason() -> None:
    with pytest.raises(PrometheusError, match=r"'up\{'.*parse error"):
        parse_query_response(BAD_DATA, "up{")


def test_parse_targets() -> None:
    up, down = parse_targets_response(TARGETS)
    assert (up.job, up.scrape_url, up.health) == ("opsflow", "http://127.0.0.1:32464/metrics", "up")
    assert (down.job, down.health) == ("spark-applications", "down")
    assert "connection refused" in down.last_error
