"""This node's sample for the node monitor: `opsflow nodes publish` next to the workers (the process every node
of a site runs, here over the local stack's store root ``<home>/pipelines``).

Healthy once the publisher has written a sample since it started that is not stale (seed 002, req. 1510-1520).

Example:
    >>> from pathlib import Path
    >>> from opsflow.stack.config import StackConfig
    >>> NodePublisherComponent(StackConfig(home=Path("/srv/h")), {}).processes()[0].argv[2:]
    ['publish', '--interval', '10', '--root', '/srv/h/pipelines']
"""

from __future__ import annotations

import socket
import sys
from datetime import UTC, datetime
from pathlib import Path

from opsflow.stack.base import Component
from opsflow.stack.process import ProcessSpec, running_process
from stage_pipeline.node_table import NODES_DIR, PublishedSample, is_stale, sample_file_name

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class NodePublisherComponent(Component):
    """Publishes this machine's CPU, memory, network and GPUs to ``<home>/pipelines/.nodes/<hostname>.json``."""

    name = "nodes"
    start_timeout_s = 60.0

    @property
    def root(self) -> Path:
        return self.cfg.home / "pipelines"

    @property
    def sample_file(self) -> Path:
        """The file the publisher keeps fresh (the hostname is the one the workers' names carry)."""
        return self.root / NODES_DIR / sample_file_name(socket.gethostname())

    def processes(self) -> list[ProcessSpec]:
        argv = [
            str(Path(sys.executable).parent / "opsflow"), "nodes",
            "publish", "--interval", f"{self.cfg.node_sample_every_s:g}", "--root", str(self.root),
        ]  # fmt: skip
        return [ProcessSpec(key="node-publisher", argv=argv, cwd=PROJECT_ROOT, stop_grace_s=5.0)]

    def ports(self) -> list[int]:
        return []

    def healthy(self) -> bool:
        proc = running_process(self.cfg.home, "node-publisher")
        if proc is None:
            return False
        try:
            sample = PublishedSample.model_validate_json(self.sample_file.read_bytes())
        except (OSError, ValueError):
            return False
        now = datetime.now(UTC)
        return sample.snapshot.time.timestamp() >= proc.create_time() - 1.0 and not is_stale(sample, now)

    def detail(self) -> str:
        return f"every {self.cfg.node_sample_every_s:g} s to {self.sample_file}"
