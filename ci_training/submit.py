"""The ``spark-submit`` command line of a CI training: the thesis's submit image as an argument list (pure).

Rules (thesis §6.4.4 Table 6.2 and listing C.5; notes ``ci-training-anchors.md`` §4, acceptance check 10):

- S1 client mode only: standalone Spark cannot run a Python application in cluster mode ("standalone mode does
  not support cluster mode for Python applications"), and in client mode the exit code of ``spark-submit`` is
  the driver's, so it tells a failed training (the thesis's §5.3.2 work-around was a submit container).
- S2 Table 6.2's settings: ``DRIVER_MEMORY`` (``--driver-memory``: in client mode the driver JVM starts with
  ``spark-submit``, so a ``--conf`` would come too late), ``EXECUTOR_MEMORY``, cores, then the project's own
  ``spark_conf`` last, overriding anything before it.
- S3 GPU mode (``CPU_ONLY=false``) adds listing C.5's RAPIDS confs: ``spark.plugins=com.nvidia.spark.SQLPlugin``,
  the pool, allocFraction, incompatibleOps and debug settings (``RAPIDS_DEBUG`` is
  ``spark.rapids.memory.gpu.debug``, whose values NONE/STDOUT/STDERR it takes), one GPU per executor and
  ``1/cores`` of it per task, plus the jars. ``CPU_ONLY=true`` leaves every plugin, RAPIDS and GPU conf out.
- S4 the entry point is a relative ``.py`` path inside the checkout; the command is an argument list, never a
  shell string (ARCHITECTURE.md, "Errors and state").
- S5 the application id comes from the client-mode log line ``Connected to Spark cluster with app ID app-…``.

Example:
    >>> from ci_training.models import CiProject
    >>> p = CiProject(project="ml/loans", api_token="t", webhook_secret="s")
    >>> spark_submit_argv("spark-submit", "spark://127.0.0.1:7077", p, "train.py", ["--depth", "6"], "opsflow-x")
    ... # doctest: +NORMALIZE_WHITESPACE
    ['spark-submit', '--master', 'spark://127.0.0.1:7077', '--deploy-mode', 'client', '--name', 'opsflow-x',
     '--driver-memory', '4g', '--conf', 'spark.executor.cores=1', '--conf', 'spark.executor.memory=8g',
     'train.py', '--depth', '6']
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import ROUND_DOWN, Decimal
from pathlib import PurePosixPath

from ci_training.models import CiProject
from opsflow.errors import InputError

#: The RAPIDS Accelerator's plugin class (listing C.5).
RAPIDS_PLUGIN = "com.nvidia.spark.SQLPlugin"
#: Conf keys that belong to the GPU mode only (S3): none of them may appear with CPU_ONLY.
GPU_CONF_PREFIXES = ("spark.plugins", "spark.rapids.", "spark.executor.resource.gpu.", "spark.task.resource.gpu.")
#: Spark's client-mode line naming the application (``StandaloneSchedulerBackend``).
APP_ID_LINE = re.compile(r"Connected to Spark cluster with app ID (app-\d+-\d+)")


def _decimal(value: float | Decimal) -> str:
    """A number as Spark reads it: plain decimal notation, no trailing zeros ("1", "0.25")."""
    return f"{Decimal(repr(value) if isinstance(value, float) else value).normalize():f}"


def task_gpu_amount(executor_cores: int) -> str:
    """S3: the share of its executor's one GPU that a task takes, ``1/cores`` rounded *down* to 6 places.

    Rounding down keeps ``1 / amount`` (the tasks Spark fits on the GPU) at ``cores`` rather than one fewer.

    >>> task_gpu_amount(1), task_gpu_amount(4), task_gpu_amount(6)
    ('1', '0.25', '0.166666')
    """
    share = (Decimal(1) / Decimal(executor_cores)).quantize(Decimal("0.000001"), rounding=ROUND_DOWN)
    return _decimal(share)


def training_confs(project: CiProject) -> dict[str, str]:
    """S2, S3: the ``--conf`` settings of the training, the project's ``spark_conf`` applied last.

    >>> from ci_training.models import CiProject
    >>> gpu = CiProject(project="p", api_token="t", webhook_secret="s", cpu_only=False, executor_cores=4)
    >>> confs = training_confs(gpu)
    >>> confs["spark.plugins"], confs["spark.task.resource.gpu.amount"], confs["spark.rapids.memory.gpu.pool"]
    ('com.nvidia.spark.SQLPlugin', '0.25', 'ARENA')
    >>> training_confs(gpu.model_copy(update={"cpu_only": True, "cores_max": 8}))
    {'spark.executor.memory': '8g', 'spark.executor.cores': '4', 'spark.cores.max': '8'}
    """
    confs = {
        "spark.executor.memory": project.executor_memory,
        "spark.executor.cores": str(project.executor_cores),
    }
    if project.cores_max is not None:
        confs["spark.cores.max"] = str(project.cores_max)
    if not project.cpu_only:
        confs |= {
            "spark.plugins": RAPIDS_PLUGIN,
            "spark.rapids.sql.enabled": "true",
            "spark.rapids.memory.gpu.pool": project.rapids_gpu_pool,
            "spark.rapids.memory.gpu.allocFraction": _decimal(project.rapids_gpu_alloc_fraction),
            "spark.rapids.sql.incompatibleOps.enabled": str(project.rapids_incompatible_ops).lower(),
            "spark.rapids.memory.gpu.debug": project.rapids_debug,
            "spark.executor.resource.gpu.amount": "1",
            "spark.task.resource.gpu.amount": task_gpu_amount(project.executor_cores),
        }
    confs |= project.spark_conf
    return confs


def entry_point_problem(entry_point: str) -> str | None:
    """S4: why ``entry_point`` is not a Python file inside the checkout (None: it is).

    >>> entry_point_problem("jobs/train.py") is None
    True
    >>> entry_point_problem("../other/train.py"), entry_point_problem("/etc/train.py")
    ("must stay inside the checkout (no '..')", 'must be relative to the checkout, not absolute')
    >>> entry_point_problem("train.sh")
    'must be a Python file (.py)'
    """
    if not entry_point.strip():
        return "must name a Python file of the repository"
    if "\x00" in entry_point or "\\" in entry_point:
        return "must be a path with / separators"
    path = PurePosixPath(entry_point)
    if path.is_absolute():
        return "must be relative to the checkout, not absolute"
    if ".." in path.parts:
        return "must stay inside the checkout (no '..')"
    if entry_point.startswith("-"):
        return "must not start with '-' (spark-submit would read it as an option)"
    if path.suffix != ".py":
        return "must be a Python file (.py)"
    return None


def _check(project: CiProject, entry_point: str) -> None:
    problem = entry_point_problem(entry_point)
    if problem:
        raise InputError("entry_point", [(0, "entry_point", f"{problem} (got {entry_point!r})")])
    bad = [key for key in project.spark_conf if not key.strip() or "=" in key or key != key.strip()]
    if bad:
        msg = "a conf key has no '=' and no surrounding blanks"
        raise InputError("spark_conf", [(0, f"spark_conf.{key}", msg) for key in bad])


def spark_submit_argv(
    spark_submit: str,
    master_url: str,
    project: CiProject,
    entry_point: str,
    arguments: Sequence[str],
    app_name: str,
) -> list[str]:
    """S1-S4: the whole ``spark-submit`` argument list, ``--conf`` keys sorted, the application last.

    Raises :class:`~opsflow.errors.InputError` (source ``entry_point``) for an entry point outside the checkout
    or not a ``.py`` file.

    >>> from ci_training.models import CiProject
    >>> gpu = CiProject(project="p", api_token="t", webhook_secret="s", cpu_only=False,
    ...     rapids_jars=["/opt/rapids-4-spark.jar", "/opt/xgboost4j.jar"])
    >>> argv = spark_submit_argv("spark-submit", "spark://m:7077", gpu, "train.py", [], "opsflow-1")
    >>> argv[argv.index("--jars") + 1]
    '/opt/rapids-4-spark.jar,/opt/xgboost4j.jar'
    >>> spark_submit_argv("spark-submit", "spark://m:7077", gpu, "../x.py", [], "opsflow-1")
    Traceback (most recent call last):
    ...
    opsflow.errors.InputError: entry_point: entry_point: must stay inside the checkout (no '..') (got '../x.py')
    """
    _check(project, entry_point)
    argv = [spark_submit, "--master", master_url, "--deploy-mode", "client", "--name", app_name]
    argv += ["--driver-memory", project.driver_memory]
    if not project.cpu_only and project.rapids_jars:
        argv += ["--jars", ",".join(project.rapids_jars)]
    confs = training_confs(project)
    for key in sorted(confs):
        argv += ["--conf", f"{key}={confs[key]}"]
    return [*argv, entry_point, *arguments]


def parse_app_id(line: str) -> str | None:
    """S5: the application id in one line of ``spark-submit``'s client-mode log (None: not that line).

    >>> parse_app_id("26/12/01 12:34:56 INFO StandaloneSchedulerBackend: Connected to Spark cluster with app ID "
    ...     "app-20261201123456-0003")
    'app-20261201123456-0003'
    >>> parse_app_id("INFO SparkContext: Running Spark version 4.0.1") is None
    True
    """
    match = APP_ID_LINE.search(line)
    return match.group(1) if match else None
