"""The Slurm adapter of the Node Update service: a constant number of Slurm commands per tick, whatever the size.

The seed's Orchestrator protects slurmctld by aggregation (section VI.F); here that is a fixed budget:

- :meth:`NodeUpdateSlurm.snapshot`: exactly 4 commands (one ``sinfo`` for all nodes, one ``scontrol show
  reservation``, one ``squeue`` for our apply jobs, one ``squeue`` for the end times of all running jobs);
- :meth:`NodeUpdateSlurm.set_reservation`: at most 1 (create, update or delete the single reservation, F9);
- :meth:`NodeUpdateSlurm.start_apply`: exactly 1 ``sbatch`` for all nodes that start this tick.

Every command goes through :class:`opsflow.adapters.slurm.SlurmCLI` (argument lists, SLURM_CONF, SlurmError) and
is counted in ``commands_run``. Node names only ever travel as argument-list elements and as hostlists in
``--nodelist=`` / ``Nodes=``; the batch script is built from constants and ``shlex.quote`` of the command.

Output formats, as slurm-wlm 22.05.8 prints them (captured on the local stack; see the unit tests):

- ``sinfo --all --Node --noheader --Format=NodeList:0|,StateComplete:0`` → ``nid001|idle+maintenance+reserved``.
  StateComplete is the base state plus every flag: ``allocated+maintenance+reserved``,
  ``idle+completing+maintenance+reserved``, ``allocated+drain``, ``idle+not_responding``. (The compact ``%t``
  / ``StateLong`` print ``maint`` for an idle node of a MAINT reservation and hide its base state: not used.)
- ``scontrol show reservation <name> --oneliner`` → ``ReservationName=node_update StartTime=... Nodes=nid[001,003]
  NodeCnt=2 ... Flags=MAINT,IGNORE_JOBS,SPEC_NODES ...``; an absent one prints ``Reservation <name> not found``
  on stdout and exits 1. ``Duration=infinite`` is stored as 365 days.
- ``squeue --noheader --name=<job> --states=... --format=%i|%T|%N|%n`` → ``14|RUNNING|nid001|nid001``,
  ``15|PENDING||nid003`` (a pending job has no ``%N`` yet; ``%n`` is its requested ``--nodelist``),
  ``14|COMPLETING|nid001|nid001``.
- ``squeue --noheader --states=RUNNING,CONFIGURING,COMPLETING --format=%N|%e`` → ``nid[001-002]|2026-12-03T14:05:00``
  (the expected end: start + time limit, local time, ISO, so it sorts as a string; ``Unknown`` or ``N/A`` without
  a limit).

Example:
    >>> snap = build_snapshot("nid001|allocated\\nnid002|idle\\n", None, "7|RUNNING|nid001|nid001\\n")
    >>> [(n.name, n.has_job) for n in snap.nodes], snap.applying
    ([('nid001', False), ('nid002', False)], ['nid001'])
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import hostlist
from pydantic import BaseModel, Field

from node_update.models import ClusterSnapshot, SlurmNodeView
from opsflow.adapters.slurm import SlurmCLI, SlurmError, parse_job_id, parse_scontrol_record

#: Job name of the apply jobs; the snapshot finds them by it.
APPLY_JOB_NAME = "opsflow-nu-apply"
#: sinfo: node name and full state (base+flags); the name comes first, the state holds no ``|``.
SINFO_FORMAT = "NodeList:0|,StateComplete:0"
#: squeue: id, long state, allocated nodes (empty while pending), requested ``--nodelist``.
SQUEUE_FORMAT = "%i|%T|%N|%n"
#: squeue of all running jobs: nodes, expected end.
ENDS_FORMAT = "%N|%e"
ENDS_STATES = ("RUNNING", "CONFIGURING", "COMPLETING")
#: States of an apply job that still holds (or is about to hold) its nodes.
APPLY_JOB_STATES = ("RUNNING", "PENDING", "CONFIGURING", "COMPLETING")
#: Flags of a new reservation: MAINT keeps user jobs off its nodes (and lets it overlap other reservations),
#: IGNORE_JOBS lets it take a node whose job still runs (the job is left alone).
RESERVATION_FLAGS = "MAINT,IGNORE_JOBS"
#: Base states (sinfo StateComplete) of a node on which some job runs.
BUSY_BASE_STATES = frozenset({"allocated", "mixed"})
#: Flags that make a node unusable, in the order they win, and the state name reported for them (the planner's
#: UNUSABLE_STATES). ``drain`` and ``fail`` read ``drained``/``fail`` on an idle node, ``draining``/``failing`` on a
#: busy one, as ``scontrol`` names them.
UNUSABLE_FLAGS = (
    ("fail", "fail", "failing"),
    ("drain", "drained", "draining"),
    ("not_responding", "not_responding", "not_responding"),
    ("invalid_reg", "inval", "inval"),
    ("powered_down", "powered_down", "powered_down"),
    ("powering_down", "powering_down", "powering_down"),
    ("powering_up", "powering_up", "powering_up"),
    ("reboot_issued", "reboot_issued", "reboot_issued"),
    ("reboot_requested", "reboot", "reboot"),
)
#: Short names of the base states, as ``sinfo %t`` prints them.
SHORT_STATE = {"allocated": "alloc", "mixed": "mix"}
#: A node, reservation or job name that needs no quoting anywhere: never a hostlist, never ``Key=Value``.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ApplyJob(BaseModel):
    """One apply job from ``squeue``: ``nodes`` are those it runs on, or (pending) those it asked for."""

    job_id: int
    state: str
    nodes: list[str] = Field(default_factory=list)

    @property
    def holds_nodes(self) -> bool:
        """Running, configuring or completing: it is (or was until now) the job on its nodes."""
        return self.state != "PENDING"


def _check_name(value: str, what: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(f"invalid {what} {value!r}: use letters, digits, '_', '.', '-' (no hostlist syntax)")
    return value


def _hostlist(nodes: Iterable[str]) -> str:
    names = sorted({_check_name(n, "node name") for n in nodes})
    return str(hostlist.collect_hostlist(names))


def _expand(text: str, where: str) -> list[str]:
    if text in ("", "(null)"):
        return []
    try:
        return [str(n) for n in hostlist.expand_hostlist(text)]
    except hostlist.BadHostlist as exc:
        raise ValueError(f"{where}: unparsable hostlist {text!r}: {exc}") from exc


@functools.lru_cache(maxsize=1024)  # a cluster shows a handful of distinct strings; 10,000 lines a tick
def node_state(full: str) -> tuple[str, bool]:
    """(state for the planner, a job runs) from sinfo's StateComplete (``base+flag+flag``).

    The state is the short base state (``idle``, ``alloc``, ``mix``, ``down``, ``unknown``, ...) unless a flag
    makes the node unusable (``drained``, ``draining``, ``not_responding``, ...); MAINT/reservation flags are
    ignored. A job runs on ``allocated``/``mixed`` nodes and on ``completing`` ones (their epilog still runs).

    >>> node_state("idle+maintenance+reserved"), node_state("idle+completing"), node_state("allocated+drain")
    (('idle', False), ('idle', True), ('draining', True))
    """
    base, *flags = full.strip().lower().split("+")
    base = base.rstrip("*~#!%$@^-")  # the symbols of the compact form, should one slip through
    busy = base in BUSY_BASE_STATES or "completing" in flags
    if base not in ("idle", *BUSY_BASE_STATES):
        return base, busy  # down, unknown, future, ...: the base state says it all
    for flag, idle_name, busy_name in UNUSABLE_FLAGS:
        if flag in flags:
            return (busy_name if busy else idle_name), busy
    return SHORT_STATE.get(base, base), busy


def parse_sinfo(text: str) -> list[SlurmNodeView]:
    """Nodes from ``sinfo --all --Node --noheader --Format=NodeList:0|,StateComplete:0``; ``has_job`` is the raw
    "a job runs" (a node of two partitions is listed twice: kept once).

    >>> parse_sinfo("nid001|idle+maintenance+reserved\\nnid002|allocated\\n")[1]
    SlurmNodeView(name='nid002', state='alloc', has_job=True)
    """
    nodes: dict[str, SlurmNodeView] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        name, sep, full = line.partition("|")
        if not sep or not name.strip() or not full.strip():
            raise ValueError(f"sinfo line {number}: expected 'node|state', got {line!r}")
        state, busy = node_state(full)
        nodes.setdefault(name.strip(), SlurmNodeView(name=name.strip(), state=state, has_job=busy))
    return list(nodes.values())


def parse_reservation(text: str | None, name: str) -> list[str] | None:
    """Nodes of reservation ``name`` from ``scontrol show reservation <name> --oneliner``; None when absent
    (``text`` None, ``Reservation <name> not found``, or no record of that name).

    >>> parse_reservation("ReservationName=node_update StartTime=2026-11-23T12:43:50 Nodes=nid[001,003] NodeCnt=2",
    ...                   "node_update")
    ['nid001', 'nid003']
    """
    if text is None:
        return None
    for line in text.splitlines():
        record = parse_scontrol_record(line)
        if record.get("ReservationName") == name:
            return _expand(record.get("Nodes", ""), f"reservation {name} Nodes")
    return None


def parse_apply_jobs(text: str) -> list[ApplyJob]:
    """Apply jobs from ``squeue --noheader --format=%i|%T|%N|%n``: the nodes a job holds (``%N``), or for a
    pending one the nodes it asked for (``%n``).

    >>> parse_apply_jobs("14|RUNNING|nid001|nid001\\n15|PENDING||nid003\\n")[1]
    ApplyJob(job_id=15, state='PENDING', nodes=['nid003'])
    """
    jobs = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.strip().split("|")
        if len(fields) != 4 or not fields[0].isdigit():
            raise ValueError(f"squeue line {number}: expected 'id|state|nodes|requested', got {line!r}")
        job_id, state, alloc, requested = fields
        where = f"squeue line {number}"
        nodes = _expand(alloc, where) if alloc else _expand(requested, where)
        jobs.append(ApplyJob(job_id=int(job_id), state=state, nodes=nodes))
    return jobs


def parse_job_ends(text: str) -> dict[str, str]:
    """Node -> the latest expected end of the jobs running on it, from ``squeue --format=%N|%e`` (ISO times
    compare as strings; a job without a known end leaves its nodes out: the planner reserves those last).

    >>> parse_job_ends("nid[001-002]|2026-12-03T14:05:00\\nnid002|2026-12-03T15:00:00\\nnid003|Unknown\\n")
    {'nid001': '2026-12-03T14:05:00', 'nid002': '2026-12-03T15:00:00'}
    """
    ends: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        nodes, sep, end = line.strip().rpartition("|")
        if not sep:
            if line.strip():
                raise ValueError(f"squeue line {number}: expected 'nodes|end', got {line!r}")
            continue
        if not end[:1].isdigit():
            continue  # Unknown, N/A: no time limit
        # Most jobs run on one node: expand a hostlist only when there is one (10,000 lines per tick).
        names = _expand(nodes, f"squeue line {number}") if "[" in nodes or "," in nodes else [nodes] if nodes else []
        for name in names:
            if end > ends.get(name, ""):
                ends[name] = end
    return ends


def build_snapshot(sinfo: str, reservation: list[str] | None, squeue: str, ends: str = "") -> ClusterSnapshot:
    """The tick's view from the four outputs (pure). ``has_job`` is False on a node whose only job is one of
    our apply jobs (running/completing: ``--exclusive`` keeps every other job off it); a *pending* apply job
    masks nothing, the user job it waits for still counts. ``applying`` holds the nodes of every apply job,
    pending ones included (their nodes are promised to it).

    >>> build_snapshot("nid003|allocated\\n", ["nid003"], "15|PENDING||nid003\\n").nodes[0].has_job
    True
    """
    jobs = parse_apply_jobs(squeue)
    ours = {n for job in jobs if job.holds_nodes for n in job.nodes}
    # Only the few nodes our apply job holds are rebuilt (10,000 new views would cost a tenth of a tick).
    nodes = [
        SlurmNodeView(name=n.name, state=n.state, has_job=False) if n.has_job and n.name in ours else n
        for n in parse_sinfo(sinfo)
    ]
    applying = sorted({n for job in jobs for n in job.nodes})
    return ClusterSnapshot(nodes=nodes, reservation=reservation, applying=applying, job_ends=parse_job_ends(ends))


def apply_script(command: Sequence[str]) -> str:
    """The batch script of an apply job: one task of ``command`` on every node of the allocation; a failing
    node does not stop the others. Built from constants and ``shlex.quote`` only.

    >>> apply_script(["opsflow", "nu", "apply"]).splitlines()[-1]
    'exec srun --ntasks-per-node=1 --kill-on-bad-exit=0 opsflow nu apply'
    """
    if not command or not all(isinstance(c, str) and c for c in command):
        raise ValueError(f"apply command must be a non-empty list of non-empty strings, got {command!r}")
    return (
        "#!/bin/sh\n"
        "# opsflow node update: run the apply command once on every node of this job.\n"
        f"exec srun --ntasks-per-node=1 --kill-on-bad-exit=0 {shlex.join(command)}\n"
    )


def export_option(env: Mapping[str, str]) -> str:
    """``--export=ALL,K=V,...``. sbatch splits it at every comma and keeps quotes literally (checked on 22.05),
    so a value with a comma or newline is refused.

    >>> export_option({"OUT_DIR": "/s/out"})
    '--export=ALL,OUT_DIR=/s/out'
    """
    parts = ["ALL"]
    for key, value in sorted(env.items()):
        if not _ENV_KEY.fullmatch(key):
            raise ValueError(f"env: invalid variable name {key!r}")
        if "," in value or "\n" in value:
            raise ValueError(f"env: value of {key} holds a comma or newline, which sbatch --export cannot pass")
        parts.append(f"{key}={value}")
    return "--export=" + ",".join(parts)


class NodeUpdateSlurm:
    """The Node Update service's Slurm commands, counted in ``commands_run``.

    >>> slurm = NodeUpdateSlurm(SlurmCLI())
    >>> slurm.set_reservation("node_update", ["nid001"], ["nid001"])  # unchanged: no command
    >>> slurm.commands_run
    0
    """

    def __init__(self, cli: SlurmCLI, *, users: str = "root", timeout_s: float = 60.0) -> None:
        self.cli = cli
        #: ``Users=`` of a created reservation; on 22.05 it must name an existing user.
        self.users = users
        self.timeout_s = timeout_s
        #: Slurm commands run so far (each call of :meth:`_run`, failed ones included).
        self.commands_run = 0

    def _run(self, argv: list[str], stdin: str | None = None) -> str:
        self.commands_run += 1
        return self.cli.run(argv, self.timeout_s, stdin=stdin)

    def snapshot(self, reservation: str, apply_job_name: str = APPLY_JOB_NAME) -> ClusterSnapshot:
        """Nodes, the reservation, our apply jobs and the running jobs' ends in exactly 4 commands, whatever the
        node count.

        >>> NodeUpdateSlurm(SlurmCLI(conf=Path("/s/slurm.conf"))).snapshot("node_update")  # doctest: +SKIP
        ClusterSnapshot(nodes=[...], reservation=None, applying=[])
        """
        _check_name(reservation, "reservation name")
        _check_name(apply_job_name, "job name")
        sinfo = self._run(["sinfo", "--all", "--Node", "--noheader", f"--Format={SINFO_FORMAT}"])
        try:
            shown: str | None = self._run(["scontrol", "show", "reservation", reservation, "--oneliner"])
        except SlurmError as exc:
            if exc.returncode == 1 and "not found" in f"{exc.stdout} {exc.stderr}":
                shown = None
            else:
                raise
        squeue = self._run(
            [
                "squeue",
                "--noheader",
                f"--name={apply_job_name}",
                f"--states={','.join(APPLY_JOB_STATES)}",
                f"--format={SQUEUE_FORMAT}",
            ]
        )
        ends = self._run(["squeue", "--noheader", f"--states={','.join(ENDS_STATES)}", f"--format={ENDS_FORMAT}"])
        return build_snapshot(sinfo, parse_reservation(shown, reservation), squeue, ends)

    def set_reservation(self, name: str, nodes: Sequence[str] | None, current: Sequence[str] | None) -> None:
        """Make reservation ``name`` hold exactly ``nodes`` (None or empty: delete it) in at most one command;
        ``current`` is what the snapshot saw (None: it does not exist).

        >>> NodeUpdateSlurm(SlurmCLI()).set_reservation("node_update", None, None)  # absent, stays absent
        """
        _check_name(name, "reservation name")
        wanted = set(nodes or ())
        want = _hostlist(wanted) if wanted else None
        if want is None:
            if current is not None:
                self._run(["scontrol", "delete", f"ReservationName={name}"])
            return
        if current is None:
            self._run(
                [
                    "scontrol",
                    "create",
                    "reservation",
                    f"ReservationName={name}",
                    f"Nodes={want}",
                    "StartTime=now",
                    "Duration=infinite",
                    f"Users={self.users}",
                    f"Flags={RESERVATION_FLAGS}",
                ]
            )
        elif set(current) != wanted:
            self._run(["scontrol", "update", f"ReservationName={name}", f"Nodes={want}"])

    def start_apply(
        self,
        name: str,
        nodes: Sequence[str],
        *,
        reservation: str,
        command: Sequence[str],
        env: Mapping[str, str],
        output_dir: Path,
        job_name: str = APPLY_JOB_NAME,
    ) -> int:
        """Submit one job into ``reservation`` that runs ``command`` once on each of ``nodes``; returns its id
        without waiting. ``name`` labels the job (its ``--comment``, shown by ``squeue -o %k``); its output goes
        to ``output_dir/apply-<jobid>.out``. ``--exclusive``: it shares no node with another job.

        >>> NodeUpdateSlurm(SlurmCLI()).start_apply("tick", ["nid001"], reservation="node_update",
        ...     command=["opsflow", "nu", "apply"], env={}, output_dir=Path("/s/logs"))  # doctest: +SKIP
        42
        """
        if not nodes:
            raise ValueError("start_apply: no nodes")
        if not name or "\n" in name:
            raise ValueError(f"start_apply: invalid job label {name!r}")
        _check_name(reservation, "reservation name")
        _check_name(job_name, "job name")
        targets = _hostlist(nodes)
        count = len(set(nodes))
        script = apply_script(command)
        export = export_option(env)
        out = output_dir.absolute()
        if "%" in str(out):
            raise ValueError(f"start_apply: output_dir must not contain '%' (a Slurm filename pattern): {out}")
        out.mkdir(parents=True, exist_ok=True)
        argv = [
            "sbatch",
            "--parsable",
            f"--job-name={job_name}",
            f"--comment={name}",
            f"--reservation={reservation}",
            f"--nodelist={targets}",
            f"--nodes={count}",
            "--ntasks-per-node=1",
            "--exclusive",
            f"--chdir={out}",
            f"--output={out}/apply-%j.out",
            export,
        ]
        text = self._run(argv, stdin=script)
        job_id = parse_job_id(text)
        if job_id is None:
            raise SlurmError(argv, 0, text, "sbatch printed no job id")
        return job_id
