"""Prefect Blocks: one form per external system, the only place a flow reads its configuration from.

Example:
    >>> from blocks import SlurmCluster
    >>> SlurmCluster(shared_dir="/tmp").partition
    'batch'
"""

from blocks.docker import DockerEngine
from blocks.prometheus import PrometheusServer
from blocks.slurm import SlurmCluster
from blocks.spark import SparkCluster

ALL_BLOCKS = (SlurmCluster, SparkCluster, PrometheusServer, DockerEngine)

__all__ = ["ALL_BLOCKS", "DockerEngine", "PrometheusServer", "SlurmCluster", "SparkCluster"]
