"""The pure parts of the local Slurm cluster: slurm.conf, the Epilog wrapper, health, and the CLI parsers.

The sample outputs were captured from slurm-wlm 22.05.8 (Debian bookworm) running the local stack.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from opsflow.adapters.slurm import (
    SlurmError,
    SlurmNode,
    parse_job,
    parse_job_id,
    parse_scontrol_record,
    parse_sinfo_nodes,
    parse_squeue,
)
from opsflow.stack.slurm import (
    SlurmLayout,
    all_healthy,
    node_healthy,
    node_names,
    render_epilog,
    render_slurm_conf,
    summarize,
)

LAYOUT = SlurmLayout(root=Path("/h/slurm"))

# sinfo --Node --noheader --Format='NodeList:0|,StateComplete:0|,Reason:0'
SINFO = """\
nid001|idle|none
nid002|idle|none
nid003|idle+drain|update pending | v2
nid004|allocated|none
nid005|idle+drain|a very long reason text that goes on and on beyond forty characters, really | x
nid006|down+not_responding|Not responding
nid007|idle+maintenance+reserved|none
nid008|idle+not_responding|none
"""
# Right after a slurmctld restart, before the slurmds registered (%t would show "unk" and "drain").
SINFO_RESTARTED = "nid001|unknown|none\nnid002|unknown+drain|test\n"

SQUEUE = """\
8|PENDING|N/A||my job|x
7|RUNNING|2026-11-23T12:05:04|nid[001-002]|wrap
"""

JOB_FAILED = (
    "JobId=2 JobName=wrap UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901758 Nice=0 Account=(null) "
    "QOS=(null) JobState=FAILED Reason=NonZeroExitCode Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 "
    "ExitCode=3:0 RunTime=00:00:00 TimeLimit=UNLIMITED TimeMin=N/A SubmitTime=2026-11-23T11:57:55 "
    "EligibleTime=2026-11-23T11:57:55 AccrueTime=2026-11-23T11:57:55 StartTime=2026-11-23T11:57:57 "
    "EndTime=2026-11-23T11:57:57 Deadline=N/A SuspendTime=None SecsPreSuspend=0 LastSchedEval=2026-11-23T11:57:57 "
    "Scheduler=Main Partition=batch AllocNode:Sid=localhost:4383 ReqNodeList=(null) ExcNodeList=(null) "
    "NodeList=nid[001-002] BatchHost=nid001 NumNodes=2 NumCPUs=2 NumTasks=2 CPUs/Task=1 ReqB:S:C:T=0:0:*:* "
    "TRES=cpu=2,node=2,billing=2 Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=* MinCPUsNode=1 MinMemoryNode=0 "
    "MinTmpDiskNode=0 Features=(null) DelayBoot=00:00:00 OverSubscribe=OK Contiguous=0 Licenses=(null) "
    "Network=(null) Command=(null) WorkDir=/work/main StdErr=/tmp/h-slurm/out2.txt StdIn=/dev/null "
    "StdOut=/tmp/h-slurm/out2.txt Power= \n"
)
JOB_PENDING = (
    "JobId=8 JobName=my job|x UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901752 Nice=0 "
    "Account=(null) QOS=(null) JobState=PENDING Reason=Resources Dependency=(null) Requeue=0 Restarts=0 BatchFlag=1 "
    "Reboot=0 ExitCode=0:0 RunTime=00:00:00 TimeLimit=UNLIMITED TimeMin=N/A SubmitTime=2026-11-23T12:05:03 "
    "StartTime=Unknown EndTime=Unknown Partition=batch NodeList= NumNodes=3-3 StdOut=/dev/null Power= \n"
)


def conf(nodes: int = 4) -> str:
    return render_slurm_conf(LAYOUT, nodes=nodes, ctld_port=26817, slurmd_base_port=26818)


def settings(text: str) -> dict[str, str]:
    """The single-word settings of a slurm.conf (NodeName/PartitionName lines left out)."""
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or line.startswith(("NodeName=", "PartitionName=")):
            continue
        key, _, value = line.partition("=")
        out[key] = value
    return out


def test_conf_nodes_share_one_line_with_a_port_each() -> None:
    lines = conf().splitlines()
    assert (
        "NodeName=nid[001-004] NodeAddr=127.0.0.1 NodeHostname=localhost Port=[26818-26821] CPUs=1 State=UNKNOWN"
        in (lines)
    )
    assert "PartitionName=batch Nodes=nid[001-004] Default=YES MaxTime=INFINITE State=UP" in lines


def test_conf_single_node_has_plain_port() -> None:
    assert "NodeName=nid001 NodeAddr=127.0.0.1 NodeHostname=localhost Port=26818 CPUs=1 State=UNKNOWN" in conf(1)


def test_conf_settings_keep_everything_under_home() -> None:
    s = settings(conf())
    assert s["ClusterName"] == "opsflow"
    assert s["SlurmctldHost"] == "localhost(127.0.0.1)"
    assert s["SlurmctldPort"] == "26817"
    assert s["AuthInfo"] == "socket=/h/slurm/munge/munge.socket"
    assert s["SlurmdSpoolDir"] == "/h/slurm/spool/%n"
    assert s["SlurmdPidFile"] == "/h/slurm/run/slurmd-%n.pid"
    assert s["SlurmdLogFile"] == "/h/slurm/log/slurmd-%n.log"
    assert s["Epilog"] == "/h/slurm/bin/epilog"
    paths = [v for k, v in s.items() if k.endswith(("Dir", "File", "Location", "Config"))]
    assert paths and all(p.startswith("/h/slurm/") for p in paths)


def test_conf_plugins_avoid_cgroups_and_accounting() -> None:
    s = settings(conf())
    assert s["ProctrackType"] == "proctrack/linuxproc"
    assert s["TaskPlugin"] == "task/none"
    assert s["SelectType"] == "select/cons_tres"
    assert s["AccountingStorageType"] == "accounting_storage/none"
    assert s["SlurmdParameters"] == "config_overrides"
    assert s["ReturnToService"] == "2"
    assert s["SlurmUser"] == "root"


def test_conf_is_pure() -> None:
    assert conf() == conf()


def test_node_names() -> None:
    assert node_names(10)[-1] == "nid010"


def test_epilog_sets_home_and_never_fails() -> None:
    script = render_epilog(Path("/v env/bin/opsflow"), Path("/h"), Path("/h/slurm/log/epilog.out"))
    assert script.startswith("#!/bin/sh\n")
    assert "export OPSFLOW_HOME=/h\n" in script
    assert "'/v env/bin/opsflow' stack epilog" in script  # quoted, not split at the blank
    assert script.rstrip().endswith("exit 0")


def test_parse_sinfo_nodes() -> None:
    nodes = {n.name: n for n in parse_sinfo_nodes(SINFO)}
    assert list(nodes) == node_names(8)
    assert nodes["nid001"] == SlurmNode(name="nid001", state="idle")
    assert nodes["nid003"].drained and nodes["nid003"].reason == "update pending | v2"
    assert nodes["nid005"].reason.endswith("really | x")
    assert nodes["nid006"].state == "down" and not nodes["nid006"].responding
    assert nodes["nid007"].flags == ["maintenance", "reserved"]
    assert nodes["nid008"].full_state == "idle+not_responding"


def test_parse_sinfo_lists_a_node_of_two_partitions_once() -> None:
    assert len(parse_sinfo_nodes("nid001|idle|none\nnid001|idle|none\n")) == 1


def test_health_of_each_node() -> None:
    healthy = {n.name for n in parse_sinfo_nodes(SINFO) if node_healthy(n)}
    assert healthy == {"nid001", "nid002", "nid003", "nid004", "nid005", "nid007"}
    assert not any(node_healthy(n) for n in parse_sinfo_nodes(SINFO_RESTARTED))


def test_health_needs_every_node_listed_and_healthy() -> None:
    names = node_names(4)
    up = [SlurmNode(name=n, state="idle") for n in names[:3]] + [SlurmNode(name="nid004", state="mixed")]
    assert all_healthy(up, names)
    assert not all_healthy(up[:3], names)  # one missing
    assert not all_healthy([*up[:3], SlurmNode(name="nid004", state="idle", flags=["not_responding"])], names)
    assert all_healthy([*up[:3], SlurmNode(name="nid004", state="idle", flags=["drain"], reason="x")], names)


def test_summarize() -> None:
    assert summarize([SlurmNode(name=n, state="idle") for n in node_names(8)]) == "8 nodes idle"
    assert summarize(parse_sinfo_nodes(SINFO_RESTARTED)) == "2 nodes: 1 unknown, 1 unknown+drain"


def test_parse_job_failed() -> None:
    job = parse_job(JOB_FAILED)
    assert (job.job_id, job.state, job.exit_code, job.signal) == (2, "FAILED", 3, 0)
    assert job.node_list == "nid[001-002]" and job.std_out == "/tmp/h-slurm/out2.txt"
    assert job.start_time == datetime(2026, 11, 23, 11, 57, 57)
    assert job.done and not job.ok


def test_parse_job_pending_with_blank_in_name() -> None:
    job = parse_job(JOB_PENDING)
    assert job.name == "my job|x" and job.state == "PENDING"
    assert job.node_list == "" and job.start_time is None and not job.done


def test_parse_scontrol_record_keeps_odd_keys() -> None:
    rec = parse_scontrol_record(JOB_FAILED)
    assert rec["AllocNode:Sid"] == "localhost:4383"
    assert rec["TRES"] == "cpu=2,node=2,billing=2"
    assert rec["Power"] == ""


def test_parse_job_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        parse_job("slurm_load_jobs error: Invalid job id specified")


def test_parse_squeue() -> None:
    pending, running = parse_squeue(SQUEUE)
    assert (pending.job_id, pending.state, pending.start_time, pending.name) == (8, "PENDING", None, "my job|x")
    assert running.start_time == datetime(2026, 11, 23, 12, 5, 4) and running.node_list == "nid[001-002]"


@pytest.mark.parametrize(("out", "expected"), [("9\n", 9), ("42;opsflow\n", 42), ("", None), ("oops", None)])
def test_parse_job_id(out: str, expected: int | None) -> None:
    assert parse_job_id(out) == expected


def test_slurm_error_names_command_and_stderr() -> None:
    err = SlurmError(["sbatch", "-p", "nope"], 1, "", "sbatch: error: invalid partition specified: nope\n")
    assert "`sbatch -p nope` exited 1" in str(err) and "invalid partition" in str(err)
