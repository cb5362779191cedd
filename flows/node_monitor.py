"""`node-monitor`: CPU, memory, network I/O and GPUs of the worker node it runs on, as a table artifact.

Seed 002, req. 1510-1520 (monitor each node's CPU, RAM, network, GPU). Deployed on the cpu pool every 5 minutes
(`node-monitor/node-monitor`; a site adds one per pool or node group); the artifact key names the node.
`opsflow nodes` prints the same table for the machine it runs on.
"""

from __future__ import annotations

import re

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from stage_pipeline.monitor import sample_node, snapshot_rows


def artifact_key(hostname: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only.

    >>> artifact_key("Node_01.cluster")
    'node-monitor-node-01-cluster'
    """
    return "node-monitor-" + re.sub(r"[^a-z0-9-]+", "-", hostname.lower()).strip("-")


@flow(name="node-monitor")
def node_monitor(interval_s: float = 1.0) -> dict[str, str | int | float]:
    """Sample this node for ``interval_s`` seconds; returns the table row (also logged and kept as an artifact)."""
    snap = sample_node(interval_s)
    (row,) = snapshot_rows([snap])
    if snap.gpu_note:
        get_run_logger().info("%s: no GPU: %s", snap.hostname, snap.gpu_note)
    get_run_logger().info("%s", row)
    title = f"Node monitor: {snap.hostname} (CPU, memory, network, GPUs)"
    create_table_artifact([row], key=artifact_key(snap.hostname), description=title)
    return row
