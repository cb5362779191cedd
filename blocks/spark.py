"""The Spark standalone cluster the flows submit to and scale.

Example:
    >>> SparkCluster(ui_url="http://spark-master:8080/").get_client().ui_url
    'http://spark-master:8080'
"""

from __future__ import annotations

import os

from prefect.blocks.core import Block
from pydantic import Field

from blocks._docs import readme_section
from opsflow.adapters.spark import JobResult, SparkMaster, run_sum_of_squares


class SparkCluster(Block):
    """A Spark standalone master: its RPC URL for jobs and its web UI for state (`/json/`).

    Examples:
        Load a saved cluster and count its alive workers:
        ```python
        from blocks import SparkCluster

        spark_cluster = SparkCluster.load("BLOCK_NAME")
        workers = spark_cluster.get_client().state().alive_workers
        ```
    """

    _block_type_name = "Spark Cluster"
    _block_type_slug = "opsflow-spark-cluster"
    _description = "A Spark standalone cluster (master URL and master web UI)."
    _documentation_url = readme_section("Pointing the same code at a site")

    master_url: str = Field(
        default="spark://127.0.0.1:7077",
        description="Master URL given to spark-submit.",
        examples=["spark://host:7077"],
    )
    ui_url: str = Field(
        default="http://127.0.0.1:8080",
        description="Master web UI (state JSON at /json/).",
        examples=["http://host:8080"],
    )
    spark_home: str | None = Field(
        default=None, description="Spark distribution (SPARK_HOME); empty for the one inside pyspark."
    )

    def get_client(self) -> SparkMaster:
        """The adapter reading the master's state (through its web UI)."""
        return SparkMaster(ui_url=self.ui_url)

    def run_sum_of_squares(self, n: int, partitions: int) -> JobResult:
        """Submit the small check job (spark-submit) to this cluster."""
        env = dict(os.environ)
        if self.spark_home:
            env["SPARK_HOME"] = self.spark_home
        return run_sum_of_squares(self.master_url, n, partitions, env=env)
