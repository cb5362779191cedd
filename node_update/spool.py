"""The shared root's message files and state: node reports, apply results and logs, the ledger, the lock.

Nodes never talk to anything central (seed VI-F, F3): they drop files here with an atomic rename, and the tick
reads them all at once. One file per node (reports) or per node and update (results), so 10,000 epilogs never
pile up. A file that cannot be read is skipped and named in the returned problems: one bad file never stops a
tick. Every name that becomes part of a path is checked first (:func:`safe_name`); nothing leaves the root.

Layout under ``root``::

    spool/reports/<node>.json             LevelReport (overwritten: a node's latest level)
    spool/results/<node>.<codename>.json  ApplyResult of one update.sh run
    spool/logs/<node>.<codename>.log      full output of that run
    state/nodes.json                      Ledger (the tick's memory between ticks)
    state/lock                            flock: one tick or operator command acts at a time

Example:
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> write_report(root, LevelReport(node="nid001", level="20260101000000", at=0.0))
    >>> read_reports(root)
    ([LevelReport(node='nid001', level='20260101000000', at=0.0, source='epilog')], [])
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel, ValidationError

from node_update.errors import NodeUpdateInputError
from node_update.models import ApplyResult, Ledger, LevelReport
from opsflow.errors import OpsflowError
from opsflow.files import atomic_write_text

_SAFE = re.compile(r"[A-Za-z0-9._-]+", re.ASCII)
MAX_NAME = 200


class SpoolError(OpsflowError, ValueError):
    """A problem with the shared root: an unsafe name, an unreadable ledger, a lock not obtained."""


class UnsafeNameError(SpoolError, NodeUpdateInputError):
    """A node name or codename that must not become part of a path (bad input)."""


class LockTimeout(SpoolError):
    """Another tick or operator command held the root's lock for longer than the timeout."""


def safe_name(value: str, what: str = "node name") -> str:
    """Return ``value`` if it may be used in a file name: ``[A-Za-z0-9._-]+``, no ``..``, not starting with ``.``.

    >>> safe_name("nid001")
    'nid001'
    >>> try:
    ...     safe_name("../x")
    ... except UnsafeNameError as exc:
    ...     print(exc)
    node name '../x': only letters, digits, '.', '_' and '-' are allowed
    """
    if not isinstance(value, str) or not _SAFE.fullmatch(value):
        raise UnsafeNameError(f"{what} {value!r}: only letters, digits, '.', '_' and '-' are allowed")
    if ".." in value or value.startswith("."):
        raise UnsafeNameError(f"{what} {value!r}: must not start with '.' or contain '..'")
    if len(value) > MAX_NAME:
        raise UnsafeNameError(f"{what} {value[:20]!r}...: longer than {MAX_NAME} characters")
    return value


def _inside(root: Path, *parts: str) -> Path:
    """``root/parts...``, refused if it would leave ``root`` (belt and braces after :func:`safe_name`)."""
    path = root.joinpath(*parts)
    base = os.path.normpath(root)
    if os.path.commonpath([base, os.path.normpath(path)]) != base or os.path.normpath(path) == base:
        raise UnsafeNameError(f"{path}: leaves the root {root}")
    return path


def reports_dir(root: Path) -> Path:
    return root / "spool" / "reports"


def results_dir(root: Path) -> Path:
    return root / "spool" / "results"


def logs_dir(root: Path) -> Path:
    return root / "spool" / "logs"


def ledger_path(root: Path) -> Path:
    return root / "state" / "nodes.json"


def lock_path(root: Path) -> Path:
    return root / "state" / "lock"


def report_path(root: Path, node: str) -> Path:
    """``root/spool/reports/<node>.json`` (the name is checked)."""
    return _inside(root, "spool", "reports", f"{safe_name(node)}.json")


def result_path(root: Path, node: str, codename: str) -> Path:
    """``root/spool/results/<node>.<codename>.json`` (both names checked)."""
    return _inside(root, "spool", "results", f"{safe_name(node)}.{safe_name(codename, 'codename')}.json")


def log_path(root: Path, node: str, codename: str) -> Path:
    """``root/spool/logs/<node>.<codename>.log``: the full output of that ``update.sh`` run."""
    return _inside(root, "spool", "logs", f"{safe_name(node)}.{safe_name(codename, 'codename')}.log")


@contextmanager
def root_lock(root: Path, timeout: float = 60.0, poll: float = 0.05) -> Iterator[None]:
    """Hold the root's ``state/lock`` (fcntl.flock) so one tick or operator command acts at a time.

    Blocks up to ``timeout`` seconds, then raises :class:`LockTimeout` naming the holder. Not re-entrant: a
    holder that calls another locking function of this package waits for itself.

    >>> import tempfile
    >>> with root_lock(Path(tempfile.mkdtemp())):
    ...     pass
    """
    path = lock_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _read_holder(fd)
                    raise LockTimeout(
                        f"{path}: held by another tick or operator command{holder} for more than {timeout:g} s"
                    ) from None
                time.sleep(poll)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {os.uname().nodename}\n".encode(), 0)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode(errors="replace").strip()
    except OSError:
        return ""
    return f" ({text})" if text else ""


def _load(path: Path, model: type[BaseModel]) -> BaseModel:
    return model.model_validate_json(path.read_bytes())


def _listing(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if p.name.endswith(".json") and not p.name.startswith("."))
    except FileNotFoundError:
        return []


def write_report(root: Path, report: LevelReport) -> None:
    """Replace ``node``'s report with ``report`` (atomic rename; a node has one report file).

    >>> import tempfile
    >>> write_report(Path(tempfile.mkdtemp()), LevelReport(node="nid001", level="20260101000000", at=1.0))
    """
    atomic_write_text(report_path(root, report.node), report.model_dump_json() + "\n")


REREAD_MARGIN_NS = 10 * 10**9


def read_reports(root: Path, since_ns: int = 0) -> tuple[list[LevelReport], list[str]]:
    """Every node's latest report (those written at or after ``since_ns``), and one problem line per file that
    could not be used (that file is skipped).

    >>> import tempfile
    >>> read_reports(Path(tempfile.mkdtemp()))
    ([], [])
    """
    reports, problems, _ = read_new_reports(root, since_ns)
    return reports, problems


def read_new_reports(root: Path, since_ns: int) -> tuple[list[LevelReport], list[str], int]:
    """Reports whose file changed at or after ``since_ns`` (mtime, ns), the problems, and the newest mtime seen.

    A node has one report file that it overwrites, so the tick leaves the files in place and remembers how far it
    has read (F3: with 10,000 nodes a steady-state tick reads no report at all). The mark it returns trails the
    newest file by ``REREAD_MARGIN_NS``: an atomic write gets the time of its temporary file, which may be older
    than a file renamed into place before it, and rereading a report changes nothing. Times are the shared
    filesystem's own, never this host's clock.

    >>> import tempfile
    >>> read_new_reports(Path(tempfile.mkdtemp()), 0)
    ([], [], 0)
    """
    reports: list[LevelReport] = []
    problems: list[str] = []
    try:
        entries = list(os.scandir(reports_dir(root)))  # unsorted: the reports are sorted once, at the end
    except FileNotFoundError:
        return [], [], since_ns
    top = 0  # the newest mtime read
    for entry in entries:
        name = entry.name
        if not name.endswith(".json") or name.startswith("."):
            continue
        try:
            stat = entry.stat()
            mtime = stat.st_mtime_ns
            if mtime < since_ns:
                continue
            report = LevelReport.model_validate_json(_read_small(entry.path, stat.st_size))
        except FileNotFoundError:
            continue  # replaced meanwhile
        except (OSError, ValidationError) as exc:
            problems.append(f"{entry.path}: unreadable report: {_why(exc)}")
            continue
        if report.node + ".json" != name:
            problems.append(f"{entry.path}: report names node {report.node!r}, not the file's node")
            continue
        if mtime > top:
            top = mtime
        reports.append(report)
    newest = max(since_ns, top - REREAD_MARGIN_NS) if reports else since_ns
    reports.sort(key=lambda r: r.node)
    problems.sort()
    return reports, problems, newest


def _read_small(path: str, size: int) -> bytes:
    """A small file's bytes, ``size`` its length as a stat saw it.

    os.open/os.read, not open() or Path: for 10,000 reports a tick, building a buffered file object (or a Path)
    costs more than the read itself. One read of ``size + 1`` bytes that returns exactly ``size`` is the whole
    file (the same length as stat saw, and nothing after it), so the usual read that confirms the end is saved;
    a file that changed since its stat is read on to its end.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "r.json"; _ = path.write_bytes(b"x" * 70000)
    >>> len(_read_small(str(path), 70000)), len(_read_small(str(path), 3))
    (70000, 70000)
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunk = os.read(fd, size + 1)
        if len(chunk) == size:
            return chunk
        chunks = [chunk]
        while chunks[-1]:
            chunks.append(os.read(fd, 65536))
        return b"".join(chunks)
    finally:
        os.close(fd)


def consume_reports(root: Path, reports: list[LevelReport]) -> None:
    """Delete the report files the tick recorded, unless a node replaced one since it was read (kept then).

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> write_report(root, LevelReport(node="nid001", level="20260101000000", at=1.0))
    >>> reports, _ = read_reports(root)
    >>> consume_reports(root, reports); read_reports(root)
    ([], [])
    """
    for report in reports:
        _consume(report_path(root, report.node), report)


def write_result(root: Path, result: ApplyResult, log_text: str | None = None) -> None:
    """Write one ``update.sh`` run's result (atomic), and its full log when ``log_text`` is given.

    ``node.apply`` streams the output straight into :func:`log_path` while the script runs, so it passes no text.

    >>> import tempfile
    >>> r = ApplyResult(node="nid001", codename="20260101000000", ok=True, exit_code=0, at=1.0)
    >>> write_result(Path(tempfile.mkdtemp()), r, "done\\n")
    """
    if log_text is not None:
        atomic_write_text(log_path(root, result.node, result.codename), log_text)
    atomic_write_text(result_path(root, result.node, result.codename), result.model_dump_json() + "\n")


def read_results(root: Path) -> tuple[list[ApplyResult], list[str]]:
    """Every result waiting in the spool (sorted by node, codename), and one problem line per unusable file.

    >>> import tempfile
    >>> read_results(Path(tempfile.mkdtemp()))
    ([], [])
    """
    results: list[ApplyResult] = []
    problems: list[str] = []
    for path in _listing(results_dir(root)):
        try:
            result = ApplyResult.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            continue
        except (OSError, ValidationError) as exc:
            problems.append(f"{path}: unreadable result: {_why(exc)}")
            continue
        if f"{result.node}.{result.codename}.json" != path.name:
            problems.append(f"{path}: result names {result.node!r} / {result.codename!r}, not the file's")
            continue
        results.append(result)
    results.sort(key=lambda r: (r.node, r.codename))
    return results, problems


def consume_results(root: Path, results: list[ApplyResult]) -> None:
    """Delete the result files the tick recorded (logs stay for the operator); a rewritten file is kept.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> write_result(root, ApplyResult(node="nid001", codename="20260101000000", ok=True, exit_code=0, at=1.0))
    >>> results, _ = read_results(root)
    >>> consume_results(root, results); read_results(root)
    ([], [])
    """
    for result in results:
        _consume(result_path(root, result.node, result.codename), result)


def _consume(path: Path, seen: BaseModel) -> None:
    # Compare before unlinking so a file a node rewrote after the tick read it survives for the next tick; the
    # remaining window (rewrite between compare and unlink) only loses a message the node's next check repeats.
    try:
        current = _load(path, type(seen))
    except FileNotFoundError:
        return
    except (OSError, ValidationError):
        current = None
    if current == seen:
        path.unlink(missing_ok=True)


def load_ledger(root: Path) -> Ledger:
    """The tick's ledger (``state/nodes.json``); an empty one when the file does not exist yet.

    A damaged ledger raises :class:`SpoolError` naming the file: the tick must not start from a guess.

    >>> import tempfile
    >>> load_ledger(Path(tempfile.mkdtemp()))
    Ledger(nodes={}, reports_seen_ns=0, last_reservation=None)
    """
    path = ledger_path(root)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Ledger()
    try:
        return Ledger.model_validate_json(data)
    except ValidationError as exc:
        raise SpoolError(f"{path}: damaged ledger: {_why(exc)}") from None


def save_ledger(root: Path, ledger: Ledger) -> None:
    """Replace the ledger atomically. Fields at their default are left out: the file is half the size, and a
    10,000-node tick reads and writes it every time (it loads back to the same ledger).

    >>> import tempfile
    >>> from node_update.models import NodeRecord
    >>> root = Path(tempfile.mkdtemp())
    >>> save_ledger(root, Ledger(nodes={"nid001": NodeRecord(level="20260101000000")}))
    >>> load_ledger(root).nodes["nid001"].level
    '20260101000000'
    """
    atomic_write_text(ledger_path(root), ledger.model_dump_json(indent=1, exclude_defaults=True) + "\n")


def intent_path(root: Path) -> Path:
    return root / "state" / "reservation-intent.json"


def save_intent(root: Path, nodes: list[str] | None) -> None:
    """Record the reservation a tick is about to set, before it sets it (a tick killed right after is no
    "manual edit" to the next one).

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> save_intent(root, ["nid001"]); load_intent(root)
    ['nid001']
    """
    atomic_write_text(intent_path(root), json.dumps(sorted(nodes or [])) + "\n")


def load_intent(root: Path) -> list[str] | None:
    """What :func:`save_intent` last recorded; None when nothing (or something unreadable) was."""
    try:
        data = json.loads(intent_path(root).read_text())
    except (OSError, ValueError):
        return None
    return [str(n) for n in data] if isinstance(data, list) else None


def _why(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        errs = exc.errors()
        first = errs[0]
        loc = ".".join(str(p) for p in first["loc"]) or "(file)"
        more = f" (+{len(errs) - 1} more)" if len(errs) > 1 else ""
        return f"{loc}: {first['msg']}{more}"
    return str(exc)
