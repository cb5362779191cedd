"""Staged pipelines (the Winslow system as Prefect flows): definitions, projects, workspaces, runners, log scanning.

A *pipeline definition* (YAML, :func:`load_definition`) names ordered stages; a *project* (:class:`Project`) runs
one, keeping its own copy of the definition, each stage's state and every attempt; the *store*
(:class:`ProjectStore`) keeps projects on a shared filesystem, the *library* (:class:`PipelineLibrary`) the
definition files. The flows ``pipeline-run`` and ``stage-run`` drive projects; a notebook or a shell drives them
through ``opsflow.connect().pipelines`` (``opsflow/api/pipelines.py``), which calls what is exported here.

Pure modules (no I/O, no clock, no Prefect): ``definition`` (YAML → models, errors with file:line:field),
``models`` (project state, the heartbeat staleness rule), ``steps`` (where a run goes next, what a decision
means), ``logscan`` (error and progress lines, ETA), ``node_table`` (every node's sample joined with the
workers on it, the staleness rule), ``limits`` (how a stage's cpus, memory and GPUs are enforced).
I/O modules: ``library`` and ``store`` (files under the store's root), ``workspace`` (hard-link copies, sealing,
listing), ``attempt`` (a running attempt's log, heartbeat and abort checks), ``runners`` and ``docker_runner``
(processes, containers), ``limit_probe`` and ``gpu_leases`` (this node's cgroups, GPU leases), ``monitor`` (this
node's CPU, memory, GPUs; publishing and reading every node's sample), ``prefect_api`` (the only one that imports
Prefect: start runs, answer forms, see workers). Importing this package loads only the pure modules and the store
and library (no Prefect, no Docker SDK).

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> root = Path(tempfile.mkdtemp())
    >>> library = PipelineLibrary(root / "pipelines")
    >>> d = library.save("name: demo\\nstages:\\n  - {name: a, command: [echo, hi]}\\n  - {name: b, command: [ls]}\\n")
    >>> store = ProjectStore(root)
    >>> p = store.create("traffic", d, library.text("demo"))
    >>> p.status, first_stage(p), next_step(d, "a", "after", Decision(action="redo", env={"K": "1"})).stage
    (<ProjectStatus.IDLE: 'IDLE'>, 'a', 'a')
"""

from stage_pipeline.definition import PipelineDefinition, StageDefinition, load_definition, parse_definition
from stage_pipeline.library import PipelineLibrary, PipelineNotFound
from stage_pipeline.logscan import LogScanner
from stage_pipeline.models import (
    STALE_AFTER_S,
    AttemptOutcome,
    Liveness,
    PendingDecision,
    Project,
    ProjectStateError,
    ProjectStatus,
    StageAttempt,
    StageState,
    attempt_is_lost,
)
from stage_pipeline.steps import Decision, Step, first_stage, next_step
from stage_pipeline.store import ProjectExists, ProjectNotFound, ProjectStore

__all__ = [
    "STALE_AFTER_S",
    "AttemptOutcome",
    "Decision",
    "Liveness",
    "LogScanner",
    "PendingDecision",
    "PipelineDefinition",
    "PipelineLibrary",
    "PipelineNotFound",
    "Project",
    "ProjectExists",
    "ProjectNotFound",
    "ProjectStateError",
    "ProjectStatus",
    "ProjectStore",
    "StageAttempt",
    "StageDefinition",
    "StageState",
    "Step",
    "attempt_is_lost",
    "first_stage",
    "load_definition",
    "next_step",
    "parse_definition",
]
