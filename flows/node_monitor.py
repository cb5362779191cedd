"""`node-monitor`: CPU, memory, network I/O and GPUs of every node, one table artifact for all of them.

Seed 002, req. 1510-1520 (the CPU, RAM and network I/O of all known nodes). A deployment cannot be placed on a
chosen worker, so this run samples no node itself: each node publishes its own sample under the store's root
(``opsflow nodes publish``; on the local stack the ``nodes`` component), and this run joins the published
samples with the workers of every work pool (:func:`stage_pipeline.node_table.node_rows`). A node whose sample is
stale or missing says so in its row. Deployed on the cpu pool every 5 minutes (``node-monitor/node-monitor``);
the artifact ``node-monitor`` keeps one version per run. `opsflow nodes` prints the same table.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from blocks import PipelineStore, load_block
from stage_pipeline.monitor import read_published
from stage_pipeline.node_table import Row, node_rows
from stage_pipeline.prefect_api import read_workers

#: The one artifact of the flow (each run adds a version; the UI shows the latest under Artifacts).
ARTIFACT_KEY = "node-monitor"


@flow(name="node-monitor")
def node_monitor(store_block: str = "local") -> list[Row]:
    """Join every node's published sample (under the ``store_block`` PipelineStore's root) with every worker of
    every pool; returns the rows (also logged and kept as the ``node-monitor`` table artifact)."""
    logger = get_run_logger()
    root = Path(load_block(PipelineStore, store_block).root)
    samples, problems = read_published(root)
    for problem in problems:
        logger.warning("%s", problem)
    rows = node_rows(samples, read_workers(), datetime.now(UTC))
    for row in rows:
        logger.info("%s: %s; %s", row["node"], row["pools"], row["sample"])
    if not samples:
        logger.warning("no node publishes a sample under %s: run `opsflow nodes publish` on each node", root)
    title = f"Node monitor: {len(rows)} node(s), CPU, memory, network, GPUs (samples under {root}/.nodes)"
    create_table_artifact(rows, key=ARTIFACT_KEY, description=title)
    return rows
