"""Spark standalone adapter: the master's state from its ``/json/`` page, how a worker is launched, a check job.

The master's JSON page is the one place that lists workers (with their state: ALIVE, DECOMMISSIONED, DEAD)
and applications (RUNNING, WAITING, FINISHED ...); :func:`parse_master_state` turns it into pydantic models
without any I/O, :class:`SparkMaster` fetches it.

The Spark facts that the local stack (which starts the cluster) and the auto-scaler's worker backends (which add
and remove workers) must agree on live here once: the daemons' main classes, their JVM flags and heap, the
loopback address and process key of worker ``i`` (:func:`worker_host`, :func:`worker_key`), a worker's command
line (:func:`worker_argv`) and environment (:func:`daemon_env`), and the whole local worker process
(:func:`local_worker_process`).

Example:
    >>> state = parse_master_state({"url": "spark://127.0.0.1:7077", "status": "ALIVE", "workers": []})
    >>> state.alive_workers, state.total_cores
    ([], 0)
    >>> worker_host(0), worker_key(0)
    ('127.0.0.2', 'spark-worker-0')
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from opsflow.errors import AdapterError
from opsflow.processes import ProcessSpec

#: Main classes of Spark's standalone daemons and executors (spark-class arguments, process matching).
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
EXECUTOR_CLASS = "org.apache.spark.executor.CoarseGrainedExecutorBackend"
#: Heap of the master and worker JVMs themselves (executors get spark.executor.memory).
DAEMON_MEMORY = "384m"
#: JVM flags of the master, the workers and spark-class's launcher JVM: the C1 compiler only and the serial
#: collector. These daemons do little computing; on 2 cores the full JIT and parallel GC threads of four JVMs
#: starting at once made the cluster take 13-25 s to come up instead of 7-9 s.
DAEMON_JVM_FLAGS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")
LAUNCHER_JVM_FLAGS = DAEMON_JVM_FLAGS
#: 127.0.0.1 is the master; workers take 127.0.0.2 ... 127.0.0.254.
MAX_WORKERS = 253


def worker_host(index: int) -> str:
    """The loopback address of worker ``index`` (0-based): one host per worker, so that a single worker can be
    told apart (and decommissioned) by its host.

    >>> worker_host(0), worker_host(252)
    ('127.0.0.2', '127.0.0.254')
    """
    if not 0 <= index < MAX_WORKERS:
        raise ValueError(f"Spark worker index {index} is outside 0..{MAX_WORKERS - 1}")
    return f"127.0.0.{index + 2}"


def worker_key(index: int) -> str:
    """The process key of worker ``index`` (its pid and log file names).

    >>> worker_key(3)
    'spark-worker-3'
    """
    return f"spark-worker-{index}"


def spark_home(env: Mapping[str, str] | None = None) -> str:
    """``SPARK_HOME`` of ``env`` (default: this process's), else the distribution inside the pyspark package."""
    env = os.environ if env is None else env
    if env.get("SPARK_HOME"):
        return env["SPARK_HOME"]
    import pyspark  # only here: the package is large and most callers have SPARK_HOME

    return str(Path(pyspark.__file__).parent)


def java_home(env: Mapping[str, str] | None = None) -> str | None:
    """``JAVA_HOME`` of ``env`` (default: this process's), else the JDK of the ``java`` on PATH, else None."""
    import shutil

    env = os.environ if env is None else env
    if env.get("JAVA_HOME"):
        return env["JAVA_HOME"]
    java = shutil.which("java", path=env.get("PATH"))
    return str(Path(java).resolve().parent.parent) if java else None


def daemon_env(spark_home: str, conf_dir: str | Path, root: str | Path, local_ip: str) -> dict[str, str]:
    """The environment of a master or worker JVM whose logs and temporary files go under ``root`` (pure).

    >>> env = daemon_env("/opt/spark", "/h/spark/conf", "/h/spark", "127.0.0.2")
    >>> env["SPARK_LOCAL_IP"], env["SPARK_DAEMON_JAVA_OPTS"].split()[0]
    ('127.0.0.2', '-Djava.io.tmpdir=/h/spark/tmp')
    """
    root = Path(root)
    return {
        "SPARK_HOME": spark_home,
        "SPARK_CONF_DIR": str(conf_dir),
        "SPARK_LOG_DIR": str(root / "logs"),
        # The web UIs bind to SPARK_LOCAL_IP (0.0.0.0 without it): keep them on loopback.
        "SPARK_LOCAL_IP": local_ip,
        "SPARK_DAEMON_MEMORY": DAEMON_MEMORY,
        "SPARK_DAEMON_JAVA_OPTS": " ".join([f"-Djava.io.tmpdir={root / 'tmp'}", *DAEMON_JVM_FLAGS]),
        "SPARK_LAUNCHER_OPTS": " ".join(LAUNCHER_JVM_FLAGS),
    }


def worker_argv(
    spark_home: str,
    master_url: str,
    host: str,
    webui_port: int,
    cores: int,
    memory: str,
    work_dir: str | Path | None = None,
) -> list[str]:
    """The command of one worker JVM (spark-class execs the JVM, so it is the process itself) (pure).

    >>> worker_argv("/opt/spark", "spark://127.0.0.1:7077", "127.0.0.2", 8081, 1, "1g")[1:4]
    ['org.apache.spark.deploy.worker.Worker', '--host', '127.0.0.2']
    """
    argv = [
        f"{spark_home}/bin/spark-class", WORKER_CLASS,
        "--host", host,
        "--webui-port", str(webui_port),
        "--cores", str(cores),
        "--memory", memory,
    ]  # fmt: skip
    if work_dir is not None:
        argv += ["--work-dir", str(work_dir)]
    return [*argv, master_url]


def local_worker_process(
    index: int,
    *,
    root: str | Path,
    spark_home: str,
    conf_dir: str | Path,
    master_url: str,
    webui_port: int,
    cores: int,
    memory: str,
) -> ProcessSpec:
    """Worker ``index`` as a local process: host :func:`worker_host`, key :func:`worker_key`, its work and local
    dirs under ``root`` (the local stack's ``<home>/spark``) (pure).

    The local stack starts its own workers with it and the auto-scaler's local backend adds more with it, so the
    two are one set of processes.

    >>> spec = local_worker_process(1, root="/h/spark", spark_home="/opt/spark", conf_dir="/h/spark/conf",
    ...                             master_url="spark://127.0.0.1:7077", webui_port=8082, cores=1, memory="1g")
    >>> spec.key, spec.env["SPARK_WORKER_DIR"], spec.argv[-1]
    ('spark-worker-1', '/h/spark/work/spark-worker-1', 'spark://127.0.0.1:7077')
    """
    root = Path(root)
    host, key = worker_host(index), worker_key(index)
    work = root / "work" / key
    env = {
        **daemon_env(spark_home, conf_dir, root, host),
        "SPARK_WORKER_DIR": str(work),
        "SPARK_LOCAL_DIRS": str(root / "local" / key),
    }
    argv = worker_argv(spark_home, master_url, host, webui_port, cores, memory, work)
    return ProcessSpec(key=key, argv=argv, env=env, cwd=root)


class SparkError(AdapterError):
    """The Spark master could not be read, or a job failed or returned a wrong result."""


class WorkerInfo(BaseModel):
    """One worker as the master sees it (memory in MiB)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    host: str
    port: int = 0
    webuiaddress: str = ""
    state: str = Field(description="ALIVE, DECOMMISSIONED, DEAD or UNKNOWN")
    cores: int = 0
    coresused: int = 0
    coresfree: int = 0
    memory: int = 0
    memoryused: int = 0
    memoryfree: int = 0
    lastheartbeat: int = Field(0, description="Epoch milliseconds of the last heartbeat")


class AppInfo(BaseModel):
    """One application (driver connected to the master)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    name: str = ""
    user: str = ""
    state: str = Field(description="WAITING, RUNNING, FINISHED, FAILED, KILLED or UNKNOWN")
    cores: int = Field(0, description="Cores granted to the application right now")
    memoryperexecutor: int = 0
    starttime: int = 0
    duration: int = Field(0, description="Milliseconds since the start (run time once finished)")


class MasterState(BaseModel):
    """The master's ``/json/`` page: its status, workers and applications."""

    model_config = ConfigDict(extra="ignore")

    url: str = ""
    status: str = Field(description="ALIVE, STANDBY, RECOVERING or COMPLETING_RECOVERY")
    workers: list[WorkerInfo] = []
    activeapps: list[AppInfo] = []
    completedapps: list[AppInfo] = []

    @property
    def alive_workers(self) -> list[WorkerInfo]:
        return [w for w in self.workers if w.state == "ALIVE"]

    @property
    def total_cores(self) -> int:
        """Cores offered by ALIVE workers (the master's own ``cores`` field counts the same)."""
        return sum(w.cores for w in self.alive_workers)

    @property
    def used_cores(self) -> int:
        return sum(w.coresused for w in self.alive_workers)

    @property
    def waiting_apps(self) -> list[AppInfo]:
        """Applications still waiting for their first executors."""
        return [a for a in self.activeapps if a.state == "WAITING"]

    @property
    def running_apps(self) -> list[AppInfo]:
        return [a for a in self.activeapps if a.state == "RUNNING"]


    def app_named(self, name: str) -> AppInfo | None:
        """The newest application called ``name`` (active ones first), or None.

        >>> done = AppInfo(id="app-1", name="a", state="FINISHED")
        >>> MasterState(status="ALIVE", completedapps=[done]).app_named("a").id
        'app-1'
        """
        for app in [*self.activeapps, *reversed(self.completedapps)]:
            if app.name == name:
                return app
        return None


def parse_master_state(data: Mapping[str, Any]) -> MasterState:
    """Validate the decoded ``/json/`` page of a standalone master (pure)."""
    return MasterState.model_validate(dict(data))


class SparkMaster:
    """Reads a standalone master through its web UI (``http://host:8080``)."""

    def __init__(self, ui_url: str, timeout_s: float = 3.0) -> None:
        self.ui_url = ui_url.rstrip("/")
        self.timeout_s = timeout_s

    def state(self) -> MasterState:
        try:
            resp = httpx.get(f"{self.ui_url}/json/", timeout=self.timeout_s)
            resp.raise_for_status()
            return parse_master_state(resp.json())
        except (httpx.HTTPError, ValueError) as exc:
            raise SparkError(f"cannot read the Spark master at {self.ui_url}/json/: {exc}") from exc

    def kill_app(self, app_id: str) -> None:
        """Kill an application through the master's UI (``spark.ui.killEnabled``, on by default)."""
        try:
            resp = httpx.post(
                f"{self.ui_url}/app/kill/", data={"id": app_id, "terminate": "true"}, timeout=self.timeout_s
            )
        except httpx.HTTPError as exc:
            raise SparkError(f"cannot ask the Spark master at {self.ui_url} to kill {app_id}: {exc}") from exc
        if resp.status_code >= 400:
            raise SparkError(f"the Spark master refused to kill {app_id}: {resp.status_code}")

    def prometheus_text(self, path: str = "/metrics/master/prometheus/") -> str:
        """The master's Prometheus servlet page (needs the PrometheusServlet sink in metrics.properties)."""
        try:
            resp = httpx.get(f"{self.ui_url}{path}", timeout=self.timeout_s, follow_redirects=True)
            resp.raise_for_status()
            return resp.text
        except httpx.HTTPError as exc:
            raise SparkError(f"cannot read {self.ui_url}{path}: {exc}") from exc


# --- a small check job ---------------------------------------------------------------------------------------
# It runs through spark-submit in its own processes rather than as a SparkSession inside the caller: a
# SparkContext is a per-process singleton whose JVM outlives stop(), so an in-process job would leak a JVM into
# a flow worker and hand any later getOrCreate() (a test using a local master, say) this cluster's context.
# A subprocess also gets a hard timeout. The script imports only pyspark, so it runs from a temporary file.
SUM_OF_SQUARES_SCRIPT = """\
import json, sys
from pyspark.sql import SparkSession

n, partitions = int(sys.argv[1]), int(sys.argv[2])
spark = SparkSession.builder.appName(sys.argv[3]).getOrCreate()
try:
    sc = spark.sparkContext
    value = sc.range(n, numSlices=partitions).map(lambda x: x * x).sum()
    print("OPSFLOW_RESULT " + json.dumps({"value": int(value), "app_id": sc.applicationId}), flush=True)
finally:
    spark.stop()
"""

RESULT_MARKER = "OPSFLOW_RESULT "
#: A short job is mostly JVM start-up: C1 only and the serial GC cut it by about a third on 2 cores.
JOB_JVM_FLAGS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


class JobResult(BaseModel):
    value: int
    app_id: str
    seconds: float


def sum_of_squares(n: int) -> int:
    """0² + 1² + ... + (n-1)², in closed form.

    >>> sum_of_squares(4)
    14
    """
    return (n - 1) * n * (2 * n - 1) // 6


def sum_of_squares_argv(
    spark_home: str, master_url: str, script: Path, n: int, partitions: int, app_name: str, python: str
) -> list[str]:
    """The spark-submit command of the check job (pure). Small memory, no driver UI (no port to clash)."""
    conf = {
        "spark.ui.enabled": "false",
        "spark.driver.memory": "512m",
        "spark.executor.memory": "512m",
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.driver.extraJavaOptions": JOB_JVM_FLAGS,
        "spark.executor.extraJavaOptions": JOB_JVM_FLAGS,
        "spark.pyspark.python": python,
        "spark.pyspark.driver.python": python,
    }
    argv = [f"{spark_home}/bin/spark-submit", "--master", master_url]
    for key, value in conf.items():
        argv += ["--conf", f"{key}={value}"]
    return [*argv, str(script), str(n), str(partitions), app_name]


def parse_job_output(stdout: str) -> tuple[int, str]:
    """The value and application id printed by the check job (pure)."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            data = json.loads(line[len(RESULT_MARKER) :])
            return int(data["value"]), str(data["app_id"])
    raise SparkError("the job printed no result line")


def run_sum_of_squares(
    master_url: str,
    n: int = 100_000,
    partitions: int = 4,
    *,
    app_name: str = "opsflow-sum-of-squares",
    env: Mapping[str, str] | None = None,
    timeout_s: float = 300.0,
) -> JobResult:
    """Run the check job on the cluster at ``master_url``; its result is checked against the closed form.

    ``env`` must give JAVA_HOME (or java on PATH); SPARK_HOME defaults to the pyspark package.

    Example:
        ``run_sum_of_squares("spark://127.0.0.1:7077", 1000).value`` is 332833500 on a running cluster; a Spark
        that is not there is a SparkError:

        >>> run_sum_of_squares("spark://127.0.0.1:7077", 1000, env={"SPARK_HOME": "/nonexistent"})
        ... # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        opsflow.adapters.spark.SparkError: cannot run /nonexistent/bin/spark-submit: ...
    """
    run_env = dict(os.environ if env is None else env)
    home = spark_home(run_env)
    with tempfile.TemporaryDirectory(prefix="opsflow-spark-job-") as tmp:
        script = Path(tmp) / "sum_of_squares.py"
        script.write_text(SUM_OF_SQUARES_SCRIPT)
        # The stack's PYSPARK_PYTHON marks the executors' Python workers for the process exporter.
        python = run_env.get("PYSPARK_PYTHON") or sys.executable
        argv = sum_of_squares_argv(home, master_url, script, n, partitions, app_name, python)
        started = time.monotonic()
        try:
            proc = subprocess.run(
                argv, env=run_env, cwd=tmp, capture_output=True, text=True, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise SparkError(f"the Spark job did not finish within {timeout_s:.0f} s") from exc
        except OSError as exc:  # no spark-submit there: a wrong SPARK_HOME
            raise SparkError(f"cannot run {argv[0]}: {exc}") from exc
        seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise SparkError(f"spark-submit exited with {proc.returncode}:\n{_last_lines(proc.stderr)}")
    value, app_id = parse_job_output(proc.stdout)
    if value != sum_of_squares(n):
        raise SparkError(f"the cluster computed {value}, expected {sum_of_squares(n)}")
    return JobResult(value=value, app_id=app_id, seconds=seconds)


def _last_lines(text: str, lines: int = 30) -> str:
    tail: Sequence[str] = text.splitlines()[-lines:]
    return "\n".join(tail)
