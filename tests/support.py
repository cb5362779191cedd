"""Helpers shared by the tests."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def unavailable(msg: str) -> None:
    """A component this test needs is missing: fail in CI (CI=true), skip on a developer's machine."""
    if os.environ.get("CI") == "true":
        pytest.fail(msg)
    pytest.skip(msg)


def wait_until(probe: Callable[[], T], timeout_s: float = 30.0, every_s: float = 0.5) -> T:
    """Poll ``probe`` until it returns something truthy (bounded); returns that value, or the last one."""
    deadline = time.monotonic() + timeout_s
    value = probe()
    while not value and time.monotonic() < deadline:
        time.sleep(every_s)
        value = probe()
    return value
