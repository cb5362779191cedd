"""The launcher <-> zygote messages (pure): one JSON line each way, plus the launcher's three fds with the request.

launcher -> zygote: ``{"env": {...}, "cwd": "...", "argv": [...]}`` with fds 0, 1, 2 (SCM_RIGHTS);
zygote -> launcher: ``{"pid": N}`` once forked, then ``{"status": S}`` (``os.waitpid`` status) at its end, or
``{"cold": "why"}`` when the zygote will not serve (its code changed on disk, a bad request).

Example:
    >>> decode(encode({"pid": 42}))
    {'pid': 42}
    >>> exit_code_of(0), exit_code_of(3 << 8), exit_code_of(9)
    (0, 3, -9)
"""

from __future__ import annotations

import json
import os
from typing import Any

#: The largest message (an environment is a few KiB; this leaves room and bounds a bad peer).
MAX_MESSAGE = 1 << 20
FDS = 3


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    value = json.loads(line)
    if not isinstance(value, dict):
        raise ValueError("a message is a JSON object")
    return value


def exit_code_of(status: int) -> int:
    """A ``waitpid`` status as ``Popen.returncode`` gives it: the exit code, or ``-N`` for a signal N."""
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)
