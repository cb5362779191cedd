"""The local Slurm cluster for real: munged, slurmctld and 4 slurmd on 127.0.0.1, driven through SlurmCLI."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsflow.adapters.slurm import SlurmCLI, SlurmError
from opsflow.stack.config import StackConfig
from opsflow.stack.env import child_env
from opsflow.stack.process import stack_processes
from opsflow.stack.slurm import SlurmComponent, job_processes, node_names
from tests.support import start_or_unavailable, wait_until

pytestmark = pytest.mark.stack

NODES = 4  # enough for multi-node jobs and a busy node beside idle ones; starts in about a second
PORT_OFFSET = 20000


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmComponent]:
    home = tmp_path_factory.mktemp("slurm")
    cfg = StackConfig(home=home, slurm_nodes=NODES).shifted(PORT_OFFSET)
    comp = SlurmComponent(cfg, child_env(cfg))
    start_or_unavailable(comp)
    try:
        yield comp
    finally:
        comp.stop()


@pytest.fixture(scope="module")
def cli(slurm: SlurmComponent) -> SlurmCLI:
    return SlurmCLI(conf=slurm.cfg.slurm_conf)


def test_all_nodes_idle(slurm: SlurmComponent, cli: SlurmCLI) -> None:
    nodes = cli.nodes()
    assert [n.name for n in nodes] == node_names(NODES)
    assert all(n.full_state == "idle" and n.responding for n in nodes)
    status = slurm.status()
    assert status.state == "up"
    assert status.detail == f"{NODES} nodes idle"
    assert status.url == f"slurm://127.0.0.1:{slurm.cfg.slurmctld_port}"


def test_munge_key_is_private(slurm: SlurmComponent) -> None:
    assert slurm.layout.munge_key.stat().st_mode & 0o777 == 0o600
    assert slurm.layout.munge_socket.is_socket()


def test_two_node_job_runs_and_epilog_records_it(slurm: SlurmComponent, cli: SlurmCLI, tmp_path: Path) -> None:
    out = tmp_path / "job.out"
    job = cli.submit("hostname; echo $SLURMD_NODENAME\n", nodes=2, output=out, job_name="two-nodes")
    assert job.ok, job
    assert job.node_list == "nid[001-002]"
    lines = out.read_text().split()
    assert lines[0] == socket.gethostname()
    assert lines[1] == "nid001"  # the batch script runs on the first node of the allocation

    epilog_log = slurm.layout.epilog_log

    def both_nodes_logged() -> bool:
        text = epilog_log.read_text() if epilog_log.exists() else ""
        return all(f"job={job.job_id} node={n}" in text for n in ("nid001", "nid002"))

    assert wait_until(both_nodes_logged), epilog_log.read_text() if epilog_log.exists() else "no epilog.log"


def test_failed_job_is_returned_not_raised(cli: SlurmCLI, tmp_path: Path) -> None:
    job = cli.submit("exit 3", output=tmp_path / "fail.out")
    assert (job.state, job.exit_code, job.ok) == ("FAILED", 3, False)
    assert cli.job(job.job_id).exit_code == 3


def test_bad_submission_raises_with_stderr(cli: SlurmCLI, tmp_path: Path) -> None:
    with pytest.raises(SlurmError, match="invalid partition"):
        cli.submit("true", partition="nope", output=tmp_path / "x.out")


def test_restart_keeps_nodes_healthy_and_ends_killed_jobs(slurm: SlurmComponent, cli: SlurmCLI, tmp_path: Path) -> None:
    running = cli.submit("sleep 300", output=tmp_path / "sleep.out", wait=False, job_name="cut-by-stop")
    assert wait_until(lambda: all(job_processes(slurm.layout.spool, slurm.cfg.slurm_conf)))

    assert slurm.stop()
    assert stack_processes(slurm.cfg.home) == []
    assert job_processes(slurm.layout.spool, slurm.cfg.slurm_conf) == ([], [])
    assert slurm.status().state == "down"

    assert slurm.start()
    assert slurm.healthy()
    assert cli.job(running.job_id).state in ("CANCELLED", "COMPLETING")
    assert wait_until(lambda: all(n.full_state == "idle" for n in cli.nodes()))

    assert slurm.stop()
    assert slurm.start()
    assert slurm.status().detail == f"{NODES} nodes idle"
    assert slurm.start() is False  # already up: nothing to do
