"""The Prometheus server holding the metrics the flows decide on.

Example:
    >>> PrometheusServer(url="http://prometheus:9090/").get_client().url
    'http://prometheus:9090'
"""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field

from blocks._docs import readme_section
from opsflow.adapters.prometheus import PrometheusAPI


class PrometheusServer(Block):
    """A Prometheus server reached through its HTTP API.

    Examples:
        Load a saved server and run an instant query:
        ```python
        from blocks import PrometheusServer

        prometheus_server = PrometheusServer.load("BLOCK_NAME")
        samples = prometheus_server.get_client().query('up{job="spark-master"}')
        ```
    """

    _block_type_name = "Prometheus Server"
    _block_type_slug = "opsflow-prometheus-server"
    _description = "A Prometheus server (HTTP API)."
    _documentation_url = readme_section("Pointing the same code at a site")

    url: str = Field(
        default="http://127.0.0.1:9090",
        description="Base URL of the Prometheus HTTP API.",
        examples=["http://host:9090"],
    )

    def get_client(self) -> PrometheusAPI:
        """The query adapter for this server."""
        return PrometheusAPI(url=self.url)
