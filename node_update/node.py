"""The node side (``opsflow nu boot | epilog | apply``): runs on a compute node, talks to no network service.

It reads the catalog and bundles on the shared root and writes only files: its own ``local.version``, and
messages into the spool (atomic renames). No call to Slurm or Prefect is ever made from here (seed VI-F, F3).

A node's local directory comes from ``OPSFLOW_NU_LOCAL_DIR``, a path template with ``{node}``
(``/var/lib/opsflow-nu`` at a site, ``<OPSFLOW_HOME>/nodes/{node}`` in the local stack, the default).

Example:
    >>> import tempfile
    >>> from unittest import mock
    >>> tmp = Path(tempfile.mkdtemp())
    >>> with mock.patch.dict(os.environ, {"OPSFLOW_NU_LOCAL_DIR": str(tmp / "nodes" / "{node}")}):
    ...     boot(tmp / "root", "nid001", now=0.0).level, read_level("nid001")
    ('19700101000000', '19700101000000')
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from node_update import spool
from node_update.catalog import SCRIPT_NAME, bundle_dir, load_catalog
from node_update.codename import CodenameError, codename_at, parse_codename
from node_update.config import ENV, LOCAL_DIR_ENV, local_dir_template
from node_update.models import ApplyResult, LevelReport, NodeRecord
from opsflow.errors import OpsflowError
from opsflow.files import atomic_write_text
from opsflow.home import default_home

log = logging.getLogger("opsflow.node_update.node")

LEVEL_FILE = "local.version"
TAIL_LINES = 20
#: Exit codes of runs that could not start, as a shell reports them.
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127
EXIT_TIMEOUT = 124
EXIT_NO_LEVEL = 2
#: A bundle's own health check, run after its update.sh (optional).
CHECK_NAME = "check.sh"
#: The site-wide check command (the settings' check_command), handed to the apply job's nodes.
CHECK_COMMAND_ENV = ENV["check_command"]


class NodeError(OpsflowError, ValueError):
    """The node's own state is unusable (e.g. a damaged ``local.version``); the message names the file."""


def local_dir(node: str) -> Path:
    """This node's local directory, from the ``OPSFLOW_NU_LOCAL_DIR`` template (``{node}`` replaced).

    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"OPSFLOW_NU_LOCAL_DIR": "/var/lib/opsflow-nu/{node}"}):
    ...     local_dir("nid001")
    PosixPath('/var/lib/opsflow-nu/nid001')
    """
    spool.safe_name(node)
    template = os.environ.get(LOCAL_DIR_ENV) or local_dir_template(default_home())
    return Path(template.replace("{node}", node))


def level_path(node: str) -> Path:
    """``<local_dir>/local.version``."""
    return local_dir(node) / LEVEL_FILE


def read_level(node: str) -> str | None:
    """The node's level (F7): its boot time or last applied codename; None when ``local.version`` is missing.

    Raises :class:`NodeError` naming the file when it holds something that is not a codename.

    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"OPSFLOW_NU_LOCAL_DIR": "/nonexistent/{node}"}):
    ...     read_level("nid001") is None
    True
    """
    path = level_path(node)
    try:
        text = path.read_text(errors="replace").strip()
    except FileNotFoundError:
        return None
    try:
        return parse_codename(text)
    except CodenameError as exc:
        raise NodeError(f"{path}: {exc}") from None


def write_level(node: str, codename: str) -> None:
    """Set the node's level to ``codename`` (atomic; a crash leaves the old level or the new one).

    >>> import tempfile
    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"OPSFLOW_NU_LOCAL_DIR": tempfile.mkdtemp() + "/{node}"}):
    ...     write_level("nid001", "20260101000000"); read_level("nid001")
    '20260101000000'
    """
    atomic_write_text(level_path(node), parse_codename(codename) + "\n")


def boot(root: Path, node: str, now: datetime | float | None = None) -> LevelReport:
    """Boot hook (F7): a booted node counts as updated up to its boot time; record that and report it.

    >>> import tempfile
    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"OPSFLOW_NU_LOCAL_DIR": tempfile.mkdtemp() + "/{node}"}):
    ...     boot(Path(tempfile.mkdtemp()), "nid001", now=datetime(2026, 5, 1)).level
    '20260501000000'
    """
    moment = time.time() if now is None else now
    level = codename_at(moment)
    write_level(node, level)
    at = moment.timestamp() if isinstance(moment, datetime) else float(moment)
    report = LevelReport(node=node, level=level, at=at, source="boot")
    spool.write_report(root, report)
    return report


def check(root: Path, node: str, source: str = "epilog") -> list[str]:
    """Epilog / periodic check (F2, F3): if this node is behind the catalog, drop its report into the spool.

    Returns the pending codenames, oldest first. It reads two small files and writes at most one, and never
    raises for a broken catalog, a damaged or missing ``local.version`` or an unreachable root: it logs a warning
    and returns ``[]`` (a failing Slurm epilog would drain the node). A node without ``local.version`` reports
    nothing: its level is unknown, and guessing would either skip updates it needs or apply them over a state
    nobody knows; its boot hook (``opsflow nu boot``) gives it a level. An unsafe node name still raises.

    >>> import tempfile
    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"OPSFLOW_NU_LOCAL_DIR": tempfile.mkdtemp() + "/{node}"}):
    ...     check(Path(tempfile.mkdtemp()), "nid001")  # no local.version yet: nothing to report
    []
    """
    spool.safe_name(node)
    try:
        level = read_level(node)
        if level is None:
            log.warning("%s: %s is missing; reporting nothing until the boot hook runs", node, level_path(node))
            return []
        catalog = load_catalog(root)
        if catalog.error:
            log.warning("%s: catalog error, reporting nothing: %s", node, catalog.error)
            return []
        pending = catalog.pending_for(node, level)
        if pending:
            spool.write_report(root, LevelReport(node=node, level=level, at=time.time(), source=source))
        return pending
    except (OSError, ValueError) as exc:
        log.warning("%s: %s check skipped: %s", node, source, exc)
        return []


def _ledger_record(root: Path, node: str) -> NodeRecord | None:
    """What the tick knows of this node (read only): its skipped codenames and the level it expects."""
    try:
        return spool.load_ledger(root).nodes.get(node)
    except (OSError, ValueError) as exc:
        log.warning("%s: ledger unreadable, ignoring it: %s", node, exc)
        return None


def apply(
    root: Path, node: str, timeout: float = 3600.0, skipped: Iterable[str] | None = None, kill_grace: float = 10.0
) -> list[ApplyResult]:
    """Run every pending update on this node, oldest codename first, stopping at the first failure (seed VI-C).

    For each codename: ``root/updates/<codename>/update.sh`` runs as an argument list (no shell) in its bundle
    directory with ``CODENAME``, ``NODE``, ``BUNDLE_DIR`` and ``LOCAL_DIR`` added to the environment; its output
    goes to ``spool/logs/<node>.<codename>.log``. Then the health checks (:func:`health_checks`: the bundle's
    ``check.sh``, the site's check command) run the same way, into the same log. When all passed
    ``local.version`` becomes the codename, then an ``ApplyResult(ok=True)`` is written; on failure (non-zero
    exit, missing script 127, not executable 126, timeout 124 after killing its process group) an
    ``ApplyResult(ok=False)`` naming the step that failed, with the last log lines, and the chain stops.
    ``skipped`` (default: the ledger's list for this node) names codenames an operator released.

    With nothing pending it writes a report of its level instead, so the tick learns where the node is (after a
    reboot, say). A missing or damaged ``local.version`` while the ledger expects work is a failure result for
    the next expected codename (exit 2): the node's state is unknown and needs an operator.

    >>> import tempfile
    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"OPSFLOW_NU_LOCAL_DIR": tempfile.mkdtemp() + "/{node}"}):
    ...     apply(Path(tempfile.mkdtemp()), "nid001")  # an empty catalog: nothing pending
    []
    """
    spool.safe_name(node)
    catalog = load_catalog(root)
    if catalog.error:
        log.warning("%s: catalog error, applying nothing: %s", node, catalog.error)
        return []
    rec = _ledger_record(root, node)
    skip = list(skipped) if skipped is not None else (list(rec.skipped) if rec else [])
    try:
        level = read_level(node)
        problem = f"{level_path(node)}: missing (did the boot hook run?)"
    except NodeError as exc:
        level, problem = None, str(exc)
    if level is None:
        expected = catalog.pending_for(node, rec.level, skip) if rec else []
        if not expected:
            log.warning("%s: %s; nothing to apply", node, problem)
            return []
        result = _result(node, expected[0], EXIT_NO_LEVEL, f"level unknown, nothing run: {problem}\n")
        spool.write_result(root, result, log_text=result.log_tail)
        return [result]
    if not catalog.pending_for(node, level, skip):
        spool.write_report(root, LevelReport(node=node, level=level, at=time.time(), source="apply"))
        return []
    results: list[ApplyResult] = []
    while True:
        # The catalog is read again before each update: one retired meanwhile starts no more (F4), and a broken
        # catalog starts nothing new. The level rises with every success, so this ends.
        if results:
            catalog = load_catalog(root)
            if catalog.error:
                log.warning("%s: catalog error, stopping after %s: %s", node, level, catalog.error)
                break
        pending = catalog.pending_for(node, level, skip)
        if not pending:
            break
        codename = pending[0]
        result = _run_one(root, node, codename, timeout, kill_grace)
        if result.ok:
            write_level(node, codename)
            level = codename
        spool.write_result(root, result)
        results.append(result)
        if not result.ok:
            break
    return results


def _result(node: str, codename: str, exit_code: int, log_tail: str, step: str = SCRIPT_NAME) -> ApplyResult:
    return ApplyResult(
        node=node,
        codename=codename,
        ok=exit_code == 0,
        exit_code=exit_code,
        log_tail=log_tail,
        at=time.time(),
        step=step,
    )


def health_checks(bundle: Path, env: Mapping[str, str]) -> list[tuple[str, list[str]]]:
    """The checks after a bundle's update scripts, in order: its own ``check.sh`` if it has one, then the site's
    check command (``OPSFLOW_NU_CHECK_COMMAND``, split like a shell would, run without one): (step name, argv).

    >>> health_checks(Path("/nonexistent"), {"OPSFLOW_NU_CHECK_COMMAND": "node-health --quick"})
    [('site check', ['node-health', '--quick'])]
    """
    checks: list[tuple[str, list[str]]] = []
    if (bundle / CHECK_NAME).exists():
        checks.append((CHECK_NAME, [str(bundle / CHECK_NAME)]))
    site = env.get(CHECK_COMMAND_ENV, "").strip()
    if site:
        checks.append(("site check", shlex.split(site)))
    return checks


def _run_one(root: Path, node: str, codename: str, timeout: float, kill_grace: float) -> ApplyResult:
    bundle = bundle_dir(root, codename)
    script = bundle / SCRIPT_NAME
    logfile = spool.log_path(root, node, codename)
    logfile.parent.mkdir(parents=True, exist_ok=True)
    if not script.is_file():
        message = f"opsflow: {script}: missing or not a regular file; nothing run\n"
        atomic_write_text(logfile, message)
        return _result(node, codename, EXIT_NOT_FOUND, message)
    if not os.access(script, os.X_OK):
        message = f"opsflow: {script}: not executable; nothing run\n"
        atomic_write_text(logfile, message)
        return _result(node, codename, EXIT_NOT_EXECUTABLE, message)
    env = {
        **os.environ,
        "CODENAME": codename,
        "NODE": node,
        "BUNDLE_DIR": str(bundle),
        "LOCAL_DIR": str(local_dir(node)),
    }
    step = SCRIPT_NAME
    with open(logfile, "wb") as out:
        exit_code = _run_script([str(script)], bundle, env, out, timeout, kill_grace)
        # The seed's "same system checks used in NLM" before DONE: local.version is written only if they pass.
        for name, argv in health_checks(bundle, env) if exit_code == 0 else []:
            step = name
            out.write(f"\nopsflow: running {name}: {shlex.join(argv)}\n".encode())
            out.flush()
            exit_code = _run_script(argv, bundle, env, out, timeout, kill_grace)
            if exit_code != 0:
                break
    return _result(node, codename, exit_code, _tail(logfile), step if exit_code else SCRIPT_NAME)


def _run_script(
    argv: list[str], cwd: Path, env: dict[str, str], out: BinaryIO, timeout: float, kill_grace: float
) -> int:
    script = argv[0]
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a timeout kills everything it started
        )
    except OSError as exc:
        out.write(f"opsflow: cannot run {script}: {exc}\n".encode())
        return EXIT_NOT_EXECUTABLE
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc, kill_grace)
        out.write(f"\nopsflow: {script} timed out after {timeout:g} s; its process group was killed\n".encode())
        out.flush()
        return EXIT_TIMEOUT
    return 128 - code if code < 0 else code  # killed by signal N: 128+N, as a shell reports it


def _kill_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the script's process group, SIGKILL whatever is left after ``grace`` seconds."""
    _signal_group(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    _signal_group(proc.pid, signal.SIGKILL)  # also whatever it started, should the leader have gone first
    proc.wait()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _tail(path: Path, lines: int = TAIL_LINES, max_bytes: int = 64 * 1024) -> str:
    """The last ``lines`` lines of a log, reading at most its last ``max_bytes``."""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - max_bytes))
        data = fh.read()
    text = data.decode(errors="replace")
    return "\n".join(text.splitlines()[-lines:]) + ("\n" if text else "")
