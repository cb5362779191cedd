"""`up`, `down` and `status` of the whole local stack, in dependency order.

Example:
    >>> resolve_only(["workers"])
    ['prefect', 'worker-cpu', 'worker-gpu']
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable

from opsflow.errors import InputError
from opsflow.stack.base import Component, ComponentStatus
from opsflow.stack.config import StackConfig
from opsflow.stack.env import child_env
from opsflow.stack.process import kill_all, stack_processes

# Start order; `down` goes the other way. Module paths keep `opsflow status` from importing pyspark etc.
REGISTRY: dict[str, str] = {
    "prefect": "opsflow.stack.prefect:PrefectComponent",
    "slurm": "opsflow.stack.slurm:SlurmComponent",
    "spark": "opsflow.stack.spark:SparkComponent",
    "prometheus": "opsflow.stack.prometheus:PrometheusComponent",
    "podman": "opsflow.stack.podman:PodmanComponent",
    "worker-cpu": "opsflow.stack.prefect:CpuWorkerComponent",
    "worker-gpu": "opsflow.stack.prefect:GpuWorkerComponent",
    "nodes": "opsflow.stack.nodes:NodePublisherComponent",
    "warm-engine": "opsflow.stack.warm:WarmEngineComponent",
    "gitlab": "opsflow.stack.ci:GitLabStandInComponent",
    "webhook": "opsflow.stack.ci:WebhookComponent",
    "files": "opsflow.stack.files:FileServiceComponent",
}
ALIASES = {"workers": ("worker-cpu", "worker-gpu")}


def component_class(name: str) -> type[Component]:
    module, _, attr = REGISTRY[name].partition(":")
    cls: type[Component] = getattr(importlib.import_module(module), attr)
    return cls


def resolve_only(only: Iterable[str] | None) -> list[str]:
    """Component names to act on, with aliases expanded and requirements added, in start order."""
    if not only:
        return list(REGISTRY)
    wanted: set[str] = set()
    for raw in only:
        name = raw.strip()
        if not name:
            continue
        if name in ALIASES:
            wanted.update(ALIASES[name])
        elif name in REGISTRY:
            wanted.add(name)
        else:
            known = ", ".join([*REGISTRY, *ALIASES])
            raise InputError("--only", [(0, name, f"unknown component '{name}' (known: {known})")])
    for name in list(wanted):
        wanted.update(component_class(name).requires)
    return [n for n in REGISTRY if n in wanted]


def components(cfg: StackConfig, names: Iterable[str] | None = None) -> list[Component]:
    env = child_env(cfg)
    return [component_class(n)(cfg, env) for n in (names if names is not None else REGISTRY)]


def up(cfg: StackConfig, only: Iterable[str] | None = None, echo: Callable[[str], None] = print) -> list[str]:
    """Start what is not running yet; returns the components it started (empty: nothing changed)."""
    names = resolve_only(only)
    cfg.home.mkdir(parents=True, exist_ok=True)
    cfg.save()
    started = []
    for comp in components(cfg, names):
        ok, why = comp.enabled()
        if not ok:
            echo(f"{comp.name}: skipped ({why})")
            continue
        if comp.start():
            started.append(comp.name)
            echo(f"{comp.name}: started")
        else:
            echo(f"{comp.name}: already up")
    return started


def down(cfg: StackConfig, echo: Callable[[str], None] = print) -> list[str]:
    """Stop every component (last started first), then end any straggler carrying this stack's id."""
    stopped = []
    for comp in reversed(components(cfg)):
        if comp.stop():
            stopped.append(comp.name)
            echo(f"{comp.name}: stopped")
    leftovers = stack_processes(cfg.home)
    if leftovers:
        echo(f"ending {len(leftovers)} leftover process(es): {sorted(p.pid for p in leftovers)}")
        kill_all(leftovers)
    return stopped


def status(cfg: StackConfig) -> list[ComponentStatus]:
    return [comp.status() for comp in components(cfg)]
