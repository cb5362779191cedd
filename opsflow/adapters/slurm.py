"""A thin adapter over the Slurm command line (``sinfo``, ``squeue``, ``sbatch``, ``scontrol``, ``scancel``).

Every call goes through :meth:`SlurmCLI.run`, which raises :class:`SlurmError` naming the command and its
stderr. Parsing lives in pure ``parse_*`` functions, tested on output captured from slurm-wlm 22.05.

The plain-text formats are used on purpose: ``scontrol show node --json`` works in 22.05 but its schema
(openapi v0.0.38) changes with every release, while sinfo's ``--format`` fields have not changed in years.

Example:
    >>> cli = SlurmCLI(conf=Path("/tmp/s/slurm/etc/slurm.conf"))
    >>> cli.command("sinfo")
    'sinfo'
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel

from opsflow.errors import AdapterError

#: sinfo node line: name, full state (``idle+drain``, ``unknown+drain``: the compact ``%t`` shows both as
#: ``drain``), reason. Width 0 means no truncation; the reason comes last so a ``|`` in it shifts nothing.
SINFO_NODES_FORMAT = "NodeList:0|,StateComplete:0|,Reason:0"
#: squeue job line: id, long state, start time, nodes, name (last, it is free text).
SQUEUE_FORMAT = "%i|%T|%S|%N|%j"
#: Job states after which nothing changes any more.
FINAL_JOB_STATES = frozenset(
    {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE", "OUT_OF_MEMORY"}
)


class SlurmError(AdapterError):
    """A Slurm command failed; ``str()`` names the command and carries its stderr."""

    def __init__(self, argv: list[str], returncode: int | None, stdout: str, stderr: str) -> None:
        self.argv, self.returncode, self.stdout, self.stderr = argv, returncode, stdout, stderr
        why = "timed out" if returncode is None else f"exited {returncode}"
        super().__init__(f"`{' '.join(argv)}` {why}: {stderr.strip() or stdout.strip() or '(no output)'}")


class SlurmNode(BaseModel):
    """One node: base ``state`` (idle, allocated, mixed, down, unknown, future) and state ``flags`` (drain,
    not_responding, completing, reserved, maintenance, powered_down, ...), as sinfo's StateComplete names them."""

    name: str
    state: str
    flags: list[str] = []
    reason: str = ""

    @property
    def responding(self) -> bool:
        return "not_responding" not in self.flags

    @property
    def drained(self) -> bool:
        return "drain" in self.flags

    @property
    def full_state(self) -> str:
        return "+".join([self.state, *self.flags])


class SlurmJob(BaseModel):
    """A job as ``scontrol show job`` or ``squeue`` reports it."""

    job_id: int
    name: str = ""
    state: str = "UNKNOWN"
    exit_code: int | None = None
    signal: int | None = None
    node_list: str = ""
    std_out: str = ""
    start_time: datetime | None = None  # local time, as Slurm prints it

    @property
    def done(self) -> bool:
        return self.state in FINAL_JOB_STATES

    @property
    def ok(self) -> bool:
        return self.state == "COMPLETED" and self.exit_code == 0


def parse_sinfo_nodes(text: str) -> list[SlurmNode]:
    """Nodes from ``sinfo --Node --noheader --Format=NodeList:0|,StateComplete:0|,Reason:0`` (a node of two
    partitions is listed once).

    >>> parse_sinfo_nodes("nid008|idle+not_responding|none\\n")
    [SlurmNode(name='nid008', state='idle', flags=['not_responding'], reason='')]
    """
    nodes: dict[str, SlurmNode] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, _, rest = line.partition("|")
        full, _, reason = rest.partition("|")
        state, *flags = full.strip().lower().split("+")
        reason = "" if reason.strip() == "none" else reason.strip()
        node = SlurmNode(name=name.strip(), state=state, flags=flags, reason=reason)
        nodes.setdefault(node.name, node)
    return list(nodes.values())


def _time(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value)
    except ValueError:  # "N/A", "Unknown", "None"
        return None


def parse_squeue(text: str) -> list[SlurmJob]:
    """Jobs from ``squeue --noheader --format='%i|%T|%S|%N|%j'`` (with SLURM_TIME_FORMAT=standard).

    >>> parse_squeue("4|RUNNING|2026-11-23T11:59:35|nid[001-002]|wrap")[0].node_list
    'nid[001-002]'
    """
    jobs = []
    for line in text.splitlines():
        if not line.strip():
            continue
        job_id, state, start, nodes, name = (line.split("|", 4) + [""] * 5)[:5]
        jobs.append(SlurmJob(job_id=int(job_id), state=state, start_time=_time(start), node_list=nodes, name=name))
    return jobs


#: A blank that starts the next ``Key=`` (keys look like ``JobId``, ``AllocNode:Sid``, ``CPUs/Task``).
_NEXT_KEY = re.compile(r"\s+(?=[A-Za-z][A-Za-z0-9_:/]*=)")


def parse_scontrol_record(text: str) -> dict[str, str]:
    """``Key=Value`` pairs of one ``scontrol show ... --oneliner`` record; a value runs up to the next ``Key=``,
    so values with blanks (``JobName=my job``, ``Reason=update pending``) stay whole.

    >>> parse_scontrol_record("JobId=7 JobName=my job JobState=COMPLETED ExitCode=0:0")["JobName"]
    'my job'
    """
    record = {}
    for token in _NEXT_KEY.split(text.strip()):
        key, sep, value = token.partition("=")
        if sep:
            record[key] = value.strip()
    return record


def parse_job(text: str) -> SlurmJob:
    """A job from ``scontrol show job <id> --oneliner``.

    >>> parse_job("JobId=7 JobName=x JobState=FAILED Reason=NonZeroExitCode ExitCode=3:0 NodeList=nid001").exit_code
    3
    """
    rec = parse_scontrol_record(text.strip().splitlines()[0] if text.strip() else "")
    if "JobId" not in rec:
        raise ValueError(f"not a scontrol job record: {text[:200]!r}")
    code, _, sig = rec.get("ExitCode", "").partition(":")
    return SlurmJob(
        job_id=int(rec["JobId"]),
        name=rec.get("JobName", ""),
        state=rec.get("JobState", "UNKNOWN"),
        exit_code=int(code) if code.isdigit() else None,
        signal=int(sig) if sig.isdigit() else None,
        node_list="" if rec.get("NodeList") in (None, "(null)") else rec["NodeList"],
        std_out=rec.get("StdOut", ""),
        start_time=_time(rec.get("StartTime", "")),
    )


def parse_job_id(text: str) -> int | None:
    """The job id of ``sbatch --parsable`` output (``123`` or ``123;cluster``), None when there is none.

    >>> parse_job_id("42;opsflow\\n")
    42
    """
    first = text.strip().splitlines()[0] if text.strip() else ""
    head = first.split(";", 1)[0].strip()
    return int(head) if head.isdigit() else None


class SlurmCLI(BaseModel):
    """The Slurm commands of one cluster: ``conf`` sets SLURM_CONF, ``bin_dir`` is where the commands are."""

    conf: Path | None = None
    bin_dir: Path | None = None

    def command(self, name: str) -> str:
        return str(self.bin_dir / name) if self.bin_dir else name

    def run(self, argv: list[str], timeout: float = 30.0, stdin: str | None = None) -> str:
        """Run one Slurm command (``argv[0]`` a bare name such as ``"sinfo"``) and return its stdout."""
        argv = [self.command(argv[0]), *argv[1:]]
        # Fixed time format so parsers never see a user's SLURM_TIME_FORMAT=relative.
        env = {**os.environ, "SLURM_TIME_FORMAT": "standard"}
        if self.conf is not None:
            env["SLURM_CONF"] = str(self.conf)
        try:
            done = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=env, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise SlurmError(argv, None, _text(exc.stdout), _text(exc.stderr)) from exc
        except OSError as exc:
            raise SlurmError(argv, 127, "", str(exc)) from exc
        if done.returncode != 0:
            raise SlurmError(argv, done.returncode, done.stdout, done.stderr)
        return done.stdout

    def nodes(self, timeout: float = 30.0) -> list[SlurmNode]:
        """Every node, from one ``sinfo`` call."""
        return parse_sinfo_nodes(self.run(["sinfo", "--Node", "--noheader", f"--Format={SINFO_NODES_FORMAT}"], timeout))

    def jobs(self, states: Iterable[str] = (), timeout: float = 30.0) -> list[SlurmJob]:
        """Jobs slurmctld knows (all, or those in ``states`` such as ``RUNNING``), from one ``squeue`` call."""
        argv = ["squeue", "--noheader", f"--format={SQUEUE_FORMAT}"]
        wanted = ",".join(states)
        if wanted:
            argv.append(f"--states={wanted}")
        return parse_squeue(self.run(argv, timeout))

    def job(self, job_id: int, timeout: float = 30.0) -> SlurmJob:
        """The job's state and exit code (slurmctld keeps a finished job for MinJobAge seconds)."""
        return parse_job(self.run(["scontrol", "show", "job", str(job_id), "--oneliner"], timeout))

    def cancel(self, job_ids: Iterable[int], timeout: float = 30.0) -> None:
        ids = [str(i) for i in job_ids]
        if ids:
            self.run(["scancel", *ids], timeout)

    def submit(
        self,
        script: str,
        *,
        nodes: int = 1,
        partition: str | None = None,
        output: Path,
        wait: bool = True,
        job_name: str = "opsflow",
        timeout: float = 600.0,
    ) -> SlurmJob:
        """Submit ``script`` with ``sbatch --parsable`` (``#!/bin/sh`` is added when it has no shebang).

        With ``wait`` it returns once the job reached its final state (see :meth:`wait`). A job that fails is
        returned (``job.ok`` is False), not raised: only a failed submission or a timeout raises.
        """
        if not script.startswith("#!"):
            script = "#!/bin/sh\n" + script
        argv = ["sbatch", "--parsable", f"--nodes={nodes}", f"--job-name={job_name}", f"--output={output}"]
        if partition:
            argv.append(f"--partition={partition}")
        out = self.run(argv, 30.0, stdin=script)
        job_id = parse_job_id(out)
        if job_id is None:
            raise SlurmError(argv, 0, out, "sbatch printed no job id")
        return self.wait(job_id, timeout) if wait else self.job(job_id)

    def wait(self, job_id: int, timeout: float = 600.0) -> SlurmJob:
        """Poll the job until it reached a final state (COMPLETING is not one: its Epilogs still run).

        Not ``sbatch --wait``: 22.05 polls at 2 s then 8 s, so a one-second job came back after 10 s, and it
        returns while the job is still COMPLETING. Here the poll starts at 0.25 s and backs off to 2 s.
        """
        deadline = time.monotonic() + timeout
        delay = 0.25
        job = self.job(job_id)
        while not job.done:
            if time.monotonic() > deadline:
                argv = ["scontrol", "show", "job", str(job_id)]
                raise SlurmError(argv, None, "", f"job {job_id} still {job.state} after {timeout:.0f} s")
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
            job = self.job(job_id)
        return job


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode(errors="replace")
