"""The file service's rules, without I/O: which paths exist, which may be written, links, tus headers.

Seed 002, req. 1310 (upload), 1320 (download), 1340 (list files). Every path the service takes is relative to
the store's root and checked here first, so a request can never name a file outside it:

- a path is ``/``-separated segments; ``..``, ``.``, empty segments, a leading ``/``, a segment starting with ``.``
  (the store's own ``.uploads``, ``.lock``, half-made ``.new-*`` directories) and any NUL, control, formatting or
  line-separator character are refused (:class:`UnsafePath`, an :class:`~opsflow.errors.InputError`: the service
  answers 400);
- uploads go only to the resource pool (``resources/...``) or a project's input area
  (``projects/<name>/input/...``); everything else, sealed stage outputs above all, is read-only (403);
- a *link* (``?exp=...&sig=...``) grants GET of one path until ``exp``: what the approval form and the stage
  artifacts embed so that an image opens in the browser without a password.

Symlinks are the service's part (they need the filesystem): it resolves the path and refuses what lands outside.

Example:
    >>> check_path("projects/traffic/stages/detect/1/counts.png")
    ('projects', 'traffic', 'stages', 'detect', '1', 'counts.png')
    >>> check_path("projects/../../etc/passwd")
    Traceback (most recent call last):
    ...
    stage_pipeline.file_rules.UnsafePath: path: segment 2 is '..': a path may not leave the store
    >>> upload_area(check_path("projects/traffic/input/video.mp4"))
    'projects/traffic/input'
    >>> sig = link_signature(b"k", "resources/a.png", 1000)
    >>> link_valid(b"k", "resources/a.png", 1000, sig, now=999), link_valid(b"k", "resources/a.png", 1000, sig, 1001)
    (True, False)
    >>> parse_metadata(encode_metadata({"path": "resources/v.mp4", "sha256": "ab"}))
    {'path': 'resources/v.mp4', 'sha256': 'ab'}
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import unicodedata

from opsflow.errors import InputError, OpsflowError

#: The tus protocol version and extensions the service speaks (https://tus.io/protocols/resumable-upload).
TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = ("creation", "checksum", "termination")
#: Checksum algorithms of the tus checksum extension (names as in the Upload-Checksum header).
TUS_CHECKSUMS = ("sha1", "sha256", "md5")
#: The status code tus defines for a checksum that does not match.
CHECKSUM_MISMATCH = 460

def _is_control(c: str) -> bool:
    """C0/C1 controls and DEL (Unicode Cc), formatting characters (Cf: bidi overrides) and line separators."""
    return unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")


class UnsafePath(InputError):
    """A path that could leave the store or hide in it (the message says which segment and why)."""

    def __str__(self) -> str:
        return f"path: {self.problems[0][2]}"


class ReadOnlyPath(OpsflowError, PermissionError):
    """A path the service never writes (stage outputs, logs, project.json): uploads go elsewhere."""


def check_path(path: str, allow_root: bool = False) -> tuple[str, ...]:
    """The segments of a store-relative path, or :class:`UnsafePath` (see the module docstring).

    >>> check_path("", allow_root=True)
    ()
    >>> check_path("resources/a\\x00b")
    Traceback (most recent call last):
    ...
    stage_pipeline.file_rules.UnsafePath: path: segment 2 has a control character (U+0000)
    """
    if path.startswith("/"):
        raise UnsafePath("path", [(0, "path", f"{path!r} is absolute: give it relative to the store")])
    if path in ("", "."):
        if allow_root:
            return ()
        raise UnsafePath("path", [(0, "path", "empty: name a file or directory")])
    parts = path.rstrip("/").split("/") if allow_root else path.split("/")
    for number, part in enumerate(parts, 1):
        bad = next((c for c in part if _is_control(c)), None)
        if bad is not None:
            why = f"segment {number} has a control character (U+{ord(bad):04X})"
        elif part in ("..", "."):
            why = f"segment {number} is {part!r}: a path may not leave the store"
        elif not part:
            why = f"segment {number} is empty ('//' or a trailing '/')"
        elif part.startswith("."):
            why = f"segment {number} ({part!r}) starts with '.': hidden entries belong to the store itself"
        elif len(part.encode()) > 255:
            why = f"segment {number} is longer than 255 bytes"
        else:
            continue
        raise UnsafePath("path", [(0, "path", why)])
    return tuple(parts)


def upload_area(parts: tuple[str, ...]) -> str:
    """The writable area a path lies in: ``resources`` or ``projects/<name>/input`` (else :class:`ReadOnlyPath`).

    >>> upload_area(("projects", "traffic", "stages", "detect", "1", "boxes.csv"))
    Traceback (most recent call last):
    ...
    stage_pipeline.file_rules.ReadOnlyPath: projects/traffic/stages/detect/1/boxes.csv is read-only: uploads go \
to resources/... or projects/<name>/input/...
    """
    if len(parts) >= 2 and parts[0] == "resources":
        return "resources"
    if len(parts) >= 4 and parts[0] == "projects" and parts[2] == "input":
        return "/".join(parts[:3])
    raise ReadOnlyPath(f"{'/'.join(parts)} is read-only: uploads go to resources/... or projects/<name>/input/...")


def link_signature(key: bytes, path: str, expires: int) -> str:
    """HMAC-SHA256 of ``path`` and its expiry (unix seconds): the ``sig`` of a read-only link."""
    return hmac.new(key, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()


def link_valid(key: bytes, path: str, expires: int, signature: str, now: float) -> bool:
    """Whether ``signature`` grants ``path`` at ``now`` (constant-time comparison)."""
    return now <= expires and hmac.compare_digest(link_signature(key, path, expires), signature)


def link_key(token: str) -> bytes:
    """The key links are signed with, derived from the service's token (so one secret configures both)."""
    return hashlib.sha256(b"opsflow file links\n" + token.encode()).digest()


def encode_metadata(values: dict[str, str]) -> str:
    """The ``Upload-Metadata`` header: ``key base64(value)`` pairs, comma-separated."""
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def parse_metadata(header: str | None) -> dict[str, str]:
    """``Upload-Metadata`` as a dict (a key without value maps to ""); bad base64 is an :class:`InputError`.

    >>> parse_metadata("path cmVzb3VyY2VzL2E=,flag")
    {'path': 'resources/a', 'flag': ''}
    """
    found: dict[str, str] = {}
    for pair in (header or "").split(","):
        pair = pair.strip()
        if not pair:
            continue
        key, _, value = pair.partition(" ")
        try:
            found[key] = base64.b64decode(value.strip(), validate=True).decode() if value.strip() else ""
        except (binascii.Error, UnicodeDecodeError):
            raise InputError("Upload-Metadata", [(0, key, "the value is not base64 of UTF-8 text")]) from None
    return found


def parse_checksum(header: str) -> tuple[str, bytes]:
    """``Upload-Checksum: <algorithm> <base64 digest>`` → (algorithm, digest).

    >>> parse_checksum("sha1 qZk+NkcGgWq6PiVxeFDCbJzQ2J0=")[0]
    'sha1'
    """
    algorithm, _, value = header.strip().partition(" ")
    if algorithm not in TUS_CHECKSUMS:
        raise InputError("Upload-Checksum", [(0, "algorithm", f"{algorithm!r} unsupported (use {TUS_CHECKSUMS})")])
    try:
        digest = base64.b64decode(value.strip(), validate=True)
    except binascii.Error:
        raise InputError("Upload-Checksum", [(0, "digest", "not base64")]) from None
    if len(digest) != hashlib.new(algorithm).digest_size:
        raise InputError("Upload-Checksum", [(0, "digest", f"not a {algorithm} digest ({len(digest)} bytes)")])
    return algorithm, digest


def parse_sha256(text: str) -> str:
    """A hex SHA-256 as given in the upload's metadata (lower-cased), or an :class:`InputError`."""
    value = text.strip().lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise InputError("Upload-Metadata", [(0, "sha256", "64 hexadecimal digits expected")])
    return value
