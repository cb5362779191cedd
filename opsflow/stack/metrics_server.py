"""opsflow's own Prometheus metrics endpoint: ``python -m opsflow.stack.metrics_server --port N --home DIR``.

It serves, on 127.0.0.1 only, ``opsflow_up 1``, ``opsflow_build_info{version,python}`` and
``opsflow_stack_component_up{component}``, the last computed at every scrape from the pid files under
``<home>/run``: 1 while every process recorded for the component runs, 0 once one of them died. A component
that was never started (or was stopped cleanly, which removes its pid files) has no series at all.

New metrics go into :func:`build_registry` (one collector per subsystem), nowhere else.

Example:
    >>> component_of("spark-worker-0")
    'spark'
    >>> component_states({"spark-master": True, "spark-worker-0": False, "prefect-server": True})
    {'prefect': True, 'spark': False}
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import platform
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, ProcessCollector, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

from opsflow.stack.process import running_process

#: Components whose name contains a '-' (a key "worker-cpu" is the component "worker-cpu", not "worker").
#: Kept here rather than read from the stack manager's registry so that this server imports almost nothing.
MULTI_WORD_COMPONENTS: tuple[str, ...] = ("worker-cpu", "worker-gpu")


def component_of(key: str, known: Iterable[str] = MULTI_WORD_COMPONENTS) -> str:
    """The component a process key belongs to: a known name it starts with, else the text before the first '-'.

    >>> component_of("worker-gpu"), component_of("prometheus-process-exporter")
    ('worker-gpu', 'prometheus')
    """
    for name in sorted(known, key=len, reverse=True):
        if key == name or key.startswith(f"{name}-"):
            return name
    return key.split("-", 1)[0]


def component_states(alive: Mapping[str, bool], known: Iterable[str] = MULTI_WORD_COMPONENTS) -> dict[str, bool]:
    """Per component (sorted by name): True when every one of its recorded processes runs."""
    names = tuple(known)
    states: dict[str, bool] = {}
    for key, up in alive.items():
        comp = component_of(key, names)
        states[comp] = states.get(comp, True) and up
    return dict(sorted(states.items()))


def recorded_processes(home: Path) -> dict[str, bool]:
    """Every process key with a pid file under ``<home>/run``, and whether that process still runs."""
    run = home / "run"
    if not run.is_dir():
        return {}
    return {p.stem: running_process(home, p.stem) is not None for p in sorted(run.glob("*.pid"))}


def build_version() -> str:
    try:
        return importlib.metadata.version("opsflow")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class StackCollector(Collector):
    """``opsflow_up``, ``opsflow_build_info`` and the per-component state, computed at scrape time."""

    def __init__(self, home: Path, alive: Callable[[], Mapping[str, bool]] | None = None) -> None:
        self.home = home
        # Injectable so that tests can render the metrics without pid files.
        self._alive = alive or (lambda: recorded_processes(home))

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("opsflow_up", "1 while the opsflow metrics endpoint answers", value=1)
        yield InfoMetricFamily(
            "opsflow_build",
            "Version of opsflow and Python serving these metrics",
            value={"version": build_version(), "python": platform.python_version()},
        )
        family = GaugeMetricFamily(
            "opsflow_stack_component_up",
            "1 while every recorded process of a local-stack component runs, 0 when one died",
            labels=["component"],
        )
        for comp, up in component_states(self._alive()).items():
            family.add_metric([comp], 1.0 if up else 0.0)
        yield family


def build_registry(home: Path) -> CollectorRegistry:
    """Every metric this endpoint serves. Register the collectors of later subsystems here."""
    registry = CollectorRegistry()
    registry.register(StackCollector(home))
    ProcessCollector(registry=registry)  # process_cpu_seconds_total etc. of this server itself
    return registry


class _QuietHandler(WSGIRequestHandler):
    """No access log: Prometheus scrapes every 5 s and the log would only grow."""

    def log_message(self, format: str, *args: object) -> None:
        return None


def serve(port: int, home: Path, host: str = "127.0.0.1") -> None:
    """Serve the metrics of the stack under ``home`` in the foreground until killed."""
    app = make_wsgi_app(build_registry(home))
    with make_server(host, port, app, ThreadingWSGIServer, handler_class=_QuietHandler) as httpd:
        print(f"opsflow metrics for {home} on http://{host}:{port}/metrics", flush=True)
        httpd.serve_forever()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m opsflow.stack.metrics_server", description="opsflow's Prometheus metrics endpoint"
    )
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    parser.add_argument("--home", type=Path, required=True, help="Stack directory (pid files under <home>/run)")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C in a terminal: no traceback
        serve(args.port, args.home.resolve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
