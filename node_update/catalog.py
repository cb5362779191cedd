"""The active-updates catalog and the update bundles: parse (pure), publish and retire (atomic, under the lock).

``root/active-updates.list`` holds one active update per line (seed VI, F4, F5)::

    # codename      hostlist               options
    20261123120000  nid[001-004],nid007    canary=1
    20261125090000  nid[001-064]           canary=2 approval=pending
    20261201080000  nid[001-100]           # trailing comments are fine

``approval=pending`` (``publish --approve``) stops the rollout once its canary is DONE until an operator decides
(:func:`record_decision`: the line becomes ``approval=widened``, or is retired, with who, when and why beside it).
``root/updates/<codename>/update.sh`` is the bundle's executable; other files of the bundle are allowed.

Example:
    >>> cat = parse_catalog("20261123120000 nid[001-002]  # first\\n", "active-updates.list")
    >>> cat.entries[0].nodes, cat.error
    (['nid001', 'nid002'], None)
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import time
from pathlib import Path

import hostlist

from node_update.codename import CodenameError, parse_codename
from node_update.errors import NodeUpdateInputError
from node_update.models import CanaryDecision, Catalog, CatalogEntry
from node_update.spool import UnsafeNameError, root_lock, safe_name
from opsflow.errors import NotFoundError
from opsflow.files import atomic_write_bytes

CATALOG_NAME = "active-updates.list"
SCRIPT_NAME = "update.sh"
APPROVALS = ("pending", "widened")
_COUNT = re.compile(r"[0-9]+", re.ASCII)


class CatalogError(NodeUpdateInputError):
    """An operator mistake (publish, retire): the message names the value or file and why; nothing was changed."""


class UnknownCodenameError(CatalogError, NotFoundError):
    """Retiring an update the catalog does not hold."""


class _LineError(ValueError):
    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field}: {why}")


def catalog_path(root: Path) -> Path:
    """``root/active-updates.list``."""
    return root / CATALOG_NAME


def bundle_dir(root: Path, codename: str) -> Path:
    """``root/updates/<codename>`` (the codename is checked first).

    >>> bundle_dir(Path("/r"), "20260101000000")
    PosixPath('/r/updates/20260101000000')
    """
    return root / "updates" / safe_name(parse_codename(codename), "codename")


def expand_nodes(text: str) -> list[str]:
    """Expand a Slurm hostlist into sorted, unique, file-name-safe node names (F5); ``ValueError`` says why.

    >>> expand_nodes("nid[003,001-002],nid002")
    ['nid001', 'nid002', 'nid003']
    """
    try:
        nodes = hostlist.expand_hostlist(text)
    except hostlist.BadHostlist as exc:
        raise ValueError(f"{text!r} is not a Slurm hostlist: {exc}") from None
    if not nodes:
        raise ValueError(f"{text!r} names no node")
    for node in nodes:
        try:
            safe_name(node)
        except UnsafeNameError as exc:
            raise ValueError(str(exc)) from None
    return sorted(set(nodes))


def _parse_line(content: str) -> CatalogEntry:
    tokens = content.split()
    try:
        codename = parse_codename(tokens[0])
    except CodenameError as exc:
        raise _LineError("codename", f"{exc.value!r}: {exc.why}") from None
    if len(tokens) < 2:
        raise _LineError("hostlist", "missing (expected '<codename> <hostlist> [canary=N]')")
    try:
        nodes = expand_nodes(tokens[1])
    except ValueError as exc:
        raise _LineError("hostlist", str(exc)) from None
    canary: int | None = None
    approval: str | None = None
    for token in tokens[2:]:
        name, _, value = token.partition("=")
        if name == "canary" and _:
            if canary is not None:
                raise _LineError("canary", "given twice")
            if not _COUNT.fullmatch(value):
                raise _LineError("canary", f"{value!r} is not a whole number >= 0")
            canary = int(value)
        elif name == "approval" and _:
            if approval is not None:
                raise _LineError("approval", "given twice")
            if value not in APPROVALS:
                raise _LineError("approval", f"{value!r} is not one of {', '.join(APPROVALS)}")
            approval = value
        else:
            raise _LineError("options", f"unknown {token!r} (expected canary=N or approval=pending|widened)")
    if approval and not canary:
        raise _LineError("approval", "an approval gate needs canary=N (N >= 1): it waits after the canary")
    return CatalogEntry(codename=codename, nodes=nodes, canary=canary or 0, approval=approval or "")


def parse_catalog(text: str, path: str = CATALOG_NAME) -> Catalog:
    """Parse the catalog text (F4, F5): good lines become entries; the first bad line sets ``Catalog.error``.

    A bad line never raises: the message ``"<path>:<line>: <field>: <why>"`` is kept so the tick starts nothing
    new while running work finishes. ``field`` is ``codename``, ``hostlist``, ``canary`` or ``options``.

    >>> parse_catalog("20260101000000 nid[001-002]\\n2026 nid001\\n", "a.list").error
    "a.list:2: codename: '2026': expected 14 digits YYYYmmddHHMMSS"
    """
    entries: list[CatalogEntry] = []
    first_line: dict[str, int] = {}
    error: str | None = None
    for lineno, raw in enumerate(text.split("\n"), start=1):
        content = raw.split("#", 1)[0].strip()
        if not content:
            continue
        try:
            entry = _parse_line(content)
            if entry.codename in first_line:
                raise _LineError("codename", f"{entry.codename} is already on line {first_line[entry.codename]}")
        except _LineError as exc:
            error = error or f"{path}:{lineno}: {exc}"
            continue
        first_line[entry.codename] = lineno
        entries.append(entry.model_copy(update={"line": lineno}))
    return Catalog(entries=entries, error=error)


def render_entry(entry: CatalogEntry) -> str:
    """The catalog line of ``entry`` (hostlist collected back to Slurm syntax); parses back to the same entry.

    >>> render_entry(CatalogEntry(codename="20260101000000", nodes=["nid001", "nid002", "nid007"], canary=1))
    '20260101000000 nid[001-002,007] canary=1'
    """
    line = f"{entry.codename} {hostlist.collect_hostlist(entry.nodes)}"
    line = f"{line} canary={entry.canary}" if entry.canary else line
    return f"{line} approval={entry.approval}" if entry.approval else line


def _read(root: Path) -> bytes:
    try:
        return catalog_path(root).read_bytes()
    except FileNotFoundError:
        return b""


def load_catalog(root: Path) -> Catalog:
    """Read and parse ``root/active-updates.list``; a missing file is an empty catalog.

    >>> load_catalog(Path("/nonexistent")).entries
    []
    """
    return parse_catalog(_read(root).decode(errors="replace"), str(catalog_path(root)))


def _check_script(directory: Path) -> None:
    script = directory / SCRIPT_NAME
    try:
        mode = script.stat().st_mode
    except FileNotFoundError:
        raise CatalogError(f"{script}: missing (a bundle needs an executable {SCRIPT_NAME})") from None
    except OSError as exc:
        raise CatalogError(f"{script}: cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise CatalogError(f"{script}: not a regular file")
    if not os.access(script, os.X_OK):
        raise CatalogError(f"{script}: not executable (chmod +x it)")


def _signature(directory: Path) -> dict[str, tuple[str, bytes | bool]]:
    """What makes two bundles the same: every relative path, its kind, its bytes and its executable bit."""
    sig: dict[str, tuple[str, bytes | bool]] = {}
    for path in sorted(directory.rglob("*")):
        rel = str(path.relative_to(directory))
        if path.is_dir():
            sig[rel] = ("dir", True)
        elif path.is_file():
            sig[rel] = ("file", path.read_bytes())
            sig[rel + "\0x"] = ("mode", os.access(path, os.X_OK))
        else:
            sig[rel] = ("other", False)
    return sig


def _check_source(source: Path) -> None:
    if not source.is_dir():
        raise CatalogError(f"{source}: bundle is not a directory")
    _check_script(source)


def _install_bundle(source: Path, dest: Path) -> None:
    """Copy ``source`` to ``dest`` via a temporary directory beside it and a rename (all or nothing)."""
    _check_source(source)
    if dest.exists():
        if source.resolve() == dest.resolve():
            return
        if _signature(source) != _signature(dest):
            raise CatalogError(f"{dest}: already exists with different content (a codename names one bundle)")
        return  # same content: a publish repeated after a crash
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
    try:
        shutil.copytree(source, tmp, dirs_exist_ok=True)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write(root: Path, data: bytes) -> None:
    atomic_write_bytes(catalog_path(root), data)


def publish(
    root: Path,
    codename: str,
    nodes: str,
    canary: int = 0,
    bundle: Path | None = None,
    lock_timeout: float = 60.0,
    approve: bool = False,
) -> CatalogEntry:
    """Publish an update (F4, F5): copy the bundle in if given, then append its catalog line atomically.

    ``approve``: once its ``canary`` nodes are DONE the update waits for an operator's decision (``approval=pending``).
    Everything is checked before anything changes: the codename, the hostlist, ``canary >= 0``, a catalog without
    errors that does not hold the codename yet, and an executable ``update.sh`` in the bundle. Raises
    :class:`CatalogError` naming the value and why.

    >>> import tempfile
    >>> root, src = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
    >>> _ = (src / "update.sh").write_text("#!/bin/sh\\n"); (src / "update.sh").chmod(0o755)
    >>> publish(root, "20260101000000", "nid[001-002]", bundle=src).nodes
    ['nid001', 'nid002']
    """
    try:
        codename = parse_codename(codename)
    except CodenameError as exc:
        raise CatalogError(str(exc)) from None
    try:
        node_list = expand_nodes(nodes)
    except ValueError as exc:
        raise CatalogError(f"--nodes: {exc}") from None
    if not isinstance(canary, int) or canary < 0:
        raise CatalogError(f"--canary: {canary!r} is not a whole number >= 0")
    if approve and not canary:
        raise CatalogError("--approve: needs --canary N (N >= 1): the decision is taken once the canary is done")
    if bundle is not None:
        _check_source(Path(bundle))  # operator mistakes in the source need no lock
    with root_lock(root, timeout=lock_timeout):
        data = _read(root)
        current = parse_catalog(data.decode(errors="replace"), str(catalog_path(root)))
        if current.error:
            raise CatalogError(f"refusing to publish while the catalog has an error: {current.error}")
        for existing in current.entries:
            if existing.codename == codename:
                raise CatalogError(f"{codename}: published twice (line {existing.line} of {catalog_path(root)})")
        dest = bundle_dir(root, codename)
        if bundle is not None:
            _install_bundle(Path(bundle), dest)
        _check_script(dest)
        entry = CatalogEntry(codename=codename, nodes=node_list, canary=canary, approval="pending" if approve else "")
        if data and not data.endswith(b"\n"):
            data += b"\n"
        line = render_entry(entry)
        _write(root, data + line.encode() + b"\n")
    return entry.model_copy(update={"line": data.count(b"\n") + 1})


def retire(root: Path, codename: str, lock_timeout: float = 60.0) -> CatalogEntry:
    """Retire an update (F4): remove its line atomically; every other byte of the file stays as it was.

    Nodes stop needing it at once; a running ``update.sh`` finishes (its bundle stays in ``updates/``).
    Raises :class:`CatalogError` for an invalid or unknown codename.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> _ = catalog_path(root).write_text("20260101000000 nid001\\n")
    >>> retire(root, "20260101000000").codename, catalog_path(root).read_text()
    ('20260101000000', '')
    """
    try:
        codename = parse_codename(codename)
    except CodenameError as exc:
        raise CatalogError(str(exc)) from None
    with root_lock(root, timeout=lock_timeout):
        data = _read(root)
        kept: list[bytes] = []
        removed: list[int] = []
        # Lines end at "\n" exactly as parse_catalog counts them; a removed line takes its own "\n" with it.
        parts = data.split(b"\n")
        lines = [part + b"\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
        for lineno, raw in enumerate(lines, start=1):
            tokens = raw.split(b"#", 1)[0].split()
            if tokens and tokens[0] == codename.encode():
                removed.append(lineno)
            else:
                kept.append(raw)
        if not removed:
            raise UnknownCodenameError(f"{codename}: not in {catalog_path(root)} (unknown codename)")
        parsed = parse_catalog(data.decode(errors="replace"), str(catalog_path(root)))
        entry = parsed.find(codename)
        _write(root, b"".join(kept))
    return entry or CatalogEntry(codename=codename, nodes=[], line=removed[0])


def _one_line(text: str) -> str:
    """A comment that stays on its catalog line: control characters (newlines included) become spaces."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def record_decision(
    root: Path, codename: str, decision: CanaryDecision, by: str, at: float, lock_timeout: float = 60.0
) -> CatalogEntry:
    """Record an operator's decision on a gated update in the catalog, atomically; returns the entry as it was.

    widen: the line becomes ``approval=widened`` with a trailing comment saying who, when, why (and the new
    res_limit, which the caller applies to the settings); retire: the line is removed (F4) and a comment line in
    its place keeps the decision. Raises :class:`CatalogError` when the update waits for no decision.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> _ = catalog_path(root).write_text("20260101000000 nid[001-004] canary=1 approval=pending\\n")
    >>> _ = record_decision(root, "20260101000000", CanaryDecision(comment="ok"), by="alice", at=0)
    >>> catalog_path(root).read_text()
    '20260101000000 nid[001-004] canary=1 approval=widened  # widened by alice at 1970-01-01T00:00:00Z: ok\\n'
    """
    try:
        codename = parse_codename(codename)
    except CodenameError as exc:
        raise CatalogError(str(exc)) from None
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
    with root_lock(root, timeout=lock_timeout):
        data = _read(root)
        parsed = parse_catalog(data.decode(errors="replace"), str(catalog_path(root)))
        entry = parsed.find(codename)
        if entry is None:
            raise UnknownCodenameError(f"{codename}: not in {catalog_path(root)} (unknown codename)")
        if entry.approval != "pending":
            state = f"approval={entry.approval}" if entry.approval else "published without --approve"
            raise CatalogError(f"{codename}: waits for no decision ({state})")
        limit = f", res_limit {decision.res_limit}" if decision.res_limit else ""
        why = f": {_one_line(decision.comment)}" if decision.comment.strip() else ""
        if decision.action == "widen":
            widened = entry.model_copy(update={"approval": "widened"})
            line = f"{render_entry(widened)}  # widened by {_one_line(by)} at {when}{limit}{why}"
        else:
            line = f"# {render_entry(entry)}  # retired after its canary by {_one_line(by)} at {when}{why}"
        lines = data.split(b"\n")  # every other byte of the file stays as it was
        lines[entry.line - 1] = line.encode()
        _write(root, b"\n".join(lines))
    return entry
