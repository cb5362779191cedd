"""The Prometheus server holding the metrics the flows decide on."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field

from opsflow.adapters.prometheus import PrometheusAPI


class PrometheusServer(Block):
    """A Prometheus server reached through its HTTP API."""

    _block_type_name = "Prometheus Server"
    _block_type_slug = "opsflow-prometheus-server"
    _description = "A Prometheus server (HTTP API)."

    url: str = Field(default="http://127.0.0.1:9090", description="Base URL of the Prometheus HTTP API")

    def api(self) -> PrometheusAPI:
        """The query adapter for this server."""
        return PrometheusAPI(url=self.url)
