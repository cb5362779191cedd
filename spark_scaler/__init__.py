"""Spark worker autoscaling: the thesis's Auto-Scaler (Scaling Heat + the Kubernetes HPA formula) and our policy.

Every ``interval_seconds`` one Monitor → Analyse → Plan → Execute tick: read the metrics and the Spark master
(:func:`observe`), update each metric's heat and choose a worker count (:func:`decide`), start or stop workers
through a backend (:func:`tick`). Heat and cooldown persist in a state file between ticks.

Pure (no network, no clock, no files; testable without anything running):

- :mod:`spark_scaler.heat`: Scaling Heat (Algorithm 1) and the KHPA formula;
- :mod:`spark_scaler.policy`: :func:`decide`, every rule in the order it applies;
- :mod:`spark_scaler.models`: :class:`Observation`, :class:`Decision`, :class:`ScalerState`, ...;
- :mod:`spark_scaler.config`: the thesis YAML plus ``opsflow:`` (errors name file, line and key);
- :mod:`spark_scaler.report`: the rows the results show as tables.

I/O: :mod:`spark_scaler.metrics` (Prometheus, the Spark master, NVML), :mod:`spark_scaler.backends` (local
processes, Docker containers, a Swarm service), :mod:`spark_scaler.gpus` (the GPU inventory) and
:mod:`spark_scaler.controller` (one tick wired, the state file, the backend builder).

The operator's entry is :class:`opsflow.api.scaler.ScalerAPI` (``opsflow.connect().scaler(path)``: preview,
tick, status, run); the controller loop is the flow ``flows/autoscale.py``. Names are imported on first use, so
``import spark_scaler`` stays cheap.

Example:
    >>> from spark_scaler import EXAMPLE_THESIS_YAML, Observation, ScalerState, decide, load_config_text
    >>> cfg = load_config_text(EXAMPLE_THESIS_YAML)          # the thesis's Listing 6.6, unchanged
    >>> state = ScalerState(heat={"cpu": 2})                 # two overloaded ticks already seen (n = 3)
    >>> d, state = decide(Observation(at=0, active_workers=2, metrics={"cpu": 0.95}), state, cfg, now=0.0)
    >>> d.action.value, d.target, state.heat
    ('scale_out', 4, {'cpu': 0})
    >>> from spark_scaler import hpa_target, scaling_heat
    >>> hpa_target(active=2, utilization=0.95, target=0.5), scaling_heat(0.1, 0.2, 0.6, heat=0, n=3)[0]
    (4, -1)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opsflow.lazy import lazy_exports

if TYPE_CHECKING:
    from spark_scaler.backends import BackendError, WorkerBackend
    from spark_scaler.config import (
        EXAMPLE_THESIS_YAML,
        Endpoints,
        OpsflowConfig,
        ScalerConfig,
        bind_endpoints,
        load_config,
        load_config_text,
        our_policy,
        thesis_policy,
    )
    from spark_scaler.controller import (
        StateError,
        TickResult,
        backend_for,
        default_state_path,
        load_state,
        plan,
        tick,
    )
    from spark_scaler.heat import hpa_target, scaling_heat
    from spark_scaler.metrics import DEFAULT_QUERIES, observe
    from spark_scaler.models import Action, Decision, Observation, ScalerState, WorkerRef
    from spark_scaler.policy import decide

#: Public name → the module defining it.
_WHERE = {
    **dict.fromkeys(["BackendError", "WorkerBackend"], "backends"),
    **dict.fromkeys(
        [
            "EXAMPLE_THESIS_YAML",
            "Endpoints",
            "OpsflowConfig",
            "ScalerConfig",
            "bind_endpoints",
            "load_config",
            "load_config_text",
            "our_policy",
            "thesis_policy",
        ],
        "config",
    ),
    **dict.fromkeys(
        ["StateError", "TickResult", "backend_for", "default_state_path", "load_state", "plan", "tick"], "controller"
    ),
    **dict.fromkeys(["hpa_target", "scaling_heat"], "heat"),
    **dict.fromkeys(["DEFAULT_QUERIES", "observe"], "metrics"),
    **dict.fromkeys(["Action", "Decision", "Observation", "ScalerState", "WorkerRef"], "models"),
    "decide": "policy",
}

# Spelled out (not derived from _WHERE) so that linters see the TYPE_CHECKING imports above as the exports.
__all__ = [
    "DEFAULT_QUERIES",
    "EXAMPLE_THESIS_YAML",
    "Action",
    "BackendError",
    "Decision",
    "Endpoints",
    "Observation",
    "OpsflowConfig",
    "ScalerConfig",
    "ScalerState",
    "StateError",
    "TickResult",
    "WorkerBackend",
    "WorkerRef",
    "backend_for",
    "bind_endpoints",
    "decide",
    "default_state_path",
    "hpa_target",
    "load_config",
    "load_config_text",
    "load_state",
    "observe",
    "our_policy",
    "plan",
    "scaling_heat",
    "thesis_policy",
    "tick",
]


__getattr__ = lazy_exports(__name__, _WHERE)
