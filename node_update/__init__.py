"""Node update rollouts on Slurm (the CSCS Node Update service): publish an update bundle for some nodes, and a
scheduled tick reserves idle nodes a few at a time, applies the update there and gives them back.

Pure modules (pydantic models and plain functions: no files, no network, no clock):

- :mod:`node_update.models`: the catalog, the ledger, the Slurm snapshot, the plan, :class:`NodeUpdateConfig`;
- :mod:`node_update.planner`: :func:`plan_tick`, one tick's decision (rules F2-F9 in its docstring);
- :mod:`node_update.codename`: ``YYYYmmddHHMMSS`` codenames and node levels;
- :mod:`node_update.simulate`: :func:`simulate`, the real planner against a synthetic job trace.

Modules that do I/O:

- :mod:`node_update.config`: :func:`load_config`, Block values with ``OPSFLOW_NU_*`` overrides;
- :mod:`node_update.catalog`: :func:`publish`, :func:`retire`, :func:`load_catalog` (``active-updates.list``);
- :mod:`node_update.spool`: the nodes' message files, the ledger, the root's lock;
- :mod:`node_update.slurm`: :class:`NodeUpdateSlurm`, a constant number of Slurm commands per tick;
- :mod:`node_update.node`: the node-side hooks (boot, epilog, apply) that slurmd and jobs run;
- :mod:`node_update.operator`: :func:`node_statuses`, :func:`resolve_failure`;
- :mod:`node_update.tick`: :func:`run_tick`, observe → plan → act, and its :class:`TickReport`.

A notebook usually goes through ``opsflow.connect().node_update`` (:class:`opsflow.api.node_update.NodeUpdateAPI`),
which finds the root and the Slurm cluster of the local stack or of a site; these functions take them as arguments.
Nothing here imports Prefect.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> root, bundle = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
    >>> _ = (bundle / "update.sh").write_text("#!/bin/sh\\necho updated\\n"); (bundle / "update.sh").chmod(0o755)
    >>> publish(root, "20261201120000", "nid[001-004]", bundle=bundle, canary=1).nodes
    ['nid001', 'nid002', 'nid003', 'nid004']
    >>> catalog = load_catalog(root)
    >>> snapshot = ClusterSnapshot(nodes=[SlurmNodeView(name="nid001", state="idle", has_job=False)], reservation=None)
    >>> ledger = Ledger(nodes={"nid001": NodeRecord(level="20261101000000")})
    >>> plan_tick(snapshot, catalog, ledger, [], [], NodeUpdateConfig(root=root, res_limit=2)).reserve
    ['nid001']
    >>> simulate(SimulationConfig(nodes=20, res_limit=5, utilization=0.0)).makespan_hours * 60
    44.0
"""

from __future__ import annotations

from node_update.catalog import CatalogError, UnknownCodenameError, load_catalog, publish, retire
from node_update.codename import CodenameError, codename_at, parse_codename
from node_update.config import load_config, local_root
from node_update.models import (
    Catalog,
    CatalogEntry,
    ClusterSnapshot,
    Ledger,
    NodeRecord,
    NodeState,
    NodeUpdateConfig,
    Plan,
    SlurmNodeView,
)
from node_update.operator import (
    NodeStatus,
    NotFailedError,
    Resolution,
    ResolveError,
    UnknownNodeError,
    node_statuses,
    resolve_failure,
)
from node_update.planner import plan_tick
from node_update.simulate import SimulationConfig, SimulationResult, simulate
from node_update.slurm import NodeUpdateSlurm
from node_update.spool import SpoolError, load_ledger
from node_update.tick import RolloutTimeout, TickReport, TickSummary, run_tick

__all__ = [
    "Catalog",
    "CatalogEntry",
    "CatalogError",
    "ClusterSnapshot",
    "CodenameError",
    "Ledger",
    "NodeRecord",
    "NodeState",
    "NodeStatus",
    "NodeUpdateConfig",
    "NodeUpdateSlurm",
    "NotFailedError",
    "Plan",
    "Resolution",
    "ResolveError",
    "RolloutTimeout",
    "SimulationConfig",
    "SimulationResult",
    "SlurmNodeView",
    "SpoolError",
    "TickReport",
    "TickSummary",
    "UnknownCodenameError",
    "UnknownNodeError",
    "codename_at",
    "load_catalog",
    "load_config",
    "load_ledger",
    "local_root",
    "node_statuses",
    "parse_codename",
    "plan_tick",
    "publish",
    "resolve_failure",
    "retire",
    "run_tick",
    "simulate",
]
