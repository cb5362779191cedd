"""The shape every local-stack component has, and the generic start / stop / status logic.

A component is a few long-running processes (``processes()``), the TCP ports they will listen on
(``ports()``), the configuration files they need (``prepare()``), a health probe (``healthy()``) and one-time
setup once healthy (``after_start()``: work pools, images, ...). Starting is idempotent: a component whose
processes all run and which answers its probe is left alone.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping

from pydantic import BaseModel

from opsflow.errors import AdapterError
from opsflow.stack.config import StackConfig
from opsflow.stack.process import (
    ProcessSpec,
    exit_code,
    log_file,
    port_owner,
    running_process,
    start_process,
    stop_process,
    tail,
)


class StackError(AdapterError):
    """A component could not be started or stopped; the message says which and why."""


class ComponentStatus(BaseModel):
    name: str
    state: str  # up | down | degraded | disabled
    url: str | None = None
    pid: int | None = None
    detail: str = ""


class Component(ABC):
    """One piece of the local stack (see the module docstring)."""

    name: str = ""
    #: Other components that must be up first (``up --only`` adds them).
    requires: tuple[str, ...] = ()
    start_timeout_s: float = 90.0

    def __init__(self, cfg: StackConfig, env: Mapping[str, str]) -> None:
        self.cfg = cfg
        self.env = dict(env)

    @abstractmethod
    def processes(self) -> list[ProcessSpec]:
        """The processes to keep running, in start order."""

    @abstractmethod
    def ports(self) -> list[int]:
        """The TCP ports the processes will listen on."""

    @abstractmethod
    def healthy(self) -> bool:
        """True when the component answers its probe (quick; no retries)."""

    def prepare(self) -> None:
        """Write configuration files; called before any process starts. Must be idempotent."""
        return None

    def after_start(self) -> None:
        """One-time setup once the component is healthy (idempotent)."""
        return None

    def url(self) -> str | None:
        return None

    def enabled(self) -> tuple[bool, str]:
        """Whether this component applies on this machine, and why not."""
        return True, ""

    # --- generic behaviour -------------------------------------------------------------------------------
    def is_up(self) -> bool:
        return all(running_process(self.cfg.home, p.key) for p in self.processes()) and self.healthy()

    def start(self) -> bool:
        """Bring the component up; False when it already was (nothing changed)."""
        ok, _ = self.enabled()
        if not ok:
            return False
        if self.is_up():
            return False
        specs = self.processes()
        missing = [s for s in specs if running_process(self.cfg.home, s.key) is None]
        if len(missing) == len(specs):
            self._check_ports()
        self.prepare()
        for spec in missing:
            start_process(self.cfg.home, spec, self.env)
        self._wait_healthy(specs)
        try:
            self.after_start()
        except BaseException:
            # Stopped so that the next `up` starts it again and retries the setup, instead of
            # finding it "up" with its setup never done.
            self.stop()
            raise
        return True

    def stop(self) -> bool:
        """Stop every process, last started first. True when something was running."""
        stopped = False
        for spec in reversed(self.processes()):
            stopped |= stop_process(self.cfg.home, spec.key, spec.stop_grace_s)
        return stopped

    def status(self) -> ComponentStatus:
        ok, why = self.enabled()
        if not ok:
            return ComponentStatus(name=self.name, state="disabled", detail=why)
        procs = {s.key: running_process(self.cfg.home, s.key) for s in self.processes()}
        live = [p for p in procs.values() if p is not None]
        main = live[0].pid if live else None
        if not live:
            return ComponentStatus(name=self.name, state="down", url=self.url())
        dead = [k for k, p in procs.items() if p is None]
        if dead:
            return ComponentStatus(
                name=self.name, state="degraded", url=self.url(), pid=main, detail=f"not running: {', '.join(dead)}"
            )
        if not self.healthy():
            return ComponentStatus(name=self.name, state="degraded", url=self.url(), pid=main, detail="probe fails")
        return ComponentStatus(name=self.name, state="up", url=self.url(), pid=main, detail=self.detail())

    def detail(self) -> str:
        return ""

    def _check_ports(self) -> None:
        for port in self.ports():
            owner = port_owner(port)
            if owner is not None:
                raise StackError(f"{self.name}: port {port} on 127.0.0.1 is already in use by {owner}")

    def _wait_healthy(self, specs: list[ProcessSpec]) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            for spec in specs:
                proc = running_process(self.cfg.home, spec.key)
                code = None
                code = -1 if proc is None else exit_code(proc)
                if code is not None:
                    self.stop()
                    log = log_file(self.cfg.home, spec.key)
                    raise StackError(
                        f"{self.name}: process '{spec.key}' exited during start; "
                        f"last lines of {log}:\n{tail(log)}"
                    )
            if self.healthy():
                return
            if time.monotonic() > deadline:
                logs = "\n".join(
                    f"--- {log_file(self.cfg.home, s.key)}\n{tail(log_file(self.cfg.home, s.key))}" for s in specs
                )
                self.stop()
                raise StackError(f"{self.name}: not healthy after {self.start_timeout_s:.0f} s\n{logs}")
            time.sleep(0.5)
