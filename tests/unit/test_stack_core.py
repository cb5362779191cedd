"""The stack's pure parts: config, component selection, files, process bookkeeping."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from opsflow.errors import InputError
from opsflow.files import append_line, atomic_write_text
from opsflow.processes import ProcessSpec, start_process, start_ticks, stop_process
from opsflow.stack.config import StackConfig
from opsflow.stack.manager import REGISTRY, resolve_only
from opsflow.stack.process import port_owner, running_process, tail
from work_pools import POOLS, base_job_template


def test_shifted_moves_every_port_and_nothing_else(tmp_path: Path) -> None:
    cfg = StackConfig(home=tmp_path)
    moved = cfg.shifted(100)
    for key, value in cfg.model_dump().items():
        want = value + 100 if key.endswith("_port") else value
        assert getattr(moved, key) == want, key


def test_config_round_trips_through_home(tmp_path: Path) -> None:
    cfg = StackConfig(home=tmp_path, slurm_nodes=3).shifted(7)
    cfg.save()
    assert StackConfig.load(tmp_path) == cfg


def test_only_adds_requirements_and_keeps_start_order() -> None:
    assert resolve_only(["worker-cpu", "slurm"]) == ["prefect", "slurm", "worker-cpu"]
    assert resolve_only(None) == list(REGISTRY)


def test_only_rejects_unknown_component_by_name() -> None:
    with pytest.raises(InputError, match="unknown component 'slurmm'"):
        resolve_only(["slurmm"])


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "d" / "f.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two", mode=0o600)
    assert target.read_text() == "two"
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in target.parent.iterdir()] == ["f.txt"]


def test_append_line_adds_one_line_each(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    append_line(log, "x")
    append_line(log, "y\n")
    assert log.read_text() == "x\ny\n"


def test_tail_returns_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "l.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert tail(log, 2) == "line 98\nline 99"
    assert tail(tmp_path / "missing.log") == ""


def test_port_owner_names_the_listening_process() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        owner = port_owner(port)
    assert owner is not None and owner.startswith(f"pid {os.getpid()} (")
    assert port_owner(port) is None


def test_running_process_ignores_a_recycled_pid(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "x.pid").write_text(f'{{"pid": {proc.pid}, "create_time": 1.0}}')
    assert running_process(tmp_path, "x") is None


def test_a_recorded_process_is_still_found_after_the_wall_clock_moved_and_a_recycled_pid_is_not(
    tmp_path: Path,
) -> None:
    # psutil's create_time moves with the wall clock (boot time in whole seconds from /proc/stat): a record
    # whose create_time is now 1.5 s off must still name the same live process when its start ticks match.
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "run").mkdir()
        ticks = start_ticks(proc.pid)
        assert ticks is not None
        created = psutil.Process(proc.pid).create_time()
        record = {"pid": proc.pid, "create_time": created + 1.5, "start_ticks": ticks}
        (tmp_path / "run" / "x.pid").write_text(json.dumps(record))
        found = running_process(tmp_path, "x")
        assert found is not None and found.pid == proc.pid
        # Another process under the same pid would have other start ticks, whatever its create_time reads.
        (tmp_path / "run" / "x.pid").write_text(
            json.dumps({**record, "create_time": created, "start_ticks": ticks + 7})
        )
        assert running_process(tmp_path, "x") is None
    finally:
        proc.kill()
        proc.wait()


def test_start_process_records_the_start_ticks(tmp_path: Path) -> None:
    spec = ProcessSpec(key="sleeper", argv=[sys.executable, "-c", "import time; time.sleep(60)"])
    started = start_process(tmp_path, spec, os.environ)
    try:
        record = json.loads((tmp_path / "run" / "sleeper.pid").read_text())
        assert record["start_ticks"] == start_ticks(started.pid) is not None
        assert running_process(tmp_path, "sleeper") == started
    finally:
        stop_process(tmp_path, "sleeper", grace_s=2)
    assert running_process(tmp_path, "sleeper") is None


def test_pool_templates_are_process_templates_with_pool_env() -> None:
    for pool in POOLS:
        template = base_job_template(pool)
        assert set(template) == {"job_configuration", "variables"}
        assert template["variables"]["properties"]["env"]["default"]["OPSFLOW_POOL"] == pool


def test_no_flow_module_shadows_a_top_level_package() -> None:
    # Prefect puts flows/ on sys.path when it loads a flow by file path: flows/node_update.py would hide the
    # node_update package from every import made while loading any flow.
    root = Path(__file__).resolve().parents[2]
    packages = {p.name for p in root.iterdir() if (p / "__init__.py").exists()}
    flow_modules = {p.stem for p in (root / "flows").glob("*.py")}
    assert not flow_modules & packages
