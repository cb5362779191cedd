"""The Block documents that point every flow at the local stack (saved by `opsflow up`, all named `local`)."""

from __future__ import annotations

from blocks.docker import DockerEngine
from blocks.gitlab import GitLabProject
from blocks.node_update import NodeUpdateSettings
from blocks.pipeline_store import PipelineStore
from blocks.prometheus import PrometheusServer
from blocks.slurm import SlurmCluster
from blocks.spark import SparkCluster
from node_update.config import local_root
from opsflow.adapters.spark import JOB_JVM_FLAGS
from opsflow.stack.config import StackConfig
from opsflow.stack.env import api_auth_string

LOCAL = "local"


def local_blocks(
    cfg: StackConfig,
) -> list[SlurmCluster | SparkCluster | PrometheusServer | DockerEngine | NodeUpdateSettings | PipelineStore]:
    """The Blocks describing the local stack of ``cfg`` (pure: nothing is saved)."""
    return [
        SlurmCluster(conf_path=str(cfg.slurm_conf), shared_dir=str(cfg.home / "shared"), partition="batch"),
        SparkCluster(master_url=cfg.spark_master_url, ui_url=cfg.spark_master_ui_url),
        PrometheusServer(url=cfg.prometheus_url),
        DockerEngine(base_url=cfg.docker_host),
        NodeUpdateSettings(root=str(local_root(cfg.home))),
        PipelineStore(
            root=str(cfg.home / "pipelines"),
            file_service_url=cfg.files_url,
            file_service_auth=api_auth_string(cfg),
        ),
    ]


def save_local_blocks(cfg: StackConfig) -> None:
    """Save the local stack's Blocks as `local` (overwriting: the stack's ports may have changed)."""
    (cfg.home / "shared").mkdir(parents=True, exist_ok=True)
    for block in local_blocks(cfg):
        block.save(LOCAL, overwrite=True)


def example_gitlab_project(cfg: StackConfig) -> GitLabProject:
    """The ``loans`` project (examples/spark_training) on the stand-in GitLab, trained on the stack's Spark.

    Small memory and no driver UI: two 1-core workers of 1 GB on a 2-core machine (the thesis's 4g/8g would
    never be granted). The driver binds to loopback, as the workers do.
    """
    from opsflow.stack.ci import EXAMPLE_PROJECT, local_repo, local_secrets

    keys = local_secrets(cfg)
    return GitLabProject(
        gitlab_url=cfg.gitlab_url,
        project=EXAMPLE_PROJECT,
        api_token=keys["api_token"],
        webhook_secret=keys["webhook_secret"],
        repository_url=str(local_repo(cfg)),
        branches=["main", "feature/*"],
        test_command=["python", "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        entry_point="train.py",
        arguments=["--rows", "2000"],
        driver_memory="512m",
        executor_memory="512m",
        cores_max=2,
        spark_conf={
            "spark.ui.enabled": "false",
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.driver.extraJavaOptions": JOB_JVM_FLAGS,
            "spark.executor.extraJavaOptions": JOB_JVM_FLAGS,
            "spark.pyspark.python": str(cfg.pyspark_python),
        },
        workdir=str(cfg.home / "ci" / "checkouts"),
    )
