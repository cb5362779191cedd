"""Every Block describes itself as a form and builds its adapter (as Prefect's own collections check)."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.blocks.core import Block

from blocks import (
    ALL_BLOCKS,
    DockerEngine,
    NodeUpdateSettings,
    PipelineStore,
    PrometheusServer,
    SlurmCluster,
    SparkCluster,
)
from opsflow.stack.blocks import local_blocks
from opsflow.stack.config import StackConfig


@pytest.mark.parametrize("block_cls", ALL_BLOCKS, ids=lambda c: c.__name__)
def test_block_describes_every_field(block_cls: type[Block]) -> None:
    schema = block_cls.model_json_schema()
    for name, prop in schema["properties"].items():
        assert prop.get("description"), f"{block_cls.__name__}.{name} has no description"
    assert block_cls.get_block_type_slug().startswith("opsflow-")
    assert block_cls.get_description()


def test_local_blocks_point_at_the_stack(tmp_path: Path) -> None:
    cfg = StackConfig(home=tmp_path).shifted(5)
    slurm, spark, prom, docker, nu, pipelines = local_blocks(cfg)
    assert isinstance(slurm, SlurmCluster) and isinstance(spark, SparkCluster)
    assert isinstance(prom, PrometheusServer) and isinstance(docker, DockerEngine)
    assert slurm.get_client().conf == cfg.slurm_conf
    assert spark.master_url == "spark://127.0.0.1:7082"
    assert spark.get_client().ui_url == cfg.spark_master_ui_url
    assert prom.get_client().url == "http://127.0.0.1:9095"
    assert docker.base_url == f"unix://{tmp_path}/podman/podman.sock"
    assert docker.get_client().base_url == docker.base_url
    assert isinstance(nu, NodeUpdateSettings) and nu.resolved(env={}).root == tmp_path / "shared" / "node-update"
    assert isinstance(pipelines, PipelineStore) and pipelines.pipelines_dir == tmp_path / "pipelines" / "pipelines"
    assert pipelines.projects().projects_dir == tmp_path / "pipelines" / "projects"
