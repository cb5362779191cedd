"""The environment every process of the local stack (and a user's shell) gets to reach the stack.

``opsflow env`` prints it as ``export`` lines: ``eval "$(opsflow env)"`` then makes ``sinfo``, ``prefect``,
``spark-submit`` and the ``docker`` SDK talk to the local stack.

Example:
    >>> env = stack_env(StackConfig(home=Path("/tmp/s")))
    >>> env["PREFECT_API_URL"]
    'http://127.0.0.1:4200/api'
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel

from opsflow.adapters.spark import java_home
from opsflow.adapters.spark import spark_home as adapter_spark_home
from opsflow.files import atomic_write_text
from opsflow.stack.config import StackConfig


def spark_home() -> str:
    """The Spark distribution shipped inside the pyspark package: the stack runs its own, whatever SPARK_HOME says."""
    return adapter_spark_home({})


def api_auth_string(cfg: StackConfig) -> str:
    """The basic-auth ``user:password`` guarding the local Prefect API, created once (mode 0600).

    Without it anyone who reaches the API could read Block secrets with ``?include_secrets=true``.
    """
    path = cfg.home / "prefect" / "auth-string"
    if not path.exists():
        atomic_write_text(path, f"admin:{secrets.token_urlsafe(18)}", mode=0o600)
    return path.read_text().strip()


def stack_env(cfg: StackConfig) -> dict[str, str]:
    """Variables (on top of the caller's environment) that point every client at this stack."""
    env = {
        "OPSFLOW_HOME": str(cfg.home),
        "PREFECT_HOME": str(cfg.home / "prefect"),
        "PREFECT_API_URL": cfg.prefect_api_url,
        "PREFECT_API_AUTH_STRING": api_auth_string(cfg),
        "PREFECT_WORKER_QUERY_SECONDS": "0.25",  # a stage starts within a second of the previous one (issue 15)
        # Where `opsflow-engine` (the pipeline deployments' command) finds this node's warm engine.
        "OPSFLOW_WARM_SOCKET": str(cfg.warm_engine_socket),
        "SLURM_CONF": str(cfg.slurm_conf),
        "SPARK_HOME": spark_home(),
        # Drivers started from a flow or a shell get the stack's defaults (master, decommission, metrics).
        "SPARK_CONF_DIR": str(cfg.home / "spark" / "conf"),
        # The executors' Python workers then carry the stack's home in their command line (process exporter).
        "PYSPARK_PYTHON": str(cfg.pyspark_python),
        "DOCKER_HOST": cfg.docker_host,
        "CONTAINER_HOST": cfg.docker_host,  # `podman --remote` talks to the same service
        # Our own console scripts first, so slurmd's Epilog and workers find `opsflow`.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
    }
    jh = java_home()
    if jh:
        env["JAVA_HOME"] = jh
    return env


def child_env(cfg: StackConfig) -> dict[str, str]:
    """The full environment of a stack process: the caller's, minus stale Prefect settings, plus ours."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return {**base, **stack_env(cfg)}


@contextmanager
def prefect_client_settings(cfg: StackConfig) -> Iterator[None]:
    """Point this process's Prefect client at the stack's server for the duration of a ``with`` block."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    updates = {PREFECT_API_URL: cfg.prefect_api_url, PREFECT_API_AUTH_STRING: api_auth_string(cfg)}
    with temporary_settings(updates=updates):
        yield



class LocalEndpoints(BaseModel):
    """What a client needs to reach the local stack under one home: the only reader of its layout for the API."""

    home: Path
    prefect_api_url: str
    prefect_auth_string: str
    spark_master_url: str
    spark_master_ui_url: str
    prometheus_url: str
    docker_host: str
    slurm_conf: Path


def local_endpoints(home: Path | None = None) -> LocalEndpoints:
    """The endpoints of the local stack under ``home`` (default ``$OPSFLOW_HOME``), from its ``stack.json``.

    >>> local_endpoints(Path("/tmp/no-stack-here")).prefect_api_url
    'http://127.0.0.1:4200/api'
    """
    cfg = StackConfig.load(home)
    auth = cfg.home / "prefect" / "auth-string"
    return LocalEndpoints(
        home=cfg.home,
        prefect_api_url=cfg.prefect_api_url,
        prefect_auth_string=auth.read_text().strip() if auth.exists() else "",
        spark_master_url=cfg.spark_master_url,
        spark_master_ui_url=cfg.spark_master_ui_url,
        prometheus_url=cfg.prometheus_url,
        docker_host=cfg.docker_host,
        slurm_conf=cfg.slurm_conf,
    )
