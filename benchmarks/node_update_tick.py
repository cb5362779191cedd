"""Seconds and Slurm commands per Node Update tick, next to the naive design, for 1,000 and 10,000 nodes.

Run: `.venv/bin/python benchmarks/node_update_tick.py` (``--profile`` adds a cProfile of one 10,000-node tick;
``--ticks N`` measures N ticks per size, default 7).

Ours: the real :func:`node_update.tick.run_tick` (lock, catalog, spool, ledger, one snapshot, the pure planner,
one reservation change, one ``sbatch``) on a real shared root in a temporary directory, with one pending request
(a :class:`LevelReport` written by :func:`node_update.spool.write_report`) per node before every tick, and the
results of the previous tick's apply job in the spool. Slurm is answered from recorded output: a
:class:`SlurmCLI` whose ``run`` returns text in the formats slurm-wlm 22.05 prints (the formats captured in
``tests/unit/test_nu_slurm_parse.py``), from a small in-memory cluster that applies ``scontrol`` reservation
changes and ``sbatch``. 90% of the nodes run a user job; the rest are idle.

Naive (the seed's first design, section VI-F, run in the same process against the same recorded Slurm): every
request asks Slurm itself: ``scontrol show node <n>`` and ``scontrol show reservation``, and one ``scontrol
update`` of the reservation per admitted node.

Recorded output costs no slurmctld time, so the seconds compare the client-side work only; the command counts are
what slurmctld would see. A per-command floor (fork + exec of ``/bin/true``, measured here) turns counts into a
lower bound on the wall time of real commands. Last, the simulator's makespan / lower bound for the issue's
command.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import hostlist
from pydantic import PrivateAttr

from node_update import catalog as catalog_io
from node_update import spool
from node_update.models import ApplyResult, LevelReport, NodeUpdateConfig
from node_update.simulate import SimulationConfig, SimulationResult, node_names, simulate
from node_update.slurm import NodeUpdateSlurm, parse_reservation
from node_update.tick import run_tick
from opsflow.adapters.slurm import SlurmCLI, SlurmError, parse_scontrol_record

BOOT = "20260101000000"
UPDATE = "20260102000000"
RES_LIMIT = 64
RESERVATION = "node_update"
#: (nodes, pending requests per tick, share of nodes running a user job): every node at once (the issue's case), a
#: steady state of 100 requests a tick on 10,000 nodes (Piz Daint's 7,517 nodes with 6-hour jobs end about 21 jobs
#: a minute), and a saturated machine (every node busy: the free slots take busy nodes by their jobs' end times).
CASES = ((1_000, 1_000, 0.9), (10_000, 10_000, 0.9), (10_000, 100, 0.9), (10_000, 10_000, 1.0))
GOAL_S = 0.5

#: ``scontrol show node <n> --oneliner`` as slurm-wlm 22.05 lays it out (one record per line); {name}, {state}.
NODE_RECORD = (
    "NodeName={name} Arch=x86_64 CoresPerSocket=1 CPUAlloc={alloc} CPUEfctv=1 CPUTot=1 CPULoad=0.00 "
    "AvailableFeatures=(null) ActiveFeatures=(null) Gres=(null) NodeAddr=127.0.0.1 NodeHostName=localhost "
    "Port=6818 Version=22.05.8 OS=Linux 6.1.0-18-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01) "
    "RealMemory=1 AllocMem=0 FreeMem=1000 Sockets=1 Boards=1 State={state} ThreadsPerCore=1 TmpDisk=0 Weight=1 "
    "Owner=N/A MCS_label=N/A Partitions=debug BootTime=2026-11-23T10:00:00 SlurmdStartTime=2026-11-23T10:00:05 "
    "LastBusyTime=2026-11-23T12:00:00 CfgTRES=cpu=1,mem=1M,billing=1 AllocTRES= CapWatts=n/a CurrentWatts=0 "
    "AveWatts=0 ExtSensorsJoules=n/s ExtSensorsWatts=0 ExtSensorsTemp=n/s"
)
#: ``scontrol show reservation <name> --oneliner`` (the capture in test_nu_slurm_parse.py); {name}, {nodes}, {count}.
RESERVATION_RECORD = (
    "ReservationName={name} StartTime=2026-11-23T12:43:50 EndTime=2027-11-23T12:43:50 Duration=365-00:00:00 "
    "Nodes={nodes} NodeCnt={count} CoreCnt={count} Features=(null) PartitionName=(null) "
    "Flags=MAINT,IGNORE_JOBS,SPEC_NODES TRES=cpu={count} Users=root Groups=(null) Accounts=(null) "
    "Licenses=(null) State=ACTIVE BurstBuffer=(null) Watts=n/a MaxStartDelay=(null)"
)


@dataclass
class Cluster:
    """The recorded cluster: user jobs, our reservation, our apply jobs, and each node's ``local.version``."""

    nodes: list[str]
    busy: set[str]
    level: dict[str, str]
    reservation: list[str] | None = None
    jobs: dict[int, list[str]] = field(default_factory=dict)
    next_job: int = 100
    commands: Counter[str] = field(default_factory=Counter)

    @classmethod
    def synthetic(cls, count: int, busy_share: float = 0.9) -> Cluster:
        names = node_names(count)
        idle_every = round(1 / (1 - busy_share)) if busy_share < 1 else 0  # 0.9: every 10th node is idle
        busy = {n for i, n in enumerate(names) if not idle_every or i % idle_every != 0}
        return cls(nodes=names, busy=busy, level=dict.fromkeys(names, BOOT))

    def job_end(self, node: str) -> str:
        """The expected end of the user job on ``node`` (squeue %e): spread over a day, one per node."""
        minute = (hash(node) % 1440) if node in self.busy else 0
        return f"2026-12-04T{minute // 60:02d}:{minute % 60:02d}:00"


def _fail(argv: list[str], why: str) -> SlurmError:
    return SlurmError(argv, 1, "", f"recorded Slurm: {why}")


def _values(argv: list[str]) -> dict[str, str]:
    return dict(a.split("=", 1) for a in argv if "=" in a)


class RecordedSlurm(SlurmCLI):
    """A :class:`SlurmCLI` answered in-process from :class:`Cluster`, in slurm-wlm 22.05's output formats.

    Unknown commands fail loudly, so the benchmark cannot silently measure something the real code does not do.
    """

    _cluster: Cluster = PrivateAttr()

    def __init__(self, cluster: Cluster) -> None:
        super().__init__()
        self._cluster = cluster

    def run(self, argv: list[str], timeout: float = 30.0, stdin: str | None = None) -> str:
        c = self._cluster
        c.commands[" ".join(argv[:2]) if argv[0] == "scontrol" else argv[0]] += 1
        match argv:
            case ["sinfo", *_]:
                return self._sinfo()
            case ["squeue", *_, "--format=%N|%e"]:  # every running job: its node and expected end
                user = "".join(f"{n}|{c.job_end(n)}\n" for n in c.nodes if n in c.busy)
                return user + "".join(f"{_hl(ns)}|Unknown\n" for ns in c.jobs.values())
            case ["squeue", *_]:
                return "".join(f"{j}|RUNNING|{_hl(ns)}|{_hl(ns)}\n" for j, ns in sorted(c.jobs.items()))
            case ["scontrol", "show", "reservation", name, *_]:
                if name != RESERVATION or c.reservation is None:
                    raise SlurmError(argv, 1, f"Reservation {name} not found\n", "")
                res = c.reservation
                return RESERVATION_RECORD.format(name=name, nodes=_hl(res), count=len(res)) + "\n"
            case ["scontrol", "show", "node", name, *_]:
                alloc = name in c.busy or any(name in ns for ns in c.jobs.values())
                state = "ALLOCATED" if alloc else "IDLE"
                if c.reservation and name in c.reservation:
                    state += "+MAINTENANCE+RESERVED"
                return NODE_RECORD.format(name=name, alloc=int(alloc), state=state) + "\n"
            case ["scontrol", "create", "reservation", *rest]:
                kv = _values(rest)
                if c.reservation is not None:
                    raise _fail(argv, "Duplicate reservation name")
                c.reservation = sorted(hostlist.expand_hostlist(kv["Nodes"]))
                return f"Reservation created: {kv['ReservationName']}\n"
            case ["scontrol", "update", *rest]:
                kv = _values(rest)
                if c.reservation is None or "Nodes" not in kv:
                    raise _fail(argv, "Reservation not found")
                c.reservation = sorted(hostlist.expand_hostlist(kv["Nodes"]))
                return "Reservation updated.\n"
            case ["scontrol", "delete", *_]:
                c.reservation = None
                return ""
            case ["sbatch", *rest]:
                kv = _values(rest)
                if not (stdin or "").startswith("#!") or "--nodelist" not in kv:
                    raise _fail(argv, "no batch script or no --nodelist")
                c.next_job += 1
                c.jobs[c.next_job] = hostlist.expand_hostlist(kv["--nodelist"])
                return f"{c.next_job}\n"
        raise _fail(argv, "command not in the recording")

    def _sinfo(self) -> str:
        c = self._cluster
        reserved = set(c.reservation or ())
        applying = {n for ns in c.jobs.values() for n in ns}
        lines = []
        for n in c.nodes:
            state = "allocated" if n in c.busy or n in applying else "idle"
            lines.append(f"{n}|{state}+maintenance+reserved\n" if n in reserved else f"{n}|{state}\n")
        return "".join(lines)


def _hl(nodes: list[str]) -> str:
    return str(hostlist.collect_hostlist(nodes))


# --- the world between two ticks (not timed) ---------------------------------------------------------------
def new_root(cluster: Cluster, parent: str | None = None) -> Path:
    root = Path(tempfile.mkdtemp(prefix="opsflow-nu-bench-", dir=parent))
    bundle = root / "bundle"
    bundle.mkdir()
    (bundle / "update.sh").write_text("#!/bin/sh\ntrue\n")
    (bundle / "update.sh").chmod(0o755)
    catalog_io.publish(root, UPDATE, _hl(cluster.nodes), bundle=bundle)
    return root


def advance(root: Path, cluster: Cluster, requests: int, tick: int) -> None:
    """The apply jobs of the last tick finish (one ok result per node), then ``requests`` nodes file a request
    (all of them when ``requests`` is the node count; else a window that moves on every tick)."""
    now = time.time()
    for nodes in cluster.jobs.values():
        for n in nodes:
            cluster.level[n] = UPDATE
            spool.write_result(root, ApplyResult(node=n, codename=UPDATE, ok=True, exit_code=0, at=now))
    cluster.jobs.clear()
    count = len(cluster.nodes)
    for k in range(requests):
        n = cluster.nodes[(tick * requests + k) % count]
        spool.write_report(root, LevelReport(node=n, level=cluster.level[n], at=now, source="epilog"))


@dataclass
class Measured:
    seconds: list[float]
    commands: list[int]
    requests: int
    detail: Counter[str]


def measure_ours(
    count: int, requests: int, ticks: int, busy: float, profile: bool = False, parent: str | None = None
) -> Measured:
    cluster = Cluster.synthetic(count, busy)
    root = new_root(cluster, parent)
    cfg = NodeUpdateConfig(root=root, res_limit=RES_LIMIT, reservation=RESERVATION)
    seconds: list[float] = []
    commands: list[int] = []
    try:
        for tick in range(ticks):
            advance(root, cluster, requests, tick)
            slurm = NodeUpdateSlurm(RecordedSlurm(cluster))
            prof = cProfile.Profile() if profile else None
            t0 = time.perf_counter()
            if prof:
                prof.enable()
            report = run_tick(cfg, slurm)
            if prof:
                prof.disable()
            seconds.append(time.perf_counter() - t0)
            commands.append(report.slurm_commands)
            if report.problems:
                raise RuntimeError(f"tick reported problems: {report.problems[:3]}")
            if prof:
                out = io.StringIO()
                pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(25)
                print(out.getvalue())
                profile = False
        if ticks >= 3 and busy < 1 and UPDATE not in cluster.level.values():
            raise RuntimeError("no node was updated: the ticks did not act")
        return Measured(seconds, commands, requests, cluster.commands)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def measure_naive(count: int, requests: int, busy: float) -> Measured:
    """Every request queries Slurm itself; admitted nodes are added one reservation update each."""
    cluster = Cluster.synthetic(count, busy)
    cli = RecordedSlurm(cluster)
    # The requests in memory: no file I/O is charged to the naive design.
    reports = [LevelReport(node=n, level=BOOT, at=0.0) for n in cluster.nodes[:requests]]
    t0 = time.perf_counter()
    for report in reports:
        node = report.node
        state = parse_scontrol_record(cli.run(["scontrol", "show", "node", node, "--oneliner"]))["State"]
        try:
            shown: str | None = cli.run(["scontrol", "show", "reservation", RESERVATION, "--oneliner"])
        except SlurmError:
            shown = None
        members = parse_reservation(shown, RESERVATION)
        flags = state.lower().split("+")
        if report.level >= UPDATE or flags[0] != "idle" or "reserved" in flags:
            continue
        if members is not None and len(members) >= RES_LIMIT:
            continue
        wanted = _hl(sorted({*(members or ()), node}))
        if members is None:
            cli.run(["scontrol", "create", "reservation", f"ReservationName={RESERVATION}", f"Nodes={wanted}"])
        else:
            cli.run(["scontrol", "update", f"ReservationName={RESERVATION}", f"Nodes={wanted}"])
    seconds = time.perf_counter() - t0
    return Measured([seconds], [sum(cluster.commands.values())], requests, cluster.commands)


def spawn_floor_s(runs: int = 30) -> float:
    """Median seconds to fork+exec a trivial program: the least any real Slurm command costs its caller."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(["/bin/true"], check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--ticks", type=int, default=5, help="ticks measured per case (median reported)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the first 10,000-request tick")
    parser.add_argument("--seeds", type=int, default=3, help="simulator seeds for the makespan ratio")
    parser.add_argument("--root-dir", default=None, help="where the temporary shared root goes (default: TMPDIR)")
    args = parser.parse_args(argv)

    floor = spawn_floor_s()
    where = args.root_dir or tempfile.gettempdir()
    print(f"Node Update tick benchmark: res_limit {RES_LIMIT}, {args.ticks} ticks per case, shared root in {where}")
    print(f"per-command floor (fork+exec /bin/true, measured here): {floor * 1000:.2f} ms")
    print("ours: seconds per run_tick (median, max) and Slurm commands per tick (max); naive: one pass over the")
    print("requests; 'with floor' adds commands x floor, the least real commands would add\n")
    header = (
        f"{'nodes':>6} {'busy':>4} {'requests':>8} | {'ours s':>7} {'max s':>6} {'cmds':>5} | "
        f"{'naive s':>7} {'cmds':>6} | "
        f"{'ours/naive time':>15} {'cmds':>8} | {'with floor: ours':>16} {'naive':>7} {'ratio':>7}"
    )
    print(header)
    print("-" * len(header))
    slow = False
    details = []
    for count, requests, busy in CASES:
        profile = args.profile and requests == max(r for _, r, _ in CASES) and busy < 1
        ours = measure_ours(count, requests, args.ticks, busy, profile=profile, parent=args.root_dir)
        naive = measure_naive(count, requests, busy)
        med, cmds = statistics.median(ours.seconds), max(ours.commands)
        naive_s, naive_cmds = naive.seconds[0], naive.commands[0]
        ours_floor, naive_floor = med + cmds * floor, naive_s + naive_cmds * floor
        slow = slow or med > GOAL_S
        print(
            f"{count:>6} {busy:>4.0%} {requests:>8} | {med:>7.3f} {max(ours.seconds):>6.3f} {cmds:>5d} | "
            f"{naive_s:>7.3f} "
            f"{naive_cmds:>6d} | {med / naive_s:>15.3f} {cmds / naive_cmds:>8.5f} | {ours_floor:>15.3f}s "
            f"{naive_floor:>6.1f}s {ours_floor / naive_floor:>7.4f}"
        )
        details.append(
            f"  {count} nodes / {requests} requests: ours per tick {ours.commands} commands, by kind over all "
            f"ticks {dict(ours.detail)}; seconds {[round(x, 3) for x in ours.seconds]}; naive {dict(naive.detail)}"
        )
    print("\n".join(["", *details]))
    print(
        f"\ngoal: under {GOAL_S} s per tick -> {'NOT MET on this machine (run with --profile)' if slow else 'met'}; "
        "commands per tick: see 'cmds' (constant in the node and request count)"
    )

    base = SimulationConfig(nodes=7517, res_limit=64, utilization=0.99, mean_job_hours=6, update_minutes=10)
    for title, cfg in (
        ("simulate --nodes 7517 --res-limit 64 --utilization 0.99 --mean-job-hours 6 --update-minutes 10", base),
        ("the same, saturated (a freed node goes to the next queued job at once unless reserved)",
         base.model_copy(update={"saturated": True, "max_hours": 30 * 24.0})),
    ):  # fmt: skip
        print(f"\n{title}\n  idle only = the old mechanism; reserve busy = free slots take busy nodes ending soonest")
        table: dict[bool, list[SimulationResult]] = {False: [], True: []}
        for seed in range(1, args.seeds + 1):
            for busy in (False, True):
                t0 = time.perf_counter()
                r = simulate(cfg.model_copy(update={"seed": seed, "reserve_busy": busy}))
                table[busy].append(r)
                print(
                    f"  seed {seed} {'reserve busy' if busy else 'idle only':>12}: "
                    f"{'makespan' if r.finished else 'NOT FINISHED, stopped at'} {r.makespan_hours:.2f} h "
                    f"({r.updated} nodes), lower bound {r.lower_bound_hours:.2f} h, ratio {r.ratio:.3f}, "
                    f"idle in reservation {r.idle_held_minutes_per_update:.2f} node-min/update, max reservation "
                    f"{r.max_reserved} ({time.perf_counter() - t0:.1f} s to simulate)"
                )
        for busy in (False, True):
            runs = table[busy]
            print(
                f"  {'reserve busy' if busy else 'idle only':>12}: makespan / lower bound median "
                f"{statistics.median(r.ratio for r in runs):.3f}{'' if all(r.finished for r in runs) else '+'}, "
                f"idle node-min per update median {statistics.median(r.idle_held_minutes_per_update for r in runs):.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
