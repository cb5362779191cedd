"""Seconds from nothing to each component of the local stack healthy, and to the whole stack.

Run: `.venv/bin/python benchmarks/stack_startup.py` (or `make bench`). The stack starts in a fresh temporary
home with ports shifted by 12000, so a running `opsflow up` is not disturbed, and is stopped at the end.
Baseline, measured in the same run: a bare `python -m http.server` started and probed through the same
supervisor — the floor that any component pays; each figure is also printed as a ratio to it.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import httpx

from opsflow.stack.base import Component
from opsflow.stack.config import StackConfig
from opsflow.stack.env import child_env
from opsflow.stack.manager import components, down, up
from opsflow.stack.process import ProcessSpec

PORT_OFFSET = 12000


class BaselineComponent(Component):
    """A trivial HTTP server: what starting any process and polling its health costs."""

    name = "baseline"

    def processes(self) -> list[ProcessSpec]:
        port = str(self.cfg.metrics_port)
        return [ProcessSpec(key="baseline-http", argv=[sys.executable, "-m", "http.server", "-b", "127.0.0.1", port])]

    def ports(self) -> list[int]:
        return [self.cfg.metrics_port]

    def healthy(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.cfg.metrics_port}/", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="opsflow-bench-"))
    cfg = StackConfig(home=home).shifted(PORT_OFFSET)
    cfg.save()
    baseline = BaselineComponent(cfg, child_env(cfg))
    t0 = time.perf_counter()
    baseline.start()
    base_s = time.perf_counter() - t0
    baseline.stop()

    rows: list[tuple[str, float]] = []
    total0 = time.perf_counter()
    try:
        for comp in components(cfg):
            if not comp.enabled()[0]:
                rows.append((f"{comp.name} (disabled: {comp.enabled()[1][:40]})", 0.0))
                continue
            t = time.perf_counter()
            comp.start()
            rows.append((comp.name, time.perf_counter() - t))
        total = time.perf_counter() - total0
        t = time.perf_counter()
        up(cfg, echo=lambda _: None)
        second_up = time.perf_counter() - t
    finally:
        t = time.perf_counter()
        down(cfg, echo=lambda _: None)
        down_s = time.perf_counter() - t

    print(f"baseline (python -m http.server through the supervisor): {base_s:.2f} s")
    print(f"{'component':<60} {'seconds':>8} {'x baseline':>11}")
    for name, secs in [*rows, ("whole stack (sum, in start order)", total), ("second `up` (no-op)", second_up),
                       ("`down`", down_s)]:
        print(f"{name:<60} {secs:8.2f} {secs / base_s:11.1f}")


if __name__ == "__main__":
    main()
