"""The node's warm engine (:mod:`warm_engine.zygote`) next to the local stack's workers.

The workers find it through ``OPSFLOW_WARM_SOCKET`` (in every stack process's environment); the pipeline
deployments' command ``opsflow-engine`` then forks a flow run from it instead of starting a cold interpreter
(issue 15). Healthy once it listens; without it, flow runs start cold as before.

Example:
    >>> from pathlib import Path
    >>> from opsflow.stack.config import StackConfig
    >>> WarmEngineComponent(StackConfig(home=Path("/srv/h")), {}).processes()[0].argv[1:]
    ['-m', 'warm_engine.zygote', '--socket', '/srv/h/run/warm-engine.sock']
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

from opsflow.stack.base import Component
from opsflow.stack.process import ProcessSpec

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class WarmEngineComponent(Component):
    """A pre-imported Prefect engine that forks one child per flow run of this node's workers."""

    name = "warm-engine"
    start_timeout_s = 120.0

    def processes(self) -> list[ProcessSpec]:
        argv = [sys.executable, "-m", "warm_engine.zygote", "--socket", str(self.cfg.warm_engine_socket)]
        # SIGTERM: it stops serving at once; the flow runs it forked go on under their launchers.
        return [ProcessSpec(key="warm-engine", argv=argv, cwd=PROJECT_ROOT, stop_grace_s=5.0)]

    def ports(self) -> list[int]:
        return []

    def healthy(self) -> bool:
        path = self.cfg.warm_engine_socket
        if not path.exists():
            return False
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))  # the zygote answers a request without fds with "cold" and goes on
            return True
        except OSError:
            return False
        finally:
            probe.close()

    def detail(self) -> str:
        return str(self.cfg.warm_engine_socket)
