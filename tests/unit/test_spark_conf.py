"""Pure parts of the Spark component and adapter: generated config, process specs, /json/ parsing, and the one
worker launch shared by the stack and the scaler's local backend."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from opsflow.adapters.spark import (
    SparkError,
    parse_job_output,
    parse_master_state,
    sum_of_squares,
    sum_of_squares_argv,
    worker_host,
    worker_key,
)
from opsflow.stack.config import StackConfig
from opsflow.stack.spark import (
    PYSPARK_MARK_OPTION,
    SparkComponent,
    local_worker_backend,
    metrics_properties,
    pyspark_python_script,
    spark_defaults,
)

SPARK_HOME = "/opt/spark"


def props(text: str, sep: str) -> dict[str, str]:
    """key/value lines of a Java properties-like file, comments skipped."""
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return dict(line.split(sep, 1) for line in lines)


@pytest.fixture
def cfg() -> StackConfig:
    return StackConfig(home=Path("/h"), spark_workers=2, spark_worker_cores=2, spark_worker_memory="768m").shifted(5)


@pytest.fixture
def comp(cfg: StackConfig) -> SparkComponent:
    return SparkComponent(cfg, {"SPARK_HOME": SPARK_HOME, "JAVA_HOME": "/usr/lib/jvm/x"})


# --- generated configuration -------------------------------------------------------------------------------
def test_metrics_properties_serve_prometheus_for_master_applications_and_workers() -> None:
    conf = props(metrics_properties(), "=")
    assert conf["*.sink.prometheusServlet.class"] == "org.apache.spark.metrics.sink.PrometheusServlet"
    assert conf["*.sink.prometheusServlet.path"] == "/metrics/prometheus"
    assert conf["master.sink.prometheusServlet.path"] == "/metrics/master/prometheus"
    assert conf["applications.sink.prometheusServlet.path"] == "/metrics/applications/prometheus"


def test_spark_defaults_point_at_the_cluster_and_its_metrics_file(cfg: StackConfig) -> None:
    conf = props(spark_defaults(cfg, Path("/h/spark/conf/metrics.properties")), " ")
    assert conf["spark.master"] == "spark://127.0.0.1:7082"
    assert conf["spark.metrics.conf"] == "/h/spark/conf/metrics.properties"
    assert conf["spark.ui.prometheus.enabled"] == "true"
    assert conf["spark.master.rest.enabled"] == "false"


def test_spark_defaults_enable_graceful_decommissioning(cfg: StackConfig) -> None:
    conf = props(spark_defaults(cfg, Path("/m")), " ")
    for key in (
        "spark.decommission.enabled",
        "spark.storage.decommission.enabled",
        "spark.storage.decommission.shuffleBlocks.enabled",
        "spark.storage.decommission.rddBlocks.enabled",
    ):
        assert conf[key] == "true", key
    assert conf["spark.worker.decommission.signal"] == "PWR"
    assert conf["spark.executor.decommission.signal"] == "PWR"
    # Blocks no peer takes go to a fallback storage the workers' containers see too.
    assert conf["spark.storage.decommission.fallbackStorage.path"] == "file:///h/spark/fallback/"
    assert conf["spark.storage.decommission.fallbackStorage.cleanUp"] == "true"


def test_worker_containers_get_the_fallback_storage_read_write(tmp_path: Path) -> None:
    from spark_scaler.backends.docker import host_runtime_volumes

    conf = tmp_path / "spark" / "conf"
    conf.mkdir(parents=True)
    (tmp_path / "spark" / "fallback").mkdir()
    binds = host_runtime_volumes("/nonexistent-jdk", "/nonexistent-spark", conf, python_prefixes=[])
    fallback = (tmp_path / "spark" / "fallback").resolve()
    assert binds[str(fallback)] == f"{fallback}:rw"
    assert binds[str(conf.resolve())] == f"{conf.resolve()}:ro"


def test_spark_defaults_keep_memory_small(cfg: StackConfig) -> None:
    conf = props(spark_defaults(cfg, Path("/m")), " ")
    assert conf["spark.driver.memory"] == conf["spark.executor.memory"] == "512m"


# --- process specs -----------------------------------------------------------------------------------------
def test_master_listens_on_loopback_with_the_configured_ports(comp: SparkComponent) -> None:
    spec = comp.master_spec()
    assert spec.key == "spark-master"
    assert spec.argv[:2] == [f"{SPARK_HOME}/bin/spark-class", "org.apache.spark.deploy.master.Master"]
    assert spec.argv[2:] == ["--host", "127.0.0.1", "--port", "7082", "--webui-port", "8085"]
    assert spec.env["SPARK_CONF_DIR"] == "/h/spark/conf"
    assert spec.env["SPARK_LOCAL_IP"] == "127.0.0.1"


def test_each_worker_has_its_own_loopback_host_ui_port_and_dirs(comp: SparkComponent) -> None:
    spec = comp.worker_spec(3)
    args = spec.argv
    assert spec.key == "spark-worker-3"
    assert args[1] == "org.apache.spark.deploy.worker.Worker"
    assert args[args.index("--host") + 1] == "127.0.0.5" == spec.env["SPARK_LOCAL_IP"]
    assert args[args.index("--webui-port") + 1] == "8089"
    assert args[args.index("--cores") + 1] == "2"
    assert args[args.index("--memory") + 1] == "768m"
    assert args[args.index("--work-dir") + 1] == "/h/spark/work/spark-worker-3" == spec.env["SPARK_WORKER_DIR"]
    assert spec.env["SPARK_LOCAL_DIRS"] == "/h/spark/local/spark-worker-3"
    assert args[-1] == "spark://127.0.0.1:7082"


def test_the_scalers_local_backend_launches_the_stacks_own_worker_spec(cfg: StackConfig, comp: SparkComponent) -> None:
    # One set of workers: a worker the scaler adds is the worker the stack would start at that index.
    backend = local_worker_backend(cfg, comp.env)
    for index in (0, 1, 4):
        assert backend.worker_spec(index) == comp.worker_spec(index)
    assert backend.home == cfg.home and backend.master.ui_url == cfg.spark_master_ui_url


def test_processes_are_the_master_then_the_configured_workers(comp: SparkComponent) -> None:
    assert [p.key for p in comp.processes()] == ["spark-master", "spark-worker-0", "spark-worker-1"]
    assert comp.ports() == [7082, 8085, 8086, 8087]


def test_worker_hosts_stay_inside_127_0_0_x() -> None:
    assert worker_host(0) == "127.0.0.2"
    assert worker_host(252) == "127.0.0.254"
    assert worker_key(0) == "spark-worker-0"
    with pytest.raises(ValueError):
        worker_host(253)
    with pytest.raises(ValueError):
        worker_host(-1)


# --- the master's /json/ page (captured from Spark 4.3.0 while a job ran, and after SIGPWR to a worker) -------
RUNNING_SAMPLE = """\
{
  "url" : "spark://127.0.0.1:28077",
  "workers" : [ {
    "id" : "worker-20261123115637-127.0.0.2-44529",
    "host" : "127.0.0.2",
    "port" : 44529,
    "webuiaddress" : "http://127.0.0.2:29081",
    "cores" : 1,
    "coresused" : 1,
    "coresfree" : 0,
    "memory" : 1024,
    "memoryused" : 512,
    "memoryfree" : 512,
    "resources" : { },
    "resourcesused" : { },
    "resourcesfree" : { },
    "state" : "ALIVE",
    "lastheartbeat" : 1795435008190
  }, {
    "id" : "worker-20261123115637-127.0.0.3-40075",
    "host" : "127.0.0.3",
    "port" : 40075,
    "webuiaddress" : "http://127.0.0.3:29082",
    "cores" : 1,
    "coresused" : 1,
    "coresfree" : 0,
    "memory" : 1024,
    "memoryused" : 512,
    "memoryfree" : 512,
    "resources" : { },
    "resourcesused" : { },
    "resourcesfree" : { },
    "state" : "ALIVE",
    "lastheartbeat" : 1795435007732
  } ],
  "aliveworkers" : 2,
  "cores" : 2,
  "coresused" : 2,
  "memory" : 2048,
  "memoryused" : 1024,
  "resources" : [ { }, { } ],
  "resourcesused" : [ { }, { } ],
  "activeapps" : [ {
    "id" : "app-20261123115652-0000",
    "starttime" : 1795435012219,
    "name" : "opsflow-sum-of-squares",
    "cores" : 2,
    "user" : "root",
    "memoryperexecutor" : 512,
    "memoryperslave" : 512,
    "resourcesperexecutor" : [ ],
    "resourcesperslave" : [ ],
    "submitdate" : "Mon Nov 23 11:56:52 UTC 2026",
    "state" : "RUNNING",
    "duration" : 2974
  } ],
  "completedapps" : [ ],
  "activedrivers" : [ ],
  "completeddrivers" : [ ],
  "status" : "ALIVE"
}
"""

DECOMMISSIONED_SAMPLE = """\
{
 "url": "spark://127.0.0.1:28077",
 "workers": [
  {
   "id": "worker-20261123115637-127.0.0.2-44529",
   "host": "127.0.0.2",
   "port": 44529,
   "webuiaddress": "http://127.0.0.2:29081",
   "cores": 1,
   "coresused": 0,
   "coresfree": 1,
   "memory": 1024,
   "memoryused": 0,
   "memoryfree": 1024,
   "resources": {},
   "resourcesused": {},
   "resourcesfree": {},
   "state": "ALIVE",
   "lastheartbeat": 1795435060689
  },
  {
   "id": "worker-20261123115637-127.0.0.3-40075",
   "host": "127.0.0.3",
   "port": 40075,
   "webuiaddress": "http://127.0.0.3:29082",
   "cores": 1,
   "coresused": 0,
   "coresfree": 1,
   "memory": 1024,
   "memoryused": 0,
   "memoryfree": 1024,
   "resources": {},
   "resourcesused": {},
   "resourcesfree": {},
   "state": "DECOMMISSIONED",
   "lastheartbeat": 1795435060232
  }
 ],
 "aliveworkers": 1,
 "cores": 1,
 "coresused": 0,
 "memory": 1024,
 "memoryused": 0,
 "resources": [
  {}
 ],
 "resourcesused": [
  {}
 ],
 "activeapps": [],
 "completedapps": [
  {
   "id": "app-20261123115652-0000",
   "starttime": 1795435012219,
   "name": "opsflow-sum-of-squares",
   "cores": 2,
   "user": "root",
   "memoryperexecutor": 512,
   "memoryperslave": 512,
   "resourcesperexecutor": [],
   "resourcesperslave": [],
   "submitdate": "Mon Nov 23 11:56:52 UTC 2026",
   "state": "FINISHED",
   "duration": 16579
  },
  {
   "id": "app-20261123115714-0001",
   "starttime": 1795435034179,
   "name": "opsflow-sum-of-squares",
   "cores": 2,
   "user": "root",
   "memoryperexecutor": 512,
   "memoryperslave": 512,
   "resourcesperexecutor": [],
   "resourcesperslave": [],
   "submitdate": "Mon Nov 23 11:57:14 UTC 2026",
   "state": "FINISHED",
   "duration": 12121
  }
 ],
 "activedrivers": [],
 "completeddrivers": [],
 "status": "ALIVE"
}
"""


def test_parse_master_state_while_a_job_runs() -> None:
    state = parse_master_state(json.loads(RUNNING_SAMPLE))
    assert state.status == "ALIVE"
    assert [w.host for w in state.alive_workers] == ["127.0.0.2", "127.0.0.3"]
    assert (state.total_cores, state.used_cores) == (2, 2)
    assert state.workers[0].memoryused == 512
    assert [a.name for a in state.running_apps] == ["opsflow-sum-of-squares"]
    assert state.running_apps[0].cores == 2
    assert state.waiting_apps == []
    assert state.completedapps == []


def test_parse_master_state_leaves_decommissioned_workers_out_of_the_alive_ones() -> None:
    state = parse_master_state(json.loads(DECOMMISSIONED_SAMPLE))
    assert [(w.host, w.state) for w in state.workers] == [("127.0.0.2", "ALIVE"), ("127.0.0.3", "DECOMMISSIONED")]
    assert [w.host for w in state.alive_workers] == ["127.0.0.2"]
    assert state.total_cores == 1
    assert [a.state for a in state.completedapps] == ["FINISHED", "FINISHED"]


def test_parse_master_state_finds_waiting_apps() -> None:
    data = json.loads(RUNNING_SAMPLE)
    data["activeapps"][0]["state"] = "WAITING"
    assert [a.id for a in parse_master_state(data).waiting_apps] == ["app-20261123115652-0000"]


# --- the check job -----------------------------------------------------------------------------------------
def test_sum_of_squares_closed_form() -> None:
    assert sum_of_squares(1) == 0
    assert sum_of_squares(4) == 0 + 1 + 4 + 9
    assert sum_of_squares(1000) == sum(i * i for i in range(1000))


def test_job_argv_has_small_memory_no_driver_ui_and_the_script_arguments() -> None:
    argv = sum_of_squares_argv("/opt/spark", "spark://127.0.0.1:7077", Path("/t/job.py"), 10, 2, "app", "/py")
    assert argv[:3] == ["/opt/spark/bin/spark-submit", "--master", "spark://127.0.0.1:7077"]
    confs = {argv[i + 1] for i, arg in enumerate(argv) if arg == "--conf"}
    assert {"spark.ui.enabled=false", "spark.executor.memory=512m", "spark.pyspark.python=/py"} <= confs
    assert argv[-4:] == ["/t/job.py", "10", "2", "app"]


def test_parse_job_output_takes_the_result_line_among_spark_noise() -> None:
    out = 'WARN something\nOPSFLOW_RESULT {"value": 14, "app_id": "app-1"}\nbye\n'
    assert parse_job_output(out) == (14, "app-1")
    with pytest.raises(SparkError):
        parse_job_output("no result here")


def test_the_stacks_pyspark_python_runs_python_with_the_stack_mark(tmp_path: Path) -> None:
    cfg = StackConfig(home=tmp_path / "a home")  # a space: the wrapper must quote it
    script = tmp_path / "pyspark-python"
    script.write_text(pyspark_python_script(cfg, sys.executable))
    out = subprocess.run(
        ["sh", str(script), "-c", "import sys; print(sys._xoptions)"], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == repr({PYSPARK_MARK_OPTION: f"{cfg.home}/spark/"})


def test_spark_defaults_send_executors_to_the_stacks_pyspark_python(tmp_path: Path) -> None:
    cfg = StackConfig(home=tmp_path)
    lines = spark_defaults(cfg, tmp_path / "metrics.properties").splitlines()
    assert f"spark.pyspark.python {cfg.pyspark_python}" in lines
