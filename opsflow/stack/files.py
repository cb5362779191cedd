"""The pipelines' file service on the local stack (:mod:`stage_pipeline.file_service` over the store's root).

It takes the same credentials as the stack's Prefect API (``PREFECT_API_AUTH_STRING``, in the environment of every
stack process): the browser's login prompt and ``opsflow files`` use the one password.

Example:
    >>> from pathlib import Path
    >>> from opsflow.stack.config import StackConfig
    >>> FileServiceComponent(StackConfig(home=Path("/srv/h")), {}).processes()[0].argv[-4:]
    ['--port', '8766', '--root', '/srv/h/pipelines']
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from opsflow.stack.base import Component
from opsflow.stack.process import ProcessSpec

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class FileServiceComponent(Component):
    """Uploads (tus), ranged downloads, archives and listings of ``<home>/pipelines``."""

    name = "files"
    start_timeout_s = 60.0

    def processes(self) -> list[ProcessSpec]:
        argv = [
            sys.executable, "-m", "stage_pipeline.file_service",
            "--host", "127.0.0.1", "--port", str(self.cfg.files_port), "--root", str(self.cfg.home / "pipelines"),
        ]  # fmt: skip
        return [ProcessSpec(key="file-service", argv=argv, cwd=PROJECT_ROOT, stop_grace_s=5.0)]

    def ports(self) -> list[int]:
        return [self.cfg.files_port]

    def url(self) -> str:
        return self.cfg.files_url

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.cfg.files_url}/healthz", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False
