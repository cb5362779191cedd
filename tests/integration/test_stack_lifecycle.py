"""`up` / `down` semantics on a small stack of its own (Slurm + Prometheus), in its own home and ports."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from opsflow.stack.base import StackError
from opsflow.stack.config import StackConfig
from opsflow.stack.manager import down, status, up
from opsflow.stack.process import stack_processes
from tests.support import unavailable

pytestmark = pytest.mark.stack
ONLY = ["slurm", "prometheus"]


@pytest.fixture
def small_stack(tmp_path: Path) -> StackConfig:
    return StackConfig(home=tmp_path / "home", slurm_nodes=2).shifted(11000)


def test_up_twice_changes_nothing_and_down_leaves_no_process(small_stack: StackConfig) -> None:
    try:
        assert up(small_stack, ONLY) == ["slurm", "prometheus"]
    except StackError as exc:
        down(small_stack)
        unavailable(f"slurm/prometheus did not start: {exc}")
    try:
        pids = {r.name: r.pid for r in status(small_stack) if r.name in ONLY}
        assert all(pids.values()), pids
        assert up(small_stack, ONLY) == []
        assert {r.name: r.pid for r in status(small_stack) if r.name in ONLY} == pids
        assert stack_processes(small_stack.home)
    finally:
        stopped = down(small_stack)
    assert set(stopped) == set(ONLY)
    assert stack_processes(small_stack.home) == []
    assert {r.name: r.state for r in status(small_stack) if r.name in ONLY} == {"slurm": "down", "prometheus": "down"}


def test_up_refuses_a_taken_port_naming_it_and_its_owner(small_stack: StackConfig) -> None:
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", small_stack.prometheus_port))
        squatter.listen()
        with pytest.raises(StackError) as err:
            up(small_stack, ["prometheus"])
    message = str(err.value)
    assert f"port {small_stack.prometheus_port}" in message
    assert f"pid {os.getpid()} " in message
    assert stack_processes(small_stack.home) == []
