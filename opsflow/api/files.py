"""``site.files``: big files in and out of the pipelines' store through its file service (seed 002, 1310-1340).

Uploads use tus (the client is tuspy, a standard tus client), so an interrupted upload resumes from the server's
offset: the upload URL is kept in ``<home>/files/uploads.json`` under the file's fingerprint and its destination,
and the next ``upload`` of the same file to the same place asks the server where it stopped (the file's SHA-256 is
remembered in ``<home>/files/sha256.json`` while its size and mtime stay, so resuming does not read it again).
The file's SHA-256 travels in the upload's metadata and the server checks it before the file appears. Downloads
resume with HTTP Range from the size of the ``.part`` file; a directory comes as a tar stream, unpacked as it
arrives.

Where the service is: ``$OPSFLOW_FILES_URL``, else the ``file_service_url`` of the site's PipelineStore Block,
else the local stack's; the credentials are the site's (``PREFECT_API_AUTH_STRING``).

Example:
    >>> FilesAPI("http://127.0.0.1:8766", "admin:pw", Path("/tmp/h")).url("resources/a b.png")
    'http://127.0.0.1:8766/files/resources/a%20b.png'
"""

from __future__ import annotations

import base64
import hashlib
import os
import tarfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

from pydantic import BaseModel, Field

from opsflow.errors import AdapterError, InputError, NotFoundError, OpsflowError
from opsflow.files import atomic_write_text
from opsflow.tables import Records, TableView

if TYPE_CHECKING:
    from opsflow.api import Site

#: Bytes per tus PATCH request (what one interrupted request can lose; the client holds one in memory).
CHUNK = 32 << 20
#: Progress callback: (bytes done, bytes in all).
Progress = Callable[[int, int], None]


class FileEntry(BaseModel):
    """One file of a listing (req. 1340)."""

    path: str = Field(description="relative to the store's root")
    type: str = Field(description="file or link")
    size: int
    mtime: datetime
    sha256: str | None = Field(None, description="known for uploaded files")
    read_only: bool


class Uploaded(TableView):
    """What :meth:`FilesAPI.upload` did."""

    path: str
    size: int
    sha256: str
    resumed_at: int = Field(0, description="bytes the server had already (0: a fresh upload)")

    def message(self) -> str:
        again = f", resumed at {self.resumed_at} bytes" if self.resumed_at else ""
        return f"uploaded {self.path} ({self.size} bytes{again}), sha256 {self.sha256}"


def file_sha256(path: Path, progress: Progress | None = None) -> str:
    """The SHA-256 of a local file, read in 8 MiB blocks."""
    digest, done, size = hashlib.sha256(), 0, path.stat().st_size
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(8 << 20), b""):
            digest.update(block)
            done += len(block)
            if progress:
                progress(done, size)
    return digest.hexdigest()


class FilesAPI:
    """Upload, download and list the store's files (see the module docstring)."""

    def __init__(self, base_url: str, auth: str | None, home: Path) -> None:
        self.base_url = base_url.rstrip("/")
        self._auth = auth
        self.home = home

    @classmethod
    def of(cls, site: Site) -> FilesAPI:
        url = os.environ.get("OPSFLOW_FILES_URL")
        if not url and not site.is_local:
            url = site.block_values("opsflow-pipeline-store").get("file_service_url")
        if not url:
            from opsflow.stack.config import StackConfig

            url = StackConfig.load(site.home).files_url
        return cls(url, site._auth_string, site.home)

    def __repr__(self) -> str:
        return f"<FilesAPI {self.base_url}>"

    # --- HTTP -----------------------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        if not self._auth:
            return {}
        return {"Authorization": "Basic " + base64.b64encode(self._auth.encode()).decode()}

    def _check(self, response: Any, what: str) -> None:
        code = response.status_code
        if code < 400:
            return
        try:
            message = response.json().get("error", "")
        except ValueError:
            message = response.text[:200]
        if code == 401:
            raise AdapterError(f"the file service at {self.base_url} refused the credentials (401)")
        if code == 404:
            raise NotFoundError(f"{what}: {message}")
        if code in (400, 403):
            raise InputError(what, [(0, "path", message)])
        raise AdapterError(f"{what}: the file service answered {code}: {message}")

    def url(self, path: str) -> str:
        """The download URL of a store-relative path."""
        return f"{self.base_url}/files/{quote(path.strip('/'))}"

    # --- listing --------------------------------------------------------------------------------------------

    def ls(self, path: str = "") -> Records[FileEntry]:
        """Every file under ``path`` (a directory or one file): size, mtime, SHA-256 where known."""
        import httpx

        try:
            r = httpx.get(f"{self.base_url}/list/{quote(path.strip('/'))}", headers=self._headers(), timeout=60)
        except httpx.HTTPError as exc:
            raise AdapterError(f"cannot reach the file service at {self.base_url}: {exc}") from exc
        self._check(r, path or "/")
        return Records([FileEntry.model_validate(e) for e in r.json()["entries"]])

    # --- upload ---------------------------------------------------------------------------------------------

    def upload(self, local: str | Path, dest: str, progress: Progress | None = None, chunk: int = CHUNK) -> Uploaded:
        """Upload ``local`` to ``dest`` (``resources/...`` or ``projects/<name>/input/...``), resuming if it can.

        A ``dest`` ending in ``/`` takes the file's name. Raises :class:`InputError` for a refused destination
        (it names why), :class:`AdapterError` when the service is unreachable (run it again: it resumes).
        """
        from tusclient.client import TusClient
        from tusclient.exceptions import TusCommunicationError, TusUploadFailed
        from tusclient.storage.filestorage import FileStorage

        source = Path(local)
        if not source.is_file():
            raise InputError(str(local), [(0, "file", "no such file")])
        if dest.endswith("/"):
            dest += source.name
        dest = dest.strip("/")
        sha = self._sha256(source)
        storage_file = self.home / "files" / "uploads.json"
        storage_file.parent.mkdir(parents=True, exist_ok=True)
        storage = FileStorage(str(storage_file))
        client = TusClient(f"{self.base_url}/uploads", headers=self._headers())
        fingerprint = _DestinationFingerprint(f"{self.base_url}/{dest}:{sha}")
        options: dict[str, Any] = {
            "file_path": str(source),
            "chunk_size": chunk,
            "metadata": {"path": dest, "sha256": sha, "filename": source.name},
            "store_url": True,
            "url_storage": storage,
            "fingerprinter": fingerprint,
        }
        try:
            try:
                uploader = client.uploader(**options)
            except TusCommunicationError:
                # The stored upload is gone (finished, terminated, or the server's store was wiped): start afresh.
                storage.remove_item(fingerprint.key)
                uploader = client.uploader(**options)
            resumed_at = int(uploader.offset)
            size = source.stat().st_size
            if progress:
                progress(resumed_at, size)
            if uploader.url is None:
                uploader.set_url(uploader.create_url())
            while uploader.offset < size:
                uploader.upload_chunk()
                if progress:
                    progress(int(uploader.offset), size)
            storage.remove_item(fingerprint.key)
        except (TusUploadFailed, TusCommunicationError) as exc:
            if exc.status_code == 460:  # the bytes were dropped by the server: the stored upload is no more
                storage.remove_item(fingerprint.key)
            if exc.status_code == 409 and self._already_there(dest, sha):
                # An earlier run finished it but died before it could say so.
                return Uploaded(path=dest, size=source.stat().st_size, sha256=sha, resumed_at=source.stat().st_size)
            if exc.status_code is not None:
                raise self._tus_error(exc, dest) from None
            raise AdapterError(f"upload of {dest} interrupted ({exc}); run it again to resume") from None
        finally:
            storage.close()
        return Uploaded(path=dest, size=size, sha256=sha, resumed_at=resumed_at)

    def _sha256(self, source: Path) -> str:
        """The file's SHA-256, remembered by (path, inode, size, mtime): a resumed upload does not read it again."""
        import json

        cache = self.home / "files" / "sha256.json"
        info = source.stat()
        key = f"{source.resolve()}:{info.st_ino}:{info.st_size}:{info.st_mtime_ns}"
        try:
            known: dict[str, str] = json.loads(cache.read_text())
        except (FileNotFoundError, ValueError):
            known = {}
        if key not in known:
            known = {k: v for k, v in known.items() if not k.startswith(f"{source.resolve()}:")}
            known[key] = file_sha256(source)
            cache.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(cache, json.dumps(known, indent=1))
        return known[key]

    def _already_there(self, dest: str, sha: str) -> bool:
        try:
            return any(e.path == dest and e.sha256 == sha for e in self.ls(dest))
        except OpsflowError:
            return False

    def _tus_error(self, exc: Any, dest: str) -> OpsflowError:
        code = exc.status_code
        body = exc.response_content or b""
        try:
            import json

            message = json.loads(body).get("error", "") if body else str(exc)
        except ValueError:
            message = body.decode(errors="replace")[:200]
        if code in (400, 403, 409, 413):
            return InputError(dest, [(0, "destination", message)])
        if code == 401:
            return AdapterError(f"the file service at {self.base_url} refused the credentials (401)")
        if code == 404:
            return NotFoundError(f"{dest}: {message}")
        return AdapterError(f"upload of {dest}: the file service answered {code}: {message}")

    # --- download -------------------------------------------------------------------------------------------

    def download(self, path: str, local: str | Path, progress: Progress | None = None) -> Path:
        """Download a file (resuming a ``.part`` left by an interrupted run) or a directory (unpacked).

        ``local`` may be a directory: the file or directory keeps its name inside it. Returns what was written.
        """
        import httpx

        path = path.strip("/")
        listing = self.ls(path)
        name = path.rsplit("/", 1)[-1] if path else "store"
        target = Path(local)
        is_dir = not (len(listing) == 1 and listing[0].path == path)
        if target.is_dir():
            target = target / name
        try:
            if is_dir:
                return self._download_tree(path, target)
            return self._download_file(path, target, listing[0].size, progress)
        except httpx.HTTPError as exc:
            raise AdapterError(f"download of {path} interrupted ({exc}); run it again to resume") from None

    def _download_file(self, path: str, target: Path, size: int, progress: Progress | None) -> Path:
        import httpx

        part = target.with_name(target.name + ".part")
        have = part.stat().st_size if part.exists() else 0
        headers = self._headers()
        if have:
            headers["Range"] = f"bytes={have}-"
        with httpx.stream("GET", self.url(path), headers=headers, timeout=60) as r:
            if r.status_code == 416:  # the .part is complete already (or longer than the file): start over
                part.unlink()
                return self._download_file(path, target, size, progress)
            if r.status_code >= 400:
                r.read()
                self._check(r, path)
            mode = "ab" if r.status_code == 206 else "wb"
            done = have if mode == "ab" else 0
            with open(part, mode) as out:
                for block in r.iter_bytes(4 << 20):
                    out.write(block)
                    done += len(block)
                    if progress:
                        progress(done, size)
        os.replace(part, target)
        return target

    def _download_tree(self, path: str, target: Path) -> Path:
        import httpx

        target.mkdir(parents=True, exist_ok=True)
        with httpx.stream("GET", f"{self.base_url}/archive/{quote(path)}", headers=self._headers(), timeout=60) as r:
            if r.status_code >= 400:
                r.read()
                self._check(r, path)
            stream = _IterStream(r.iter_bytes(1 << 20))
            with tarfile.open(fileobj=cast(Any, stream), mode="r|") as tar:
                # The archive's top directory is the remote's name: unpack its content into ``target``.
                for member in tar:
                    member.name = member.name.partition("/")[2] or "."
                    if member.name != ".":
                        tar.extract(member, target, filter="data")
        return target


class _DestinationFingerprint:
    """tuspy's resume key: the file *and* where it goes (the same file sent to two places is two uploads)."""

    def __init__(self, key: str) -> None:
        self.key = key

    def get_fingerprint(self, fs: Any) -> str:
        return self.key


class _IterStream:
    """A read()-able view of an iterator of bytes (tarfile's stream mode reads from it)."""

    def __init__(self, chunks: Any) -> None:
        self._chunks = iter(chunks)
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            try:
                self._buffer += next(self._chunks)
            except StopIteration:
                break
        if size < 0:
            size = len(self._buffer)
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data
