"""Where the local stack lives and which ports it uses.

Everything of the stack (configs, data, logs, pid files) lives under one directory, ``OPSFLOW_HOME``
(default ``./.state``). The ports are fixed when the stack is first brought up and saved in
``<home>/stack.json`` so that ``status`` and ``down`` find the same stack later.

Example:
    >>> cfg = StackConfig(home=Path("/tmp/x"))
    >>> cfg.shifted(1000).prefect_port
    5200
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, Field

from opsflow.home import default_home


class StackConfig(BaseModel):
    """Ports and sizes of the local stack; every port is on 127.0.0.1."""

    home: Path = Field(description="Directory holding all state, configs and logs of the stack")
    prefect_port: int = Field(4200, description="Prefect server API and UI")
    slurmctld_port: int = Field(6817, description="slurmctld")
    slurmd_base_port: int = Field(6818, description="First slurmd port; node i listens on base + i")
    slurm_nodes: int = Field(8, ge=1, le=64, description="Number of Slurm nodes (nid001 ...)")
    spark_master_port: int = Field(7077, description="Spark standalone master RPC")
    spark_master_ui_port: int = Field(8080, description="Spark master web UI and Prometheus servlet")
    spark_worker_ui_base_port: int = Field(8081, description="First Spark worker UI port")
    spark_workers: int = Field(2, ge=0, le=32, description="Spark workers started by `up`")
    spark_worker_cores: int = Field(1, ge=1, description="Cores offered by each Spark worker")
    node_check_every_s: float = Field(
        60.0, gt=0, description="Seconds between two `opsflow nu check` rounds over every Slurm node (the seed's cron)"
    )
    node_sample_every_s: float = Field(
        10.0, gt=0, description="Seconds between two samples of this node published for the node monitor"
    )
    spark_worker_memory: str = Field("1g", description="Memory offered by each Spark worker")
    prometheus_port: int = Field(9090, description="Prometheus web/API")
    metrics_port: int = Field(9464, description="opsflow's own Prometheus metrics endpoint")
    process_exporter_port: int = Field(9256, description="prometheus-process-exporter")
    webhook_port: int = Field(8765, description="GitLab webhook receiver of CI training")
    gitlab_port: int = Field(8929, description="The stand-in GitLab API (commit statuses) of the local stack")
    files_port: int = Field(8766, description="The pipelines' file service (uploads, downloads, listings)")

    def shifted(self, offset: int) -> StackConfig:
        """The same stack with every port moved by ``offset`` (to run two stacks side by side)."""
        data = self.model_dump()
        for key in data:
            if key.endswith("_port"):
                data[key] += offset
        return StackConfig(**data)

    @property
    def file(self) -> Path:
        return self.home / "stack.json"

    def save(self) -> None:
        from opsflow.files import atomic_write_text

        atomic_write_text(self.file, self.model_dump_json(indent=2))

    @classmethod
    def load(cls, home: Path | None = None) -> StackConfig:
        """The saved config of the stack under ``home``, or the defaults when none was saved."""
        home = (home or default_home()).resolve()
        path = home / "stack.json"
        if path.exists():
            data = json.loads(path.read_text())
            data["home"] = str(home)
            return cls(**data)
        return cls(home=home)

    # Well-known locations under home, one place for all of them.
    def dir(self, *parts: str) -> Path:
        path = self.home.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def prefect_api_url(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}/api"

    @property
    def slurm_conf(self) -> Path:
        return self.home / "slurm" / "etc" / "slurm.conf"

    @property
    def spark_master_url(self) -> str:
        return f"spark://127.0.0.1:{self.spark_master_port}"

    @property
    def pyspark_python(self) -> Path:
        """PySpark's Python on this stack: a wrapper that marks its processes with the stack's home (see spark.py)."""
        return self.home / "spark" / "bin" / "pyspark-python"

    @property
    def spark_master_ui_url(self) -> str:
        return f"http://127.0.0.1:{self.spark_master_ui_port}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    @property
    def webhook_url(self) -> str:
        """What to paste into GitLab's webhook settings (Settings → Webhooks → URL)."""
        return f"http://127.0.0.1:{self.webhook_port}/hooks/gitlab"

    @property
    def files_url(self) -> str:
        return f"http://127.0.0.1:{self.files_port}"

    @property
    def warm_engine_socket(self) -> Path:
        """The unix socket of this node's warm engine (:mod:`warm_engine`)."""
        return self.home / "run" / "warm-engine.sock"

    @property
    def gitlab_url(self) -> str:
        return f"http://127.0.0.1:{self.gitlab_port}"

    @property
    def docker_socket(self) -> Path:
        return self.home / "podman" / "podman.sock"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.docker_socket}"
