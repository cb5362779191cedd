"""Helpers shared by the tests."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

from opsflow.adapters.spark import MasterState, SparkMaster
from opsflow.stack.base import Component, StackError

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


def start_or_unavailable(component: Component) -> None:
    """Start a real component for a test; one that cannot run here fails in CI and skips elsewhere."""
    ok, why = component.enabled()
    if not ok:
        unavailable(f"{component.name} cannot run here: {why}")
    try:
        component.start()
    except StackError as exc:
        component.stop()
        unavailable(f"{component.name} did not start: {exc}")


def wait_for_state(master: SparkMaster, check: Callable[[MasterState], bool], within_s: float = 90.0) -> MasterState:
    """Poll a Spark master until ``check`` holds (workers register and change state asynchronously); bounded,
    returns the last state either way."""
    deadline = time.monotonic() + within_s
    while True:
        state = master.state()
        if check(state) or time.monotonic() > deadline:
            return state
        time.sleep(0.5)
