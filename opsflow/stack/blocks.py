"""The Block documents that point every flow at the local stack (saved by `opsflow up`, all named `local`)."""

from __future__ import annotations

from blocks.docker import DockerEngine
from blocks.node_update import NodeUpdateSettings
from blocks.pipeline_store import PipelineStore
from blocks.prometheus import PrometheusServer
from blocks.slurm import SlurmCluster
from blocks.spark import SparkCluster
from node_update.config import local_root
from opsflow.stack.config import StackConfig

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
        PipelineStore(root=str(cfg.home / "pipelines")),
    ]


def save_local_blocks(cfg: StackConfig) -> None:
    """Save the local stack's Blocks as `local` (overwriting: the stack's ports may have changed)."""
    (cfg.home / "shared").mkdir(parents=True, exist_ok=True)
    for block in local_blocks(cfg):
        block.save(LOCAL, overwrite=True)
