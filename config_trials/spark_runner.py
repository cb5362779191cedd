"""One variant's round on Spark: the application, the seeded feed, usage sampling, chaos (the I/O of trials).

A round of a variant (:func:`run_round`) in its own folder ``<trial dir>/round-NN/<variant>/``:

1. ``spark-submit`` of the trial's application (:func:`config_trials.measures.application_argv`), which reports
   ``ready`` in its metrics file once its query runs;
2. the feed: for ``round_s`` seconds, the records of each second (:func:`config_trials.inputs.records`) written
   as one JSON file (renamed into place: the file source never sees half a file), each record stamped with its
   emit time; the SHA-256 of the records (without the stamp) is the round's input hash, the same for every
   variant (I3);
3. every second, the CPU and memory of the variant's processes (the driver's process tree and the app's
   executors, found by the app id the application reports): psutil;
   in parallel mode (D6) the variants of a round start their feeds at one common moment, agreed through marker
   files in the round's folder (:func:`start_together`), so that they share the machine's load over the same
   seconds and a chaos schedule hits all of them at once;
4. chaos (D7) at the same offsets from the feed's start in every variant (each action on a timer of its own),
   each injection logged with its time:
   SIGKILL of the app's executors, SIGSTOP of the worker JVMs for ``for_s``, or the executors moved into a
   cgroup whose CFS quota is ``quota`` of a core for ``for_s`` (:mod:`opsflow.adapters.cgroups`);
5. the stop file, the application's exit, its metrics → a :class:`~config_trials.judge.RoundResult` (a crash,
   a start that never came, or an exit code other than 0 → failed, with the reason and the log's last line).

Everything a round recorded stays in its folder (``metrics.jsonl``, ``usage.json``, ``chaos.json``,
``result.json``, the application's log), so a report can be rebuilt from disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from pydantic import BaseModel

from config_trials.definition import ChaosAction, TrialDefinition, Variant
from config_trials.inputs import records
from config_trials.judge import RoundResult
from config_trials.measures import application_argv, round_values
from opsflow.adapters.cgroups import Throttle
from opsflow.adapters.spark import EXECUTOR_CLASS, JOB_JVM_FLAGS, WORKER_CLASS
from opsflow.errors import AdapterError

MIB = 1024 * 1024


class SparkTarget(BaseModel):
    """Where variants run: the master, ``spark-submit``, the environment of the application's process."""

    master: str
    spark_submit: str
    env: dict[str, str]
    #: settings every variant gets before its own (the variant's win)
    conf: dict[str, str] = {}
    start_timeout_s: float = 180.0
    stop_timeout_s: float = 120.0


def default_conf(python: str) -> dict[str, str]:
    """Settings for a driver on this host: loopback, no UI, the project's interpreter, fast-starting JVMs.

    A round lasts seconds, so the JVMs' start-up counts: C1 only and the serial collector (as for the stack's
    short jobs), the same for every variant. The application is small: 512 MiB of heap for the driver and each
    executor, so that parallel mode fits several variants on a small worker.
    """
    return {
        "spark.driver.memory": "512m",
        "spark.executor.memory": "512m",
        "spark.ui.enabled": "false",
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.driver.extraJavaOptions": JOB_JVM_FLAGS,
        "spark.executor.extraJavaOptions": JOB_JVM_FLAGS,
        "spark.pyspark.driver.python": python,
        "spark.pyspark.python": python,
    }


def round_dir(trial_dir: Path, round_index: int, variant: str) -> Path:
    """The folder of one variant's round."""
    return trial_dir / f"round-{round_index + 1:02d}" / variant


def record_result(trial_dir: Path, result: RoundResult) -> RoundResult:
    """Keep a round's result in its folder (``result.json``), where the report is rebuilt from; returns it.

    The runner records every round it ran; the flow records the rounds that never reached a runner (no worker
    of the variant's pool, a pool run that never ended), so that a rebuilt report knows why as well.
    """
    here = round_dir(trial_dir, result.round, result.variant)
    here.mkdir(parents=True, exist_ok=True)
    (here / "result.json").write_text(result.model_dump_json(indent=1))
    return result


def read_events(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of a round's ``metrics.jsonl`` (none when it is missing; a line cut off by a crash skipped)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut off by a crash
    return out


def _last_line(path: Path) -> str:
    lines = [x for x in path.read_text(errors="replace").splitlines() if x.strip()] if path.exists() else []
    return lines[-1][-300:] if lines else "(no output)"


class _Usage:
    """CPU (share of one core) and RSS (MiB) of the driver's process tree and the app's executors."""

    def __init__(self, driver: psutil.Process) -> None:
        self.driver = driver
        self.app_id = ""
        self.last: dict[int, float] = {}
        self.at = time.time()

    def processes(self) -> list[psutil.Process]:
        found = [self.driver]
        try:
            found += self.driver.children(recursive=True)
        except psutil.Error:
            return []
        for p in _executors(self.app_id):
            found.append(p)
            with contextlib.suppress(psutil.Error):
                found += p.children(recursive=True)  # the executor's Python workers
        return found

    def sample(self) -> tuple[float, float, float] | None:
        now, totals, rss = time.time(), {}, 0
        for p in self.processes():
            try:
                t = p.cpu_times()
                totals[p.pid] = t.user + t.system
                rss += p.memory_info().rss
            except psutil.Error:
                continue
        used = sum(total - self.last.get(pid, total) for pid, total in totals.items())
        first = not self.last
        self.last, elapsed, self.at = totals, now - self.at, now
        if first or elapsed <= 0:
            return None
        return now, used / elapsed, rss / MIB


def _inject(action: ChaosAction, app_id: str) -> str:
    """D7: one injection; what it did, for the chaos log."""
    if action.action == "kill-executor":
        killed = []
        for p in _executors(app_id):
            with contextlib.suppress(psutil.Error):
                p.send_signal(signal.SIGKILL)
                killed.append(p.pid)
        return f"killed executor pid {killed}" if killed else "no executor of the app to kill"
    if action.action == "stop-worker":
        workers = [p for p in psutil.process_iter(["cmdline"]) if WORKER_CLASS in (p.info["cmdline"] or [])]
        for p in workers:
            p.send_signal(signal.SIGSTOP)

        def resume() -> None:
            for p in workers:
                try:
                    p.send_signal(signal.SIGCONT)
                except psutil.Error:
                    continue

        threading.Timer(action.for_s, resume).start()
        return f"stopped worker pid {[p.pid for p in workers]} for {action.for_s:g} s"
    pids = []
    for p in _executors(app_id):
        pids.append(p.pid)
        with contextlib.suppress(psutil.Error):
            pids += [c.pid for c in p.children(recursive=True)]  # its Python workers
    if not pids:
        return "no executor of the app to throttle"
    try:
        throttle = Throttle(pids, action.quota, f"opsflow-trial-{os.getpid()}-{time.monotonic_ns()}")
    except AdapterError as exc:
        return f"{exc}: nothing done"
    threading.Timer(action.for_s, throttle.release).start()
    return f"throttled pid {throttle.pids} to {action.quota:.0%} of a core for {action.for_s:g} s"


def _executors(app_id: str) -> list[psutil.Process]:
    """The executor JVMs of the application ``app_id`` on this host."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if app_id and EXECUTOR_CLASS in cmd and app_id in cmd:
            found.append(p)
    return found


#: seconds between the last peer's "ready" and the common feed start (every peer polls the markers far faster)
START_MARGIN_S = 1.0


class Peers(BaseModel):
    """D6: the variants that run one round at the same time, and the key of that round's start (fresh per round,
    so that the markers of an earlier run in the same folder are never taken for this one's)."""

    variants: list[str]
    key: str


def _marks_dir(round_folder: Path, peers: Peers) -> Path:
    return round_folder / ".start" / peers.key


def _mark(round_folder: Path, peers: Peers, variant: str, **fields: Any) -> None:
    marks = _marks_dir(round_folder, peers)
    marks.mkdir(parents=True, exist_ok=True)
    tmp = marks / f".{variant}.tmp"
    tmp.write_text(json.dumps(fields))
    os.replace(tmp, marks / f"{variant}.json")


def _marks(round_folder: Path, peers: Peers) -> dict[str, dict[str, Any]]:
    found = {}
    for path in _marks_dir(round_folder, peers).glob("*.json"):
        with contextlib.suppress(OSError, json.JSONDecodeError):
            found[path.stem] = json.loads(path.read_text())
    return found


def start_together(
    round_folder: Path, variant: str, peers: Peers, timeout_s: float, log: Callable[[str], None]
) -> float:
    """D6: mark ``variant`` ready, wait until every peer is ready or gone, return the common feed start.

    The start is the last ready time plus :data:`START_MARGIN_S`, so every peer computes the same moment from
    the same files (the round's folder may be on a filesystem shared by several hosts). A peer that has said
    nothing within ``timeout_s`` is not waited for (logged): the others start without it.
    """
    _mark(round_folder, peers, variant, ready_at=time.time())
    deadline = time.monotonic() + timeout_s
    while True:
        marks = _marks(round_folder, peers)
        missing = [p for p in peers.variants if p not in marks]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if missing:
        log(f"{variant}: {', '.join(missing)} not ready within {timeout_s:g} s; starting without them")
    ready = [float(m["ready_at"]) for m in marks.values() if "ready_at" in m]
    return max(ready) + START_MARGIN_S


def run_round(
    target: SparkTarget,
    definition: TrialDefinition,
    definition_dir: Path,
    variant: Variant,
    round_index: int,
    trial_dir: Path,
    log: Callable[[str], None] = lambda _: None,
    peers: Peers | None = None,
) -> RoundResult:
    """Steps 1-5 of the module docstring; a rerun of the same round starts its folder afresh.

    ``peers``: the variants running this round at the same time (parallel mode), ``variant`` among them; they
    start their feeds together (:func:`start_together`).
    """
    here = round_dir(trial_dir, round_index, variant.name)
    shutil.rmtree(here, ignore_errors=True)
    inbox, stop, metrics = here / "input", here / "STOP", here / "metrics.jsonl"
    inbox.mkdir(parents=True)
    module = (definition_dir / definition.application.module).resolve()
    paths = {
        "input": str(inbox),
        "output": str(here / "output"),
        "metrics": str(metrics),
        "stop": str(stop),
        "checkpoint": str(here / "checkpoint"),
    }
    argv = application_argv(target.spark_submit, target.master, definition, variant, str(module), paths, target.conf)
    (here / "argv.json").write_text(json.dumps(argv))
    with (here / "app.log").open("w") as out:
        proc = subprocess.Popen(
            argv, env=target.env, cwd=here, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    try:
        result = _drive(target, definition, variant, round_index, here, proc, log, peers)
    finally:
        if peers and variant.name not in _marks(here.parent, peers):
            _mark(here.parent, peers, variant.name, gone=True)  # failed before its query ran: nobody waits for it
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return record_result(trial_dir, result)


def _drive(
    target: SparkTarget,
    definition: TrialDefinition,
    variant: Variant,
    round_index: int,
    here: Path,
    proc: subprocess.Popen[bytes],
    log: Callable[[str], None],
    peers: Peers | None,
) -> RoundResult:
    inbox, stop, metrics = here / "input", here / "STOP", here / "metrics.jsonl"

    def failed(reason: str) -> RoundResult:
        return RoundResult(variant=variant.name, round=round_index, failed=reason)

    deadline = time.monotonic() + target.start_timeout_s
    while not any(e.get("kind") == "ready" for e in read_events(metrics)):
        if proc.poll() is not None:
            return failed(
                f"the application exited with {proc.returncode} before its query ran: {_last_line(here / 'app.log')}"
            )
        if time.monotonic() > deadline:
            return failed(f"the application's query did not start within {target.start_timeout_s:g} s")
        time.sleep(0.2)
    app_id = next(str(e.get("app_id", "")) for e in read_events(metrics) if e.get("kind") == "ready")
    usage_meter = _Usage(psutil.Process(proc.pid))
    usage_meter.app_id = app_id
    usage: list[tuple[float, float, float]] = []
    chaos_log: list[dict[str, Any]] = []
    digest = hashlib.sha256()
    started = time.time()
    if peers:
        started = start_together(here.parent, variant.name, peers, target.start_timeout_s, log)
        _sleep_until(started)
    log(f"{variant.name} round {round_index + 1}: feeding {definition.round_s:g} s ({app_id})")

    def inject(action: ChaosAction) -> None:
        did = _inject(action, app_id)
        at = time.time() - started
        chaos_log.append({"action": action.action, "planned_s": action.at_s, "at_s": at, "did": did})
        log(f"{variant.name} round {round_index + 1}: chaos {action.action} at {at:.1f} s: {did}")

    # Each action on a timer of its own, at its offset from the feed's start (not at the feed's next second).
    timers = [
        threading.Timer(max(0.0, started + c.at_s - time.time()), inject, args=(c,))
        for c in sorted(definition.chaos, key=lambda c: c.at_s)
        if c.in_round(round_index)
    ]
    for timer in timers:
        timer.start()
    for second in range(int(definition.round_s)):
        _sleep_until(started + second)
        batch = records(definition.input.seed, round_index, second, definition.input.vehicles)
        now = time.time()
        lines = []
        for rec in batch:
            digest.update(json.dumps(rec, sort_keys=True).encode())
            lines.append(json.dumps({**rec, "emit_ts": now}))
        tmp = inbox / f".s-{second:06d}.json"
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, inbox / f"s-{second:06d}.json")
        sample = usage_meter.sample()
        if sample:
            usage.append(sample)
        if proc.poll() is not None:
            break
    if proc.poll() is not None:
        for timer in timers:
            timer.cancel()  # the application is gone: nothing left to disturb
    _sleep_until(started + definition.round_s)
    for timer in timers:
        timer.join()  # every action is due by the round's end (D7): the log is complete before the stop
    stop.touch()
    try:
        code = proc.wait(timeout=target.stop_timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        code = None
    (here / "usage.json").write_text(json.dumps(usage))
    (here / "chaos.json").write_text(json.dumps(chaos_log, indent=1))
    if code != 0:
        how = f"exited with {code}" if code is not None else f"did not stop within {target.stop_timeout_s:g} s"
        return failed(f"the application {how}: {_last_line(here / 'app.log')}")
    values = round_values(read_events(metrics), usage, started, definition.warmup_s)
    return RoundResult(
        variant=variant.name,
        round=round_index,
        values={m: values.get(m) for m in definition.metrics},
        input_sha256=digest.hexdigest(),
        fed_from=started,
    )


def _sleep_until(moment: float) -> None:
    delay = moment - time.time()
    if delay > 0:
        time.sleep(delay)
