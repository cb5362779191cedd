"""The pipelines' file service: an ASGI app over the store's root (seed 002, req. 1310, 1320, 1340).

``python -m stage_pipeline.file_service --root DIR --port 8766`` (the stack's ``files`` component; a site runs the
same next to its shared filesystem). Routes, all behind the token except ``/healthz``:

- ``/uploads``: resumable uploads, tus 1.0 (core, creation, checksum, termination), so tuspy, Uppy and
  tus-js-client work; the metadata names the destination (``path``) and may carry the file's ``sha256``, which is
  checked when the last byte is in (:mod:`stage_pipeline.uploads`);
- ``GET|HEAD /files/<path>``: a file, with HTTP Range (a video seeks, a broken download resumes);
- ``GET /archive/<path>``: a directory as a tar stream, in constant memory whatever its size;
- ``GET /list/<path>``: names, sizes, modification times and, for uploaded files, SHA-256.

Authentication: HTTP Basic with the stack's ``user:password`` (the Prefect API's auth string, so the browser's
login prompt works), or ``Authorization: Bearer <password>``; or, for GET of one file, a link signed with a key
derived from the same secret (``?exp=&sig=``, :func:`stage_pipeline.file_links.signed_link`), which the approval
forms embed. Paths are checked by :mod:`stage_pipeline.file_rules`, symlinks resolved here: nothing outside the
root is ever served.

Example:
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp()); (root / "resources").mkdir()
    >>> _ = (root / "resources" / "a.txt").write_text("hi")
    >>> [(e["path"], e["size"]) for e in FileService(root, "admin:pw").listing("resources")["entries"]]
    [('resources/a.txt', 2)]
    >>> FileService(root, "admin:pw").resolve("resources/../..")
    Traceback (most recent call last):
    ...
    stage_pipeline.file_rules.UnsafePath: path: segment 2 is '..': a path may not leave the store
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import hmac
import logging
import os
import stat
import tarfile
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from opsflow.errors import InputError, NotFoundError, OpsflowError
from opsflow.home import default_home
from stage_pipeline.file_links import password_of
from stage_pipeline.file_rules import (
    CHECKSUM_MISMATCH,
    TUS_CHECKSUMS,
    TUS_EXTENSIONS,
    TUS_VERSION,
    ReadOnlyPath,
    UnsafePath,
    check_path,
    link_key,
    link_valid,
    parse_checksum,
    parse_metadata,
)
from stage_pipeline.uploads import (
    ChecksumMismatch,
    DiskFull,
    UploadBusy,
    UploadConflict,
    UploadStore,
)

log = logging.getLogger("opsflow.files")

#: Bytes gathered from the request body before one write (fewer thread hops; bounded memory per upload).
WRITE_BLOCK = 4 << 20
#: Bytes per read when sending a file or an archive.
READ_BLOCK = 1 << 20


class _BigChunks(FileResponse):
    chunk_size = READ_BLOCK


def _password(auth: str) -> str:
    return password_of(auth)


def _error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers={"Tus-Resumable": TUS_VERSION, **headers})


def _error_of(exc: Exception) -> JSONResponse:
    """One mapping from the project's exceptions to HTTP (what a client can do about each)."""
    if isinstance(exc, UnsafePath | InputError):
        return _error(400, str(exc))
    if isinstance(exc, ReadOnlyPath | PermissionError):
        return _error(403, str(exc))
    if isinstance(exc, NotFoundError | FileNotFoundError):
        return _error(404, str(exc.args[0]) if exc.args else "not found")
    if isinstance(exc, UploadConflict):
        return _error(409, str(exc))
    if isinstance(exc, UploadBusy):
        return _error(423, str(exc))
    if isinstance(exc, ChecksumMismatch):
        return _error(CHECKSUM_MISMATCH, str(exc))
    if isinstance(exc, DiskFull):
        return _error(507, str(exc))
    raise exc


class FileService:
    """The routes' logic over one root (see the module docstring)."""

    def __init__(self, root: Path, auth: str, max_size: int = 1 << 40) -> None:
        self.root = Path(root).resolve()
        self.uploads = UploadStore(self.root, max_size=max_size)
        self._auth = auth
        self._password = _password(auth)
        self._key = link_key(self._password)

    # --- authentication -------------------------------------------------------------------------------------

    def allowed(self, request: Request, path: str | None = None) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            return hmac.compare_digest(value.strip().encode(), self._password.encode())
        if scheme.lower() == "basic":
            try:
                given = base64.b64decode(value.strip(), validate=True)
            except binascii.Error:
                return False
            return hmac.compare_digest(given, self._auth.encode())
        exp, sig = request.query_params.get("exp"), request.query_params.get("sig")
        if path is not None and exp is not None and sig is not None and request.method in ("GET", "HEAD"):
            return exp.isdigit() and link_valid(self._key, path, int(exp), sig, time.time())
        return False

    # --- paths ----------------------------------------------------------------------------------------------

    def resolve(self, path: str, allow_root: bool = False) -> Path:
        """The file of a store-relative path; symlinks may point only inside the root."""
        parts = check_path(path, allow_root=allow_root)
        target = self.root.joinpath(*parts)
        real = Path(os.path.realpath(target))
        if real != self.root and self.root not in real.parents:
            raise UnsafePath("path", [(0, "path", f"{path!r} is a symlink that leaves the store")])
        if not real.exists():
            raise FileNotFoundError(f"{path or '/'}: no such file or directory")
        return real

    # --- listing --------------------------------------------------------------------------------------------

    def listing(self, path: str) -> dict[str, Any]:
        base = self.resolve(path, allow_root=True)
        hashes = self.uploads.known_hashes()
        prefix = "/".join(check_path(path, allow_root=True))
        entries = []
        for rel, info in _walk(base):
            full = f"{prefix}/{rel}" if prefix and rel else (prefix or rel)
            known = hashes.get(full)
            kind = "link" if stat.S_ISLNK(info.st_mode) else "file"
            sha = known.sha256 if known and (known.size, known.mtime_ns) == (info.st_size, info.st_mtime_ns) else None
            entries.append(
                {
                    "path": full,
                    "type": kind,
                    "size": info.st_size,
                    "mtime": datetime.fromtimestamp(info.st_mtime, UTC).isoformat(),
                    "sha256": sha,
                    "read_only": not stat.S_IMODE(info.st_mode) & stat.S_IWUSR,
                }
            )
        return {"path": prefix, "entries": entries}


def _walk(base: Path) -> Iterator[tuple[str, os.stat_result]]:
    """Every file under ``base`` (or ``base`` itself), sorted; hidden entries skipped, symlinks never followed."""
    if not base.is_dir():
        yield "", base.lstat()
        return
    for dirpath, dirnames, filenames in os.walk(base):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not (here / d).is_symlink())
        links = [d for d in os.listdir(here) if (here / d).is_symlink() and (here / d).is_dir()]
        for name in sorted([*filenames, *links]):
            if not name.startswith("."):
                entry = here / name
                yield entry.relative_to(base).as_posix(), entry.lstat()


def tar_stream(base: Path, name: str) -> Iterator[bytes]:
    """A directory as an uncompressed tar (PAX headers), file by file in :data:`READ_BLOCK` pieces.

    Constant memory: headers come from :class:`tarfile.TarInfo`, contents are read and sent block by block. Each
    member's size is taken once; a file that changed size meanwhile is cut or zero-padded to it (sealed stage
    outputs never change).
    """
    for rel, info in _walk(base):
        member = tarfile.TarInfo(f"{name}/{rel}" if rel else name)
        member.mtime, member.mode = int(info.st_mtime), stat.S_IMODE(info.st_mode)
        path = base / rel if rel else base
        if stat.S_ISLNK(info.st_mode):
            member.type, member.linkname = tarfile.SYMTYPE, os.readlink(path)
            yield member.tobuf(tarfile.PAX_FORMAT)
            continue
        member.size = info.st_size
        yield member.tobuf(tarfile.PAX_FORMAT)
        left = member.size
        with open(path, "rb") as f:
            while left > 0:
                block = f.read(min(READ_BLOCK, left))
                if not block:
                    break
                left -= len(block)
                yield block
        if left > 0:
            yield bytes(left)
        if member.size % tarfile.BLOCKSIZE:
            yield bytes(tarfile.BLOCKSIZE - member.size % tarfile.BLOCKSIZE)
    yield bytes(2 * tarfile.BLOCKSIZE)


def _tus_headers(**extra: str) -> dict[str, str]:
    return {"Tus-Resumable": TUS_VERSION, **extra}


def build_app(root: Path, auth: str, max_size: int = 1 << 40) -> ASGIApp:
    """The service over ``root``; ``auth`` is the ``user:password`` clients must present."""
    service = FileService(root, auth, max_size)

    def guarded(handler: Callable[[Request, str], Any], link_ok: bool = False) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            path = request.path_params.get("path", "")
            if not service.allowed(request, path if link_ok else None):
                if "sig" in request.query_params:  # a link: nothing to log in to, say what is wrong with it
                    return _error(401, "this link is expired or not valid for this path")
                return _error(401, "a token is needed", **{"WWW-Authenticate": 'Basic realm="opsflow files"'})
            try:
                result: Response = await handler(request, path)
                return result
            except OpsflowError as exc:
                return _error_of(exc)
            except (FileNotFoundError, NotADirectoryError) as exc:
                return _error(404, f"{path or '/'}: {exc.strerror or exc}")
            except PermissionError as exc:
                return _error(403, f"{path or '/'}: {exc.strerror or exc}")

        return endpoint

    async def get_file(request: Request, path: str) -> Response:
        target = await run_in_threadpool(service.resolve, path)
        if target.is_dir():
            return _error(400, f"{path} is a directory: GET /list/{path} or /archive/{path}")
        return _BigChunks(target, filename=target.name, content_disposition_type="inline")

    async def get_list(request: Request, path: str) -> Response:
        return JSONResponse(await run_in_threadpool(service.listing, path))

    async def get_archive(request: Request, path: str) -> Response:
        target = await run_in_threadpool(service.resolve, path, True)
        name = target.name if target != service.root else "store"
        headers = {"Content-Disposition": f'attachment; filename="{quote(name)}.tar"'}
        return StreamingResponse(tar_stream(target, name), media_type="application/x-tar", headers=headers)

    async def tus_options(request: Request) -> Response:
        return Response(
            status_code=204,
            headers=_tus_headers(
                **{
                    "Tus-Version": TUS_VERSION,
                    "Tus-Extension": ",".join(TUS_EXTENSIONS),
                    "Tus-Checksum-Algorithm": ",".join(TUS_CHECKSUMS),
                    "Tus-Max-Size": str(service.uploads.max_size),
                }
            ),
        )

    def version_problem(request: Request) -> Response | None:
        given = request.headers.get("tus-resumable")
        if given != TUS_VERSION:
            return _error(412, f"Tus-Resumable {given!r} unsupported", **{"Tus-Version": TUS_VERSION})
        return None

    async def tus_create(request: Request, _: str) -> Response:
        if (problem := version_problem(request)) is not None:
            return problem
        length = request.headers.get("upload-length", "")
        if not length.isdigit():
            return _error(400, "Upload-Length (a number of bytes) is required; deferred lengths are not supported")
        if int(length) > service.uploads.max_size:
            return _error(413, f"Upload-Length {length} is over Tus-Max-Size {service.uploads.max_size}")
        meta = parse_metadata(request.headers.get("upload-metadata"))
        if "path" not in meta:
            return _error(
                400,
                "Upload-Metadata must name the destination: path <base64 of resources/... or "
                "projects/<name>/input/...>",
            )
        upload = await run_in_threadpool(service.uploads.create, meta.pop("path"), int(length), meta)
        log.info("upload %s created: %s, %d bytes", upload.id, upload.path, upload.length)
        location = f"{str(request.base_url).rstrip('/')}/uploads/{upload.id}"
        headers = _tus_headers(Location=location, **{"Upload-Offset": str(upload.offset)})
        return Response(status_code=201, headers=headers)

    async def tus_head(request: Request, upload_id: str) -> Response:
        if (problem := version_problem(request)) is not None:
            return problem
        upload = await run_in_threadpool(service.uploads.get, upload_id)
        return Response(
            status_code=200,
            headers=_tus_headers(
                **{
                    "Upload-Offset": str(upload.offset),
                    "Upload-Length": str(upload.length),
                    "Cache-Control": "no-store",
                }
            ),
        )

    async def tus_patch(request: Request, upload_id: str) -> Response:
        if (problem := version_problem(request)) is not None:
            return problem
        if request.headers.get("content-type") != "application/offset+octet-stream":
            return _error(415, "Content-Type must be application/offset+octet-stream")
        offset = request.headers.get("upload-offset", "")
        if not offset.isdigit():
            return _error(400, "Upload-Offset (a number of bytes) is required")
        header = request.headers.get("upload-checksum")
        checksum = parse_checksum(header) if header else None
        writer = await run_in_threadpool(service.uploads.writer, upload_id, int(offset), checksum)
        # One block is written (and hashed) in a thread while the next one is received: the two overlap, and a
        # block is handed over, never copied. At most two blocks per upload are in memory.
        pending: asyncio.Future[None] | None = None

        async def hand_over(block: bytearray) -> None:
            nonlocal pending
            if pending is not None:
                await pending
            pending = asyncio.ensure_future(run_in_threadpool(writer.write, block))

        try:
            buffer = bytearray()
            try:
                async for chunk in request.stream():
                    buffer += chunk
                    if len(buffer) >= WRITE_BLOCK:
                        await hand_over(buffer)
                        buffer = bytearray()
            except ClientDisconnect:
                # What arrived is kept (written below); the client asks HEAD for the offset and resumes.
                await hand_over(buffer)
                await hand_over(bytearray())
                log.info("upload %s: client gone at %d bytes", upload_id, writer.upload.offset)
                return Response(status_code=400)
            await hand_over(buffer)
            await hand_over(bytearray())
            upload = await run_in_threadpool(writer.end)
        finally:
            if pending is not None and not pending.done():
                with contextlib.suppress(Exception):
                    await pending
            await run_in_threadpool(writer.close)
        headers = {"Upload-Offset": str(upload.offset)}
        if upload.complete and upload.sha256:
            log.info("upload %s complete: %s sha256 %s", upload_id, upload.path, upload.sha256)
            headers["Upload-Sha256"] = upload.sha256
        return Response(status_code=204, headers=_tus_headers(**headers))

    async def tus_delete(request: Request, upload_id: str) -> Response:
        if (problem := version_problem(request)) is not None:
            return problem
        await run_in_threadpool(service.uploads.terminate, upload_id)
        return Response(status_code=204, headers=_tus_headers())

    def by_id(handler: Callable[[Request, str], Any]) -> Callable[[Request, str], Any]:
        async def call(request: Request, _: str) -> Response:
            result: Response = await handler(request, request.path_params["upload_id"])
            return result

        return call

    async def healthz(_: Request) -> Response:
        return JSONResponse({"ok": True, "root": str(service.root)})

    uploads = {
        "HEAD": guarded(by_id(tus_head)),
        "PATCH": guarded(by_id(tus_patch)),
        "DELETE": guarded(by_id(tus_delete)),
    }

    async def upload_endpoint(request: Request) -> Response:
        result: Response = await uploads[request.method](request)
        return result

    routes = [
        Route("/healthz", healthz),
        Route("/uploads", tus_options, methods=["OPTIONS"]),
        Route("/uploads", guarded(tus_create), methods=["POST"]),
        Route("/uploads/{upload_id}", upload_endpoint, methods=["HEAD", "PATCH", "DELETE"]),
        Route("/files/{path:path}", guarded(get_file, link_ok=True), methods=["GET", "HEAD"]),
        Route("/list", guarded(get_list), methods=["GET"]),
        Route("/list/{path:path}", guarded(get_list), methods=["GET"]),
        Route("/archive/{path:path}", guarded(get_archive), methods=["GET"]),
    ]
    app = Starlette(routes=routes)

    async def refuse_control_characters(scope: Scope, receive: Receive, send: Send) -> None:
        # The router's path pattern never matches a newline: refuse such a path by name, not with a bare 404.
        if scope["type"] == "http" and any(ord(c) < 32 or c == "\x7f" for c in scope["path"]):
            await _error(400, "path: a control character in the path is refused")(scope, receive, send)
            return
        await app(scope, receive, send)

    return refuse_control_characters


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """
    >>> parse_args(["--port", "9999"]).port
    9999
    """
    parser = argparse.ArgumentParser(prog="python -m stage_pipeline.file_service", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--root", type=Path, default=default_home() / "pipelines", help="the PipelineStore's root")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    import uvicorn

    args = parse_args(argv)
    auth = os.environ.get("OPSFLOW_FILES_AUTH") or os.environ.get("PREFECT_API_AUTH_STRING")
    if not auth:
        raise SystemExit("OPSFLOW_FILES_AUTH (user:password) or PREFECT_API_AUTH_STRING must be set")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.root.mkdir(parents=True, exist_ok=True)
    uvicorn.run(build_app(args.root, auth), host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
