"""The pure parts of the Node Update Slurm adapter, on output captured from slurm-wlm 22.05.8 (Debian bookworm)
running the local stack's 4-node cluster, and the argument checks that refuse bad input before any command."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from node_update.models import SlurmNodeView
from node_update.slurm import (
    ApplyJob,
    NodeUpdateSlurm,
    apply_script,
    build_snapshot,
    export_option,
    node_state,
    parse_apply_jobs,
    parse_reservation,
    parse_sinfo,
)
from opsflow.adapters.slurm import SlurmCLI

# `sinfo --all --Node --noheader --Format=NodeList:0|,StateComplete:0`, reservation node_update = nid[001-003]
# (created with IGNORE_JOBS while user jobs ran on nid002 and nid003), nid004 busy and drained by an operator.
SINFO_RESERVED_BUSY = """\
nid001|idle+maintenance+reserved
nid002|allocated+maintenance+reserved
nid003|allocated+maintenance+reserved
nid004|allocated+drain
"""
# Right after `scancel` of those jobs: their epilogs run.
SINFO_COMPLETING = """\
nid001|idle+maintenance+reserved
nid002|idle+completing+maintenance+reserved
nid003|idle+completing+maintenance+reserved
nid004|idle+completing+drain
"""
# The drain done, a few seconds after `scontrol update nodename=nid004 state=resume` (slurmctld pings it).
SINFO_AFTER_RESUME = """\
nid001|idle+maintenance+reserved
nid002|idle+maintenance+reserved
nid003|idle+maintenance+reserved
nid004|idle+not_responding
"""
# Reservation nid[001,003]; apply job 14 runs on nid001, apply job 15 waits for user job 13 on nid003, user job 9
# runs on nid002 (outside the reservation).
SINFO_APPLYING = """\
nid001|allocated+maintenance+reserved
nid002|allocated
nid003|allocated+maintenance+reserved
nid004|idle
"""
SHOW_RESERVATION = (
    "ReservationName=node_update StartTime=2026-11-23T12:43:50 EndTime=2027-11-23T12:43:50 Duration=365-00:00:00 "
    "Nodes=nid[001,003] NodeCnt=2 CoreCnt=2 Features=(null) PartitionName=(null) Flags=MAINT,IGNORE_JOBS,SPEC_NODES "
    "TRES=cpu=2 Users=root Groups=(null) Accounts=(null) Licenses=(null) State=ACTIVE BurstBuffer=(null) Watts=n/a "
    "MaxStartDelay=(null)\n"
)
# `squeue --noheader --name=opsflow-nu-apply --states=RUNNING,PENDING,CONFIGURING,COMPLETING --format=%i|%T|%N|%n`
SQUEUE_APPLYING = "14|RUNNING|nid001|nid001\n15|PENDING||nid003\n"
# After `scancel 14`: nid001 reads idle+completing while its epilog runs.
SQUEUE_COMPLETING = "14|COMPLETING|nid001|nid001\n15|PENDING||nid003\n"
SINFO_APPLY_COMPLETING = """\
nid001|idle+completing+maintenance+reserved
nid002|allocated
nid003|allocated+maintenance+reserved
nid004|idle
"""
# A two-node apply job (job 8 of the capture session).
SQUEUE_TWO_NODES = "8|RUNNING|nid[001-002]|nid[001-002]\n"


def view(name: str, state: str, has_job: bool) -> SlurmNodeView:
    return SlurmNodeView(name=name, state=state, has_job=has_job)


def test_maintenance_and_reservation_flags_do_not_hide_the_base_state() -> None:
    assert parse_sinfo(SINFO_RESERVED_BUSY) == [
        view("nid001", "idle", False),
        view("nid002", "alloc", True),
        view("nid003", "alloc", True),
        view("nid004", "draining", True),
    ]


def test_completing_nodes_still_have_a_job() -> None:
    assert parse_sinfo(SINFO_COMPLETING) == [
        view("nid001", "idle", False),
        view("nid002", "idle", True),
        view("nid003", "idle", True),
        view("nid004", "draining", True),  # its epilog still runs
    ]


def test_unusable_flags_win_over_idle() -> None:
    assert parse_sinfo(SINFO_AFTER_RESUME)[3] == view("nid004", "not_responding", False)
    assert node_state("down+drain+not_responding") == ("down", False)
    assert node_state("mixed") == ("mix", True)
    assert node_state("idle+drain") == ("drained", False)
    assert node_state("allocated+fail") == ("failing", True)
    assert node_state("unknown") == ("unknown", False)


def test_node_in_two_partitions_is_listed_once() -> None:
    assert parse_sinfo("nid001|idle\nnid001|idle\n\nnid002|mixed\n") == [
        view("nid001", "idle", False),
        view("nid002", "mix", True),
    ]


def test_garbage_sinfo_line_names_the_line() -> None:
    with pytest.raises(ValueError, match="sinfo line 2"):
        parse_sinfo("nid001|idle\nslurm_load_partitions: Unable to contact slurm controller\n")


def test_reservation_nodes_are_expanded() -> None:
    assert parse_reservation(SHOW_RESERVATION, "node_update") == ["nid001", "nid003"]


def test_absent_reservation_is_none() -> None:
    assert parse_reservation(None, "node_update") is None
    assert parse_reservation("Reservation node_update not found\n", "node_update") is None
    assert parse_reservation(SHOW_RESERVATION, "other") is None


def test_bad_reservation_hostlist_is_reported() -> None:
    with pytest.raises(ValueError, match="unparsable hostlist"):
        parse_reservation("ReservationName=node_update Nodes=nid[001 NodeCnt=1", "node_update")


def test_apply_jobs_running_use_allocated_nodes_pending_use_requested() -> None:
    assert parse_apply_jobs(SQUEUE_APPLYING) == [
        ApplyJob(job_id=14, state="RUNNING", nodes=["nid001"]),
        ApplyJob(job_id=15, state="PENDING", nodes=["nid003"]),
    ]
    assert parse_apply_jobs(SQUEUE_TWO_NODES)[0].nodes == ["nid001", "nid002"]
    assert parse_apply_jobs("") == []


def test_garbage_squeue_line_names_the_line() -> None:
    with pytest.raises(ValueError, match="squeue line 1"):
        parse_apply_jobs("JOBID|STATE\n")


def test_snapshot_masks_only_our_running_apply_job() -> None:
    snap = build_snapshot(SINFO_APPLYING, parse_reservation(SHOW_RESERVATION, "node_update"), SQUEUE_APPLYING)
    assert snap.nodes == [
        view("nid001", "alloc", False),  # only our apply job runs there
        view("nid002", "alloc", True),
        view("nid003", "alloc", True),  # our apply job waits there for a user job: that job counts
        view("nid004", "idle", False),
    ]
    assert snap.reservation == ["nid001", "nid003"]
    assert snap.applying == ["nid001", "nid003"]


def test_snapshot_masks_our_completing_apply_job() -> None:
    snap = build_snapshot(SINFO_APPLY_COMPLETING, ["nid001", "nid003"], SQUEUE_COMPLETING)
    assert snap.nodes[0] == view("nid001", "idle", False)
    assert snap.applying == ["nid001", "nid003"]


def test_snapshot_without_reservation_or_jobs() -> None:
    snap = build_snapshot("nid001|idle\nnid002|allocated\n", None, "")
    assert snap.reservation is None
    assert snap.applying == []
    assert [n.has_job for n in snap.nodes] == [False, True]


def test_apply_script_quotes_every_element() -> None:
    command = ["/opt/venv/bin/opsflow", "nu", "apply", "--note", "it's $HOME; rm -rf /"]
    script = apply_script(command)
    assert script.startswith("#!/bin/sh\n")
    last = script.splitlines()[-1]
    assert shlex.split(last) == ["exec", "srun", "--ntasks-per-node=1", "--kill-on-bad-exit=0", *command]


def test_apply_script_refuses_an_empty_command() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        apply_script([])
    with pytest.raises(ValueError, match="non-empty"):
        apply_script(["opsflow", ""])


def test_export_option() -> None:
    assert export_option({}) == "--export=ALL"
    assert export_option({"B": "2", "A": "x=y z"}) == "--export=ALL,A=x=y z,B=2"
    with pytest.raises(ValueError, match="comma"):
        export_option({"A": "a,b"})
    with pytest.raises(ValueError, match="invalid variable name"):
        export_option({"A-B": "1"})


def test_bad_input_runs_no_command(tmp_path: Path) -> None:
    # A SlurmCLI whose commands do not exist: any command run would raise SlurmError, not ValueError.
    slurm = NodeUpdateSlurm(SlurmCLI(bin_dir=tmp_path / "no-slurm"))
    with pytest.raises(ValueError, match="invalid node name"):
        slurm.set_reservation("node_update", ["nid001", "nid[002-003]"], None)
    with pytest.raises(ValueError, match="invalid reservation name"):
        slurm.set_reservation("node_update Nodes=nid001", ["nid001"], None)
    with pytest.raises(ValueError, match="invalid reservation name"):
        slurm.snapshot("a b")
    with pytest.raises(ValueError, match="no nodes"):
        slurm.start_apply("t", [], reservation="r", command=["true"], env={}, output_dir=tmp_path)
    with pytest.raises(ValueError, match="invalid node name"):
        slurm.start_apply("t", ["nid001,nid002"], reservation="r", command=["true"], env={}, output_dir=tmp_path)
    with pytest.raises(ValueError, match="comma"):
        slurm.start_apply("t", ["nid001"], reservation="r", command=["true"], env={"A": "1,2"}, output_dir=tmp_path)
    with pytest.raises(ValueError, match="'%'"):
        slurm.start_apply("t", ["nid001"], reservation="r", command=["true"], env={}, output_dir=tmp_path / "%j")
    assert slurm.commands_run == 0
    assert not (tmp_path / "%j").exists()


def test_unchanged_reservation_runs_no_command(tmp_path: Path) -> None:
    slurm = NodeUpdateSlurm(SlurmCLI(bin_dir=tmp_path / "no-slurm"))
    slurm.set_reservation("node_update", ["nid003", "nid001"], ["nid001", "nid003"])
    slurm.set_reservation("node_update", None, None)
    slurm.set_reservation("node_update", [], None)
    assert slurm.commands_run == 0
