"""Resumable uploads on disk: ``<root>/.uploads/<id>/{info.json,data}``, moved into place when complete.

The server side of the tus protocol (:mod:`stage_pipeline.file_service` speaks the HTTP): an upload is created
with its length and destination, receives bytes at its offset, and when the last byte is in and its SHA-256
matches, is hard-linked to the destination (which must not exist: nothing is overwritten) and sealed read-only.

- The offset is the size of ``data``: what reached the disk is what counts, so a server killed mid-write resumes
  from the bytes it really has, and a client killed at any byte resumes from :meth:`UploadStore.offset`.
- A partial upload is never visible at its destination; ``.uploads`` is hidden from every listing.
- A full disk keeps the bytes written so far (:class:`DiskFull`); the client resumes once space is freed.
- One writer per upload at a time (an ``flock`` on ``info.json``): a second PATCH gets :class:`UploadBusy`.
- The running SHA-256 lives in memory, keyed by upload and offset; after a server restart it is recomputed
  once from ``data``.

Example:
    >>> import tempfile, hashlib, io
    >>> store = UploadStore(Path(tempfile.mkdtemp()))
    >>> body = b"frame" * 1000
    >>> up = store.create("resources/clip.bin", len(body), {"sha256": hashlib.sha256(body).hexdigest()})
    >>> store.append(up.id, 0, iter([body[:100]])).offset
    100
    >>> done = store.append(up.id, 100, iter([body[100:]]))
    >>> done.complete, (store.root / "resources" / "clip.bin").read_bytes() == body
    (True, True)
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import secrets
import stat
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field

from opsflow.errors import NotFoundError, OpsflowError
from opsflow.files import atomic_write_text
from stage_pipeline.file_rules import check_path, parse_sha256, upload_area
from stage_pipeline.workspace import SEALED_GID, SEALED_UID

UPLOADS = ".uploads"
#: Known hashes of finished uploads (path → sha256, size, mtime), shown by listings while the file is unchanged.
HASHES = "hashes.json"


class UploadNotFound(NotFoundError):
    """No upload of that id (finished, terminated, or never created)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "no such upload"


class UploadConflict(OpsflowError):
    """The request does not fit the upload's state: wrong offset, too many bytes, destination taken."""


class UploadBusy(OpsflowError):
    """Another request is writing this upload right now (tus clients retry)."""


class DiskFull(OpsflowError, OSError):
    """No space left while writing; the bytes written so far are kept for resuming."""


class ChecksumMismatch(OpsflowError):
    """A chunk's Upload-Checksum or the finished file's SHA-256 does not match what the client sent."""


class Upload(BaseModel):
    """One upload: where it goes, how long it is, how far it got."""

    id: str
    path: str = Field(description="destination, relative to the store's root")
    length: int = Field(ge=0)
    metadata: dict[str, str] = Field(default_factory=dict)
    created: datetime
    offset: int = 0
    complete: bool = False
    sha256: str | None = Field(None, description="of the finished file")


class KnownHash(BaseModel):
    sha256: str
    size: int
    mtime_ns: int


def _now() -> datetime:
    return datetime.now(UTC)


class UploadStore:
    """Uploads under ``<root>/.uploads``; destinations under ``root`` (see the module docstring)."""

    def __init__(self, root: Path, max_size: int = 1 << 40) -> None:
        self.root = Path(root)
        self.dir = self.root / UPLOADS
        self.max_size = max_size
        self._hashers: dict[str, tuple[int, hashlib._Hash]] = {}
        self._lock = threading.Lock()

    # --- paths and records ----------------------------------------------------------------------------------

    def _updir(self, upload_id: str) -> Path:
        if not upload_id.isalnum() or len(upload_id) > 64:
            raise UploadNotFound(f"no upload {upload_id!r}")
        return self.dir / upload_id

    def _info(self, upload_id: str) -> Upload:
        try:
            text = (self._updir(upload_id) / "info.json").read_text()
        except FileNotFoundError:
            raise UploadNotFound(f"no upload {upload_id!r} (finished, terminated or never created)") from None
        upload = Upload.model_validate_json(text)
        upload.offset = (self._updir(upload_id) / "data").stat().st_size
        return upload

    def get(self, upload_id: str) -> Upload:
        """The upload with its current offset (the size of what reached the disk)."""
        return self._info(upload_id)

    def destination(self, path: str) -> Path:
        return self.root.joinpath(*check_path(path))

    # --- tus: creation, HEAD, PATCH, DELETE -----------------------------------------------------------------

    def create(self, path: str, length: int, metadata: dict[str, str] | None = None) -> Upload:
        """A new, empty upload to ``path`` (checked: writable area, free name, size within limits)."""
        meta = dict(metadata or {})
        parts = check_path(path)
        area = upload_area(parts)
        if area.startswith("projects/") and not (self.root / "projects" / parts[1] / "project.json").is_file():
            raise UploadNotFound(f"no project {parts[1]!r}: create it before uploading its input")
        if length > self.max_size:
            raise UploadConflict(f"{length} bytes is more than this service takes ({self.max_size})")
        if "sha256" in meta:
            meta["sha256"] = parse_sha256(meta["sha256"])
        target = self.destination(path)
        if target.exists() or target.is_symlink():
            raise UploadConflict(f"{path} exists already: uploads never overwrite (delete it or pick another name)")
        upload = Upload(id=secrets.token_hex(16), path="/".join(parts), length=length, metadata=meta, created=_now())
        updir = self._updir(upload.id)
        updir.mkdir(parents=True, mode=0o700)
        (updir / "data").touch()
        atomic_write_text(updir / "info.json", upload.model_dump_json(indent=2))
        if length == 0:
            return self._finish(upload)
        return upload

    def _lock_upload(self, upload_id: str, wait_s: float = 2.0) -> int:
        """The upload's write lock (an open fd); a request still draining a dead client's body gets ``wait_s``."""
        try:
            fd = os.open(self._updir(upload_id) / "info.json", os.O_RDONLY)
        except FileNotFoundError:
            raise UploadNotFound(f"no upload {upload_id!r} (finished, terminated or never created)") from None
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise UploadBusy(f"upload {upload_id} is being written by another request") from None
                time.sleep(0.05)

    def writer(self, upload_id: str, offset: int, checksum: tuple[str, bytes] | None = None) -> UploadWriter:
        """Start writing at ``offset``, which must be the upload's offset (tus PATCH); close it in any case."""
        lock = self._lock_upload(upload_id)
        try:
            upload = self._info(upload_id)
            if offset != upload.offset:
                raise UploadConflict(f"Upload-Offset {offset} is not the upload's offset {upload.offset}")
            return UploadWriter(self, upload, lock, checksum)
        except BaseException:
            os.close(lock)
            raise

    def append(
        self, upload_id: str, offset: int, chunks: Iterable[bytes], checksum: tuple[str, bytes] | None = None
    ) -> Upload:
        """Write ``chunks`` at ``offset`` and end the request (see :class:`UploadWriter`)."""
        with self.writer(upload_id, offset, checksum) as w:
            for chunk in chunks:
                w.write(chunk)
            return w.end()

    def terminate(self, upload_id: str) -> None:
        """tus termination: the upload and its bytes are gone."""
        lock = self._lock_upload(upload_id)
        try:
            updir = self._updir(upload_id)
            os.unlink(updir / "data")
            os.unlink(updir / "info.json")
            os.rmdir(updir)
        finally:
            os.close(lock)
        self._forget_hasher(upload_id)

    # --- the end of an upload -------------------------------------------------------------------------------

    def _finish(self, upload: Upload) -> Upload:
        updir = self._updir(upload.id)
        data = updir / "data"
        digest = self._hasher(upload.id, data, upload.length).hexdigest()
        expected = upload.metadata.get("sha256")
        if expected is not None and digest != expected:
            self._forget_hasher(upload.id)
            os.truncate(data, 0)
            raise ChecksumMismatch(
                f"{upload.path}: SHA-256 of the received bytes is {digest}, the client announced {expected}; "
                "the bytes were dropped: upload again"
            )
        target = self.destination(upload.path)
        with _writable_parents(self.root, target.parent):
            try:
                os.link(data, target)  # fails if the name was taken meanwhile: never an overwrite
            except FileExistsError:
                raise UploadConflict(f"{upload.path} appeared while uploading: the upload is kept") from None
            _seal_file(target)
        info = target.stat()
        self._remember(upload.path, KnownHash(sha256=digest, size=info.st_size, mtime_ns=info.st_mtime_ns))
        os.unlink(updir / "info.json")
        os.unlink(data)
        os.rmdir(updir)
        self._forget_hasher(upload.id)
        return upload.model_copy(update={"complete": True, "offset": upload.length, "sha256": digest})

    # --- the running hash -----------------------------------------------------------------------------------

    def _hasher(self, upload_id: str, data: Path, offset: int) -> hashlib._Hash:
        with self._lock:
            kept = self._hashers.get(upload_id)
        if kept is not None and kept[0] == offset:
            return kept[1]
        hasher = hashlib.sha256()  # after a restart (or a cut-off chunk): recomputed once from the disk
        with open(data, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                hasher.update(block)
        self._keep_hasher(upload_id, offset, hasher)
        return hasher

    def _keep_hasher(self, upload_id: str, offset: int, hasher: hashlib._Hash) -> None:
        with self._lock:
            self._hashers[upload_id] = (offset, hasher)

    def _forget_hasher(self, upload_id: str) -> None:
        with self._lock:
            self._hashers.pop(upload_id, None)

    # --- known hashes ---------------------------------------------------------------------------------------

    def _hash_file(self) -> Path:
        return self.dir / HASHES

    def known_hashes(self) -> dict[str, KnownHash]:
        try:
            raw = json.loads(self._hash_file().read_text())
        except FileNotFoundError:
            return {}
        return {path: KnownHash.model_validate(v) for path, v in raw.items()}

    def _remember(self, path: str, known: KnownHash) -> None:
        with self._lock:
            hashes = self.known_hashes()
            hashes[path] = known
            data = {p: h.model_dump() for p, h in hashes.items()}
            atomic_write_text(self._hash_file(), json.dumps(data, indent=1, sort_keys=True))


class UploadWriter:
    """One PATCH: bytes appended at the upload's offset under its lock (a context manager; ``end`` at the end).

    Bytes that reached the disk stay even when the stream breaks (the client resumes after them). With a
    ``checksum`` (tus checksum extension) the request's bytes are verified at :meth:`end` and, if wrong, cut off.
    """

    def __init__(self, store: UploadStore, upload: Upload, lock: int, checksum: tuple[str, bytes] | None) -> None:
        self.store, self.upload, self._lock, self._checksum = store, upload, lock, checksum
        self.start = upload.offset
        self._data = store._updir(upload.id) / "data"
        self._hasher = store._hasher(upload.id, self._data, upload.offset)
        self._chunk_hash = hashlib.new(checksum[0]) if checksum else None
        self._fd = os.open(self._data, os.O_WRONLY | os.O_APPEND)

    def __enter__(self) -> UploadWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(self, chunk: bytes | bytearray) -> None:
        if not chunk:
            return
        upload = self.upload
        if upload.offset + len(chunk) > upload.length:
            raise UploadConflict(f"more bytes than the Upload-Length of {upload.length}")
        try:
            _write_all(self._fd, chunk)
        except OSError as exc:
            # What landed of this chunk counts: the offset is the file's size.
            upload.offset = os.fstat(self._fd).st_size
            self.store._forget_hasher(upload.id)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFull(
                    f"no space left on the store's disk after {upload.offset} of {upload.length} bytes of "
                    f"{upload.path}; they are kept: resume the upload once space is freed"
                ) from None
            raise
        upload.offset += len(chunk)
        self._hasher.update(chunk)
        if self._chunk_hash is not None:
            self._chunk_hash.update(chunk)
        self.store._keep_hasher(upload.id, upload.offset, self._hasher)

    def end(self) -> Upload:
        """The request's body is complete: verify its checksum; at the upload's length, finish it."""
        os.close(self._fd)
        self._fd = -1
        if self._checksum and self._chunk_hash and self._chunk_hash.digest() != self._checksum[1]:
            os.truncate(self._data, self.start)
            self.store._forget_hasher(self.upload.id)
            raise ChecksumMismatch(f"the bytes at offset {self.start} do not match their Upload-Checksum; cut off")
        if self.upload.offset == self.upload.length:
            return self.store._finish(self.upload)
        return self.upload

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._lock >= 0:
            os.close(self._lock)
            self._lock = -1


def _write_all(fd: int, chunk: bytes | bytearray) -> None:
    view = memoryview(chunk)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _seal_file(path: Path) -> None:
    """An uploaded file is immutable like every input: 0444, owned by 65534 when the service runs as root."""
    if os.geteuid() == 0:
        os.chown(path, SEALED_UID, SEALED_GID)
    os.chmod(path, 0o444)


@contextmanager
def _writable_parents(root: Path, directory: Path) -> Iterator[None]:
    """``mkdir -p directory``; the directory written into gets ``u+w`` meanwhile and its mode back after.

    Upload areas are sealed (0555) like the resource pool: the service lifts the seal for the directory it links
    into and seals the directories it creates (owned by 65534 when it runs as root, as :func:`seal` does).
    """
    restore: list[tuple[Path, int]] = []
    chain = []
    d = directory
    while not d.exists():
        chain.append(d)
        d = d.parent
    try:
        for current in [d, *reversed(chain)]:
            if current is not d:
                current.mkdir()
                # Sealed like the pool: a stage (uid 0 without capabilities) can add nothing to an input area.
                restore.append((current, 0o555))
                if os.geteuid() == 0:
                    os.chown(current, SEALED_UID, SEALED_GID)
            mode = stat.S_IMODE(current.stat().st_mode)
            if not mode & stat.S_IWUSR:
                current.chmod(mode | stat.S_IWUSR)
                restore.append((current, mode))
        yield
    finally:
        for path, mode in reversed(restore):
            path.chmod(mode)


__all__ = [
    "ChecksumMismatch",
    "DiskFull",
    "Upload",
    "UploadBusy",
    "UploadConflict",
    "UploadNotFound",
    "UploadStore",
    "UploadWriter",
]
