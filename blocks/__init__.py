"""Prefect Blocks: one form per external system, the only place a flow reads its configuration from.

Each Block that fronts a system has ``get_client()``, which returns that system's adapter (``opsflow.adapters``);
each passes Prefect's ``BlockStandardTestSuite`` (``tests/unit/test_block_standards.py``).

Example:
    >>> from blocks import SlurmCluster
    >>> SlurmCluster(shared_dir="/tmp").partition
    'batch'
    >>> sorted(b.get_block_type_slug() for b in ALL_BLOCKS)[:2]
    ['opsflow-docker-engine', 'opsflow-gitlab-project']
"""

from typing import TypeVar, cast

from prefect.blocks.core import Block

from blocks.docker import DockerEngine
from blocks.gitlab import GitLabProject
from blocks.node_update import NodeUpdateSettings
from blocks.pipeline_store import PipelineStore
from blocks.prometheus import PrometheusServer
from blocks.slurm import SlurmCluster
from blocks.spark import SparkCluster

ALL_BLOCKS = (
    SlurmCluster,
    SparkCluster,
    PrometheusServer,
    DockerEngine,
    NodeUpdateSettings,
    PipelineStore,
    GitLabProject,
)

B = TypeVar("B", bound=Block)


def load_block(cls: type[B], name: str) -> B:
    """``cls.load(name)`` from synchronous code, typed (Prefect's ``load`` is typed as maybe-a-coroutine)."""
    # _sync: stay synchronous where an event loop runs (a Jupyter kernel), which Prefect would answer with a coroutine
    return cast(B, cls.load(name, _sync=True))  # type: ignore[call-arg]


__all__ = [
    "ALL_BLOCKS",
    "DockerEngine",
    "GitLabProject",
    "NodeUpdateSettings",
    "PipelineStore",
    "PrometheusServer",
    "SlurmCluster",
    "SparkCluster",
    "load_block",
]
