"""The training's spark-submit command (ci_training.submit): Table 6.2 settings, CPU vs GPU confs, validation."""

from __future__ import annotations

from typing import Any

import pytest

from ci_training.models import CiProject
from ci_training.submit import parse_app_id, spark_submit_argv, training_confs
from opsflow.errors import InputError

MASTER = "spark://127.0.0.1:7077"
GPU_KEYS = {
    "spark.plugins",
    "spark.rapids.sql.enabled",
    "spark.rapids.memory.gpu.pool",
    "spark.rapids.memory.gpu.allocFraction",
    "spark.rapids.sql.incompatibleOps.enabled",
    "spark.rapids.memory.gpu.debug",
    "spark.executor.resource.gpu.amount",
    "spark.task.resource.gpu.amount",
}
JARS = ["/opt/sparkRapidsPlugin/rapids-4-spark_2.13-25.10.0.jar", "/opt/sparkRapidsPlugin/xgboost4j-spark.jar"]


def project(**fields: Any) -> CiProject:
    return CiProject(project="ml/loans", api_token="glpat-secret", webhook_secret="hook-secret", **fields)


def confs_of(argv: list[str]) -> dict[str, str]:
    pairs = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--conf"]
    return dict(pair.split("=", 1) for pair in pairs)


def argv_of(proj: CiProject, entry: str = "train.py", args: tuple[str, ...] = ()) -> list[str]:
    return spark_submit_argv("/opt/spark/bin/spark-submit", MASTER, proj, entry, list(args), "opsflow-run-1")


# --- confs -----------------------------------------------------------------------------------------------------


def test_cpu_defaults_follow_table_6_2() -> None:
    assert training_confs(project()) == {"spark.executor.memory": "8g", "spark.executor.cores": "1"}


def test_cpu_only_leaves_every_gpu_conf_out() -> None:
    confs = training_confs(project(cpu_only=True, rapids_jars=JARS, executor_cores=4, cores_max=8))
    assert not GPU_KEYS & set(confs)
    assert not any(k.startswith(("spark.rapids.", "spark.plugins")) or ".gpu." in k for k in confs)
    assert confs["spark.cores.max"] == "8" and confs["spark.executor.cores"] == "4"


def test_gpu_mode_adds_listing_c5_confs_with_table_6_2_defaults() -> None:
    confs = training_confs(project(cpu_only=False))
    assert set(confs) >= GPU_KEYS
    assert confs["spark.plugins"] == "com.nvidia.spark.SQLPlugin"
    assert confs["spark.rapids.sql.enabled"] == "true"
    assert confs["spark.rapids.memory.gpu.pool"] == "ARENA"
    assert confs["spark.rapids.memory.gpu.allocFraction"] == "1"
    assert confs["spark.rapids.sql.incompatibleOps.enabled"] == "false"
    assert confs["spark.rapids.memory.gpu.debug"] == "NONE"
    assert confs["spark.executor.resource.gpu.amount"] == "1"
    assert confs["spark.task.resource.gpu.amount"] == "1"


def test_gpu_mode_takes_the_project_rapids_settings() -> None:
    confs = training_confs(
        project(
            cpu_only=False,
            rapids_gpu_pool="ASYNC",
            rapids_gpu_alloc_fraction=0.9,
            rapids_incompatible_ops=True,
            rapids_debug="STDERR",
        )
    )
    assert confs["spark.rapids.memory.gpu.pool"] == "ASYNC"
    assert confs["spark.rapids.memory.gpu.allocFraction"] == "0.9"
    assert confs["spark.rapids.sql.incompatibleOps.enabled"] == "true"
    assert confs["spark.rapids.memory.gpu.debug"] == "STDERR"


@pytest.mark.parametrize(("cores", "amount"), [(1, "1"), (2, "0.5"), (4, "0.25"), (8, "0.125"), (3, "0.333333")])
def test_task_gpu_share_is_one_over_executor_cores(cores: int, amount: str) -> None:
    confs = training_confs(project(cpu_only=False, executor_cores=cores))
    assert confs["spark.task.resource.gpu.amount"] == amount
    assert confs["spark.executor.cores"] == str(cores)


@pytest.mark.parametrize("cores", range(1, 33))
def test_task_gpu_share_fits_exactly_cores_tasks_per_gpu(cores: int) -> None:
    amount = float(training_confs(project(cpu_only=False, executor_cores=cores))["spark.task.resource.gpu.amount"])
    assert int(1 / amount) == cores


def test_cores_max_only_when_set() -> None:
    assert "spark.cores.max" not in training_confs(project())
    assert training_confs(project(cores_max=6))["spark.cores.max"] == "6"


def test_spark_conf_overrides_come_last() -> None:
    confs = training_confs(
        project(
            cpu_only=False,
            executor_memory="8g",
            spark_conf={"spark.executor.memory": "16g", "spark.rapids.sql.enabled": "false", "spark.ui.port": "0"},
        )
    )
    assert confs["spark.executor.memory"] == "16g"
    assert confs["spark.rapids.sql.enabled"] == "false"
    assert confs["spark.ui.port"] == "0"


# --- argv ------------------------------------------------------------------------------------------------------


def test_cpu_argv_is_client_mode_with_sorted_confs_and_the_app_last() -> None:
    argv = argv_of(project(driver_memory="2g", cores_max=4), "jobs/train.py", ("--depth", "6"))
    assert argv[:9] == [
        "/opt/spark/bin/spark-submit",
        "--master",
        MASTER,
        "--deploy-mode",
        "client",
        "--name",
        "opsflow-run-1",
        "--driver-memory",
        "2g",
    ]
    assert argv[-3:] == ["jobs/train.py", "--depth", "6"]
    pairs = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--conf"]
    assert pairs == sorted(pairs)
    assert pairs == ["spark.cores.max=4", "spark.executor.cores=1", "spark.executor.memory=8g"]
    assert "--jars" not in argv and "cluster" not in argv


def test_gpu_argv_has_the_jars_and_gpu_confs() -> None:
    argv = argv_of(project(cpu_only=False, rapids_jars=JARS))
    assert argv[argv.index("--jars") + 1] == ",".join(JARS)
    assert argv.index("--jars") < argv.index("--conf")
    confs = confs_of(argv)
    assert confs["spark.plugins"] == "com.nvidia.spark.SQLPlugin"
    assert confs["spark.executor.resource.gpu.amount"] == "1"


def test_jars_only_in_gpu_mode_and_only_when_given() -> None:
    assert "--jars" not in argv_of(project(cpu_only=True, rapids_jars=JARS))
    assert "--jars" not in argv_of(project(cpu_only=False))


def test_arguments_stay_separate_argv_items() -> None:
    args = ("--name", "a b; rm -rf /", "$(id)")
    argv = argv_of(project(), "train.py", args)
    assert argv[-4:] == ["train.py", *args]


def test_no_secret_in_the_command() -> None:
    assert not any("secret" in arg for arg in argv_of(project(cpu_only=False, rapids_jars=JARS)))


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("../train.py", "inside the checkout"),
        ("jobs/../../train.py", "inside the checkout"),
        ("/etc/train.py", "not absolute"),
        ("train.sh", ".py"),
        ("train", ".py"),
        ("", "Python file"),
        ("--conf=x.py", "'-'"),
        ("jobs\\train.py", "separators"),
    ],
)
def test_bad_entry_points_are_input_errors(entry: str, words: str) -> None:
    with pytest.raises(InputError) as info:
        argv_of(project(), entry)
    assert info.value.source == "entry_point"
    assert info.value.line == 0 and info.value.field == "entry_point"
    assert words in info.value.problems[0][2]


@pytest.mark.parametrize("entry", ["train.py", "jobs/train.py", "./jobs/train.py", "a/b/c/fit_model.py"])
def test_good_entry_points(entry: str) -> None:
    assert argv_of(project(), entry)[-1] == entry


def test_a_conf_key_with_equals_is_an_input_error() -> None:
    with pytest.raises(InputError) as info:
        argv_of(project(spark_conf={"spark.a=b": "c"}))
    assert info.value.field == "spark_conf.spark.a=b"


# --- app id ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "Connected to Spark cluster with app ID app-20261201123456-0003",
        "26/12/01 12:34:56 INFO StandaloneSchedulerBackend: Connected to Spark cluster with app ID "
        "app-20261201123456-0003",
        "INFO StandaloneSchedulerBackend: Connected to Spark cluster with app ID app-20261201123456-0003\n",
    ],
)
def test_app_id_from_client_mode_log(line: str) -> None:
    assert parse_app_id(line) == "app-20261201123456-0003"


def test_app_ids_past_9999_apps() -> None:
    assert parse_app_id("Connected to Spark cluster with app ID app-20261201123456-12345") == (
        "app-20261201123456-12345"
    )


@pytest.mark.parametrize(
    "line",
    [
        "INFO SparkContext: Submitted application: opsflow-run-1",
        "INFO StandaloneAppClient$ClientEndpoint: Connecting to master spark://127.0.0.1:7077...",
        "INFO Executor added: app-20261201123456-0003/0 on worker-2026",
        "",
    ],
)
def test_other_lines_have_no_app_id(line: str) -> None:
    assert parse_app_id(line) is None
