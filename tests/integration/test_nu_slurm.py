"""The Node Update Slurm adapter against a real 4-node cluster (munged, slurmctld, 4 slurmd on 127.0.0.1).

What it shows on slurm-wlm 22.05: a snapshot is 3 commands whatever the cluster holds; a MAINT,IGNORE_JOBS
reservation can be created on, and extended over, nodes whose jobs keep running; user jobs without
``--reservation`` never start on reserved nodes; one ``sbatch`` runs the apply command once on every node.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from node_update.models import ClusterSnapshot
from node_update.slurm import APPLY_JOB_NAME, NodeUpdateSlurm
from opsflow.adapters.slurm import SlurmCLI, SlurmError, parse_job_id, parse_scontrol_record
from opsflow.stack.config import StackConfig
from opsflow.stack.env import child_env
from opsflow.stack.process import stack_processes
from opsflow.stack.slurm import SlurmComponent, job_processes, node_names
from tests.support import start_or_unavailable, wait_until

pytestmark = pytest.mark.stack

NODES = 4
PORT_OFFSET = 24500
RES = "node_update"
#: Appends the job id to OUT_DIR/<node>, then waits (bounded) until OUT_DIR/release exists.
RECORD_AND_WAIT = """\
import os, pathlib, time
out = pathlib.Path(os.environ["OUT_DIR"])
with (out / os.environ["SLURMD_NODENAME"]).open("a") as f:
    f.write(os.environ["SLURM_JOB_ID"] + "\\n")
deadline = time.monotonic() + 120
while not (out / "release").exists() and time.monotonic() < deadline:
    time.sleep(0.2)
"""


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmComponent]:
    home = tmp_path_factory.mktemp("nu-slurm")
    cfg = StackConfig(home=home, slurm_nodes=NODES).shifted(PORT_OFFSET)
    comp = SlurmComponent(cfg, child_env(cfg))
    start_or_unavailable(comp)
    try:
        yield comp
    finally:
        comp.stop()
        assert stack_processes(home) == []
        assert job_processes(comp.layout.spool, cfg.slurm_conf) == ([], [])


@pytest.fixture(scope="module")
def cli(slurm: SlurmComponent) -> SlurmCLI:
    return SlurmCLI(conf=slurm.cfg.slurm_conf)


@pytest.fixture
def nu(cli: SlurmCLI) -> Iterator[NodeUpdateSlurm]:
    """A fresh adapter; afterwards every job is cancelled, the reservation deleted and all nodes idle again."""
    yield NodeUpdateSlurm(cli)
    cli.cancel(j.job_id for j in cli.jobs())
    with contextlib.suppress(SlurmError):  # there may be none
        cli.run(["scontrol", "delete", f"ReservationName={RES}"])
    assert wait_until(lambda: all(n.full_state == "idle" for n in cli.nodes()), timeout_s=60)


def snapshot(nu: NodeUpdateSlurm) -> ClusterSnapshot:
    """A snapshot, checking it took exactly 4 Slurm commands."""
    before = nu.commands_run
    snap = nu.snapshot(RES)
    assert nu.commands_run - before == 4
    return snap


def busy(snap: ClusterSnapshot) -> list[str]:
    return [n.name for n in snap.nodes if n.has_job]


def user_job(cli: SlurmCLI, *options: str, command: str = "sleep 300") -> int:
    """A user's job (no reservation), submitted the way a user would."""
    out = cli.run(["sbatch", "--parsable", "--job-name=user", "--output=/dev/null", *options, f"--wrap={command}"])
    job_id = parse_job_id(out)
    assert job_id is not None, out
    return job_id


def job_record(cli: SlurmCLI, job_id: int) -> dict[str, str]:
    return parse_scontrol_record(cli.run(["scontrol", "show", "job", str(job_id), "--oneliner"]))


def running(cli: SlurmCLI, job_id: int) -> bool:
    return wait_until(lambda: cli.job(job_id).state == "RUNNING")


def test_idle_cluster(nu: NodeUpdateSlurm) -> None:
    snap = snapshot(nu)
    assert [n.name for n in snap.nodes] == node_names(NODES)
    assert all(n.state == "idle" and not n.has_job for n in snap.nodes)
    assert snap.reservation is None  # "Reservation node_update not found", exit 1
    assert snap.applying == []


def test_user_job_marks_its_node_only(nu: NodeUpdateSlurm, cli: SlurmCLI) -> None:
    job = user_job(cli, "--nodelist=nid002")
    assert running(cli, job)
    snap = snapshot(nu)
    assert busy(snap) == ["nid002"]
    assert [n.state for n in snap.nodes] == ["idle", "alloc", "idle", "idle"]


def test_reservation_create_update_delete_one_command_each(nu: NodeUpdateSlurm) -> None:
    nu.set_reservation(RES, ["nid003", "nid001"], None)
    assert nu.commands_run == 1
    snap = snapshot(nu)
    assert snap.reservation == ["nid001", "nid003"]
    assert [n.state for n in snap.nodes] == ["idle"] * NODES  # maintenance+reserved flags are not states
    assert busy(snap) == []

    nu.set_reservation(RES, ["nid001"], snap.reservation)
    assert nu.commands_run == 6
    snap = snapshot(nu)
    assert snap.reservation == ["nid001"]

    nu.set_reservation(RES, ["nid001"], snap.reservation)  # unchanged
    assert nu.commands_run == 10

    nu.set_reservation(RES, None, snap.reservation)
    assert nu.commands_run == 11
    assert snapshot(nu).reservation is None


def test_create_on_existing_reservation_fails_loudly(nu: NodeUpdateSlurm) -> None:
    nu.set_reservation(RES, ["nid001"], None)
    with pytest.raises(SlurmError, match="Duplicate reservation name"):
        nu.set_reservation(RES, ["nid002"], None)  # a stale `current`: the next tick's snapshot repairs it
    assert snapshot(nu).reservation == ["nid001"]


def test_reservation_takes_busy_nodes_and_keeps_user_jobs_out(nu: NodeUpdateSlurm, cli: SlurmCLI) -> None:
    on2, on3 = user_job(cli, "--nodelist=nid002"), user_job(cli, "--nodelist=nid003")
    assert running(cli, on2) and running(cli, on3)

    nu.set_reservation(RES, ["nid001", "nid002"], None)  # IGNORE_JOBS: created over a running job
    nu.set_reservation(RES, ["nid001", "nid002", "nid003"], ["nid001", "nid002"])  # and extended over another
    snap = snapshot(nu)
    assert snap.reservation == ["nid001", "nid002", "nid003"]
    assert busy(snap) == ["nid002", "nid003"]
    assert cli.job(on2).state == cli.job(on3).state == "RUNNING"  # the jobs were left alone

    # MAINT: a user job without --reservation takes the one free unreserved node ...
    first = user_job(cli)
    assert running(cli, first)
    assert cli.job(first).node_list == "nid004"
    # ... and the next one waits, although nid001 is idle (reserved).
    second = user_job(cli)
    assert wait_until(lambda: job_record(cli, second).get("Reason", "None") != "None")
    record = job_record(cli, second)
    assert record["JobState"] == "PENDING", record
    assert snapshot(nu).nodes[0].has_job is False


def test_apply_runs_once_per_node_inside_the_reservation(nu: NodeUpdateSlurm, cli: SlurmCLI, tmp_path: Path) -> None:
    out, logs = tmp_path / "out", tmp_path / "logs"
    out.mkdir()
    nu.set_reservation(RES, ["nid001", "nid003"], None)
    command = [sys.executable, "-c", RECORD_AND_WAIT]
    job_id = nu.start_apply(
        "tick 1", ["nid003", "nid001"], reservation=RES, command=command, env={"OUT_DIR": str(out)}, output_dir=logs
    )
    assert nu.commands_run == 2  # one reservation create, one sbatch

    assert wait_until(lambda: sorted(p.name for p in out.iterdir()) == ["nid001", "nid003"])
    snap = snapshot(nu)
    assert snap.applying == ["nid001", "nid003"]
    assert busy(snap) == []  # our apply job is no user job
    record = job_record(cli, job_id)
    assert (record["JobName"], record["Reservation"], record["Comment"]) == (APPLY_JOB_NAME, RES, "tick 1")

    # Meanwhile a user job without --reservation lands on the unreserved nodes only.
    user = user_job(cli, "--nodes=2", command="true")
    assert wait_until(lambda: cli.job(user).done)
    assert cli.job(user).node_list == "nid[002,004]"

    (out / "release").touch()
    job = cli.wait(job_id, timeout=60)
    assert job.ok, job
    assert {p.name: p.read_text() for p in out.iterdir() if p.name != "release"} == {
        "nid001": f"{job_id}\n",
        "nid003": f"{job_id}\n",
    }
    assert (logs / f"apply-{job_id}.out").exists()
    assert snapshot(nu).applying == []


def test_pending_apply_waits_for_the_user_job_it_shares_a_node_with(
    nu: NodeUpdateSlurm, cli: SlurmCLI, tmp_path: Path
) -> None:
    # A user job started on nid002 before the reservation took it (IGNORE_JOBS): the apply job must wait.
    user = user_job(cli, "--nodelist=nid002")
    assert running(cli, user)
    nu.set_reservation(RES, ["nid002"], None)
    out = tmp_path / "out"
    out.mkdir()
    (out / "release").touch()
    job_id = nu.start_apply(
        "tick 2",
        ["nid002"],
        reservation=RES,
        command=[sys.executable, "-c", RECORD_AND_WAIT],
        env={"OUT_DIR": str(out)},
        output_dir=tmp_path / "logs",
    )
    assert wait_until(lambda: job_record(cli, job_id).get("Reason", "None") != "None")
    assert cli.job(job_id).state == "PENDING"
    snap = snapshot(nu)
    assert snap.applying == ["nid002"]
    assert busy(snap) == ["nid002"]  # the user job still counts

    cli.cancel([user])
    assert cli.wait(job_id, timeout=60).ok
    assert (out / "nid002").read_text() == f"{job_id}\n"


def test_a_failing_node_does_not_stop_the_others(nu: NodeUpdateSlurm, cli: SlurmCLI, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "release").touch()
    fail_on_nid001 = "import os, sys\nif os.environ['SLURMD_NODENAME'] == 'nid001':\n    sys.exit(3)\n"
    nu.set_reservation(RES, ["nid001", "nid002", "nid003", "nid004"], None)
    job_id = nu.start_apply(
        "tick 3",
        node_names(NODES),
        reservation=RES,
        command=[sys.executable, "-c", fail_on_nid001 + RECORD_AND_WAIT],
        env={"OUT_DIR": str(out)},
        output_dir=tmp_path / "logs",
    )
    job = cli.wait(job_id, timeout=60)
    assert (job.state, job.exit_code) == ("FAILED", 3)
    assert sorted(p.name for p in out.iterdir()) == ["nid002", "nid003", "nid004", "release"]
