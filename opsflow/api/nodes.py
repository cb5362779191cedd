"""Node monitoring from a notebook or a script: ``opsflow.connect().nodes`` (seed 002, req. 1510-1520).

Every node publishes its sample to ``<store root>/.nodes/<hostname>.json`` (:meth:`NodesAPI.publish`, the
process `opsflow nodes publish` runs on each node; the local stack's ``nodes`` component runs it next to the
workers); :meth:`NodesAPI.table` joins every published sample with the workers of every work pool, the same
table the ``node-monitor`` flow keeps as its artifact. The store root is the one of the pipelines
(``site.pipelines.root``: the ``PipelineStore`` Block on a site, ``<home>/pipelines`` on the local stack), or
``root=`` given.

Example (files only; no server runs at this address, so the table says the workers are unknown):
    >>> import tempfile
    >>> from opsflow.api import connect
    >>> root = Path(tempfile.mkdtemp())
    >>> nodes = connect(home=root, api_url="http://127.0.0.1:1/api").nodes.at(root)
    >>> nodes.publish(interval_s=0.01, hostname="node-a", rounds=1)
    1
    >>> table = nodes.table()
    >>> [(r["node"], r["pools"]) for r in table.rows], table.notes[0][:40]
    ([('node-a', 'no worker')], 'workers unknown: cannot reach the Prefec')
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from opsflow.errors import AdapterError
from stage_pipeline.node_table import NodeSnapshot, Row, WorkerView, node_rows

if TYPE_CHECKING:
    from opsflow.api import Site


class NodeTable(BaseModel):
    """One row per known node (:func:`stage_pipeline.node_table.node_rows`), and what could not be read."""

    rows: list[Row]
    notes: list[str] = Field(default_factory=list, description="Unreadable samples, an unreachable Prefect API")
    root: Path = Field(description="The store root whose .nodes folder was read")


class NodesAPI:
    """Every node's CPU, memory, network and GPUs (``site.nodes``)."""

    def __init__(self, site: Site, store_block: str | None = None, root: Path | None = None) -> None:
        self.site = site
        self._store_block = store_block
        self._root = root

    def __repr__(self) -> str:
        return f"<NodesAPI {self._root or 'store root'} of {self.site!r}>"

    def at(self, root: str | Path) -> NodesAPI:
        """The same site with the samples under ``root`` instead of the store's root."""
        return NodesAPI(self.site, self._store_block, Path(root))

    def using(self, store_block: str) -> NodesAPI:
        """The same site with the root of the PipelineStore Block ``store_block``."""
        return NodesAPI(self.site, store_block, self._root)

    @property
    def root(self) -> Path:
        """The store root the nodes publish under."""
        if self._root is not None:
            return self._root
        from opsflow.api.pipelines import PipelinesAPI

        return PipelinesAPI(self.site, self._store_block).root

    def publish(
        self,
        interval_s: float = 10.0,
        hostname: str | None = None,
        rounds: int | None = None,
        on_sample: Callable[[Path, NodeSnapshot], None] | None = None,
    ) -> int:
        """Sample this node every ``interval_s`` seconds into ``<root>/.nodes/<hostname>.json`` (``rounds``
        times; None: until the process is ended); returns the number of samples written."""
        from stage_pipeline.monitor import publish_loop

        return publish_loop(self.root, interval_s, hostname=hostname, rounds=rounds, on_sample=on_sample)

    def workers(self) -> list[WorkerView]:
        """Every worker of every work pool of the site's Prefect server."""
        import httpx

        with self.site.prefect():
            from stage_pipeline.prefect_api import read_workers

            try:
                return read_workers()
            except (httpx.ConnectError, httpx.TimeoutException) as exc:
                raise AdapterError(f"cannot reach the Prefect API at {self.site.api_url}: {exc}") from exc
            except httpx.HTTPStatusError as exc:  # a refused auth string (401), ...
                code = exc.response.status_code
                raise AdapterError(f"the Prefect API at {self.site.api_url} answered {code}") from exc

    def table(self, now: datetime | None = None) -> NodeTable:
        """The table of every node (the ``node-monitor`` artifact's); without a Prefect API, the published
        samples alone, with a note."""
        from stage_pipeline.monitor import read_published

        root = self.root
        samples, notes = read_published(root)
        try:
            workers = self.workers()
        except AdapterError as exc:
            workers = []
            notes.append(f"workers unknown: {exc}")
        return NodeTable(rows=node_rows(samples, workers, now or datetime.now(UTC)), notes=notes, root=root)

    def local(self, interval_s: float = 1.0) -> tuple[Row, str | None]:
        """This node alone, sampled now for ``interval_s`` seconds (no store, no server): its row and, for a
        node without GPUs, why."""
        from stage_pipeline.monitor import sample_node, snapshot_rows

        snap = sample_node(interval_s)
        (row,) = snapshot_rows([snap])
        return row, snap.gpu_note
