"""Staged pipelines from a notebook or a script: ``site.pipelines`` and one :class:`ProjectHandle` per project.

Reading (definitions, projects, logs, files) touches only the store's files: no Prefect import, no server. What
creates or answers runs uses Prefect's client inside ``site.prefect()``, so a site's ``PREFECT_API_URL`` (or the
local stack, from a notebook without any environment variable) is the one reached; nothing starts a server.

Where the store is: on a site (or with ``store_block=``) the root of the ``PipelineStore`` Block (read over the
REST API, no Prefect import); on the local stack ``<home>/pipelines``, which is what the stack saves as its
``local`` PipelineStore. The flows load the same Block by name, so the API and the workers agree.

    site = opsflow.connect()
    p = site.pipelines.create("traffic", pipeline="video-tracking")
    p.start()
    decision = p.wait(until="waiting")               # a progress bar of stages done; the pending decision
    p.answer("redo", env={"MIN_AREA": "80"}, comment="too many false detections")
    p.wait(until="finished"); p.logs("detect"); p.files("charts")

Example (files only, no server):
    >>> import tempfile
    >>> from opsflow.api import connect
    >>> home = Path(tempfile.mkdtemp())
    >>> api = connect(home=home).pipelines
    >>> _ = api.library.save("name: demo\\nstages:\\n  - {name: a, command: [echo, hi]}\\n")
    >>> p = api.create("traffic", pipeline="demo")
    >>> [(r.name, r.pipeline, r.status) for r in api.projects()]
    [('traffic', 'demo', 'IDLE')]
    >>> p.logs()
    Traceback (most recent call last):
    ...
    opsflow.errors.NotFoundError: project 'traffic' has no attempt
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field, ValidationError

from opsflow.errors import AdapterError, InputError, OpsflowError
from opsflow.tables import Records, TableView
from stage_pipeline.definition import ENV_NAME, PipelineDefinition, load_definition
from stage_pipeline.library import PipelineLibrary
from stage_pipeline.models import PendingDecision, Project, ProjectStateError, ProjectStatus, StageAttempt
from stage_pipeline.steps import Decision, first_stage
from stage_pipeline.store import ProjectNotFound, ProjectStore
from stage_pipeline.workspace import WorkspaceFile, list_files

if TYPE_CHECKING:
    from opsflow.api import Site

#: The Block type the flows load their store from (``blocks/pipeline_store.py``).
STORE_BLOCK_SLUG = "opsflow-pipeline-store"

Until = Literal["waiting", "running", "paused", "finished", "stopped"]
#: What each ``until`` of :meth:`ProjectHandle.wait` accepts (``stopped``: paused or finished).
TARGETS: dict[str, frozenset[ProjectStatus]] = {
    "waiting": frozenset({ProjectStatus.WAITING}),
    "running": frozenset({ProjectStatus.RUNNING}),
    "paused": frozenset({ProjectStatus.PAUSED}),
    "finished": frozenset({ProjectStatus.FINISHED}),
    "stopped": frozenset({ProjectStatus.PAUSED, ProjectStatus.FINISHED}),
}
#: States in which nothing drives the project: a wait for anything else ends there (a decision may still come).
AT_REST = frozenset({ProjectStatus.IDLE, ProjectStatus.PAUSED, ProjectStatus.FINISHED})


class WaitTimeout(OpsflowError, TimeoutError):
    """A wait ran out of time (the project goes on; wait again or look at it)."""


# --- result rows ---------------------------------------------------------------------------------------------
class DefinitionRow(BaseModel):
    """A definition file of the library: its stages, or why it is invalid."""

    name: str
    stages: int = Field(0, description="number of stages (0: invalid)")
    problem: str = Field("", description="the validation error (file:line: field: message), empty when valid")


class ProjectRow(BaseModel):
    """One project as `opsflow project list` shows it."""

    name: str
    pipeline: str
    status: str
    stage: str
    tags: list[str]
    reason: str


class RunStarted(TableView):
    """A `pipeline-run` flow run created for a project (it runs on a worker of the cpu pool)."""

    project: str
    run_id: str
    run_name: str
    stage: str | None = Field(description="the stage it starts at (None: the project has no stage left)")

    @property
    def message(self) -> str:
        return f"{self.project}: run {self.run_name} ({self.run_id}) from {self.stage or 'the end'}"


class Answered(TableView):
    """A decision given to a waiting pipeline run (it resumes on its worker)."""

    project: str
    run_id: str
    stage: str
    when: str
    action: str

    @property
    def message(self) -> str:
        return f"{self.project}: answered {self.action} to the decision {self.when} {self.stage}"


class AttemptLog(list[str]):
    """The lines of one attempt's log file, with the attempt they belong to."""

    def __init__(self, lines: Iterable[str], stage: str, attempt: int, path: Path) -> None:
        super().__init__(lines)
        self.stage, self.attempt, self.path = stage, attempt, path


class Expectation(BaseModel):
    """What a handle's last action leads the project to, so a wait never reads a state from before it.

    ``run_id``: a run was started and must take the project over first; ``answered``: the key of a decision
    already answered, whose run has not re-entered yet.
    """

    run_id: str | None = None
    answered: str | None = None


def wait_done(project: Project, until: Until, expect: Expectation) -> bool:
    """Whether a wait for ``until`` is over; raises :class:`ProjectStateError` when it cannot end any more.

    A project at rest (IDLE, PAUSED, FINISHED) that the last action no longer has to reach will not move without
    a new run, so waiting on would only time out; a WAITING project may still be answered (in the UI), so a wait
    for ``finished`` goes on.

    >>> from datetime import datetime, timezone
    >>> from stage_pipeline.definition import parse_definition
    >>> t = datetime(2024, 1, 1, tzinfo=timezone.utc)
    >>> p = Project.new("x", parse_definition("name: p\\nstages:\\n  - {name: a, command: [x]}\\n"), "", t)
    >>> p.set_status(ProjectStatus.PAUSED, "a attempt 1: failed", t)
    >>> wait_done(p, "paused", Expectation()), wait_done(p, "waiting", Expectation(run_id="r1"))
    (True, False)
    >>> wait_done(p, "waiting", Expectation())
    Traceback (most recent call last):
    ...
    stage_pipeline.models.ProjectStateError: x is PAUSED (a attempt 1: failed): it will not be waiting without a new run
    """
    if expect.run_id is not None and project.run_id != expect.run_id:
        return False  # the new run has not taken the project over yet: its status is from before
    if expect.answered is not None and project.waiting is not None and project.waiting.key == expect.answered:
        return False  # the answered run has not re-entered yet
    if project.status in TARGETS[until]:
        return True
    if project.status in AT_REST:
        raise ProjectStateError(
            f"{project.name} is {project.status.value} ({project.reason or 'no reason given'}): "
            f"it will not be {until} without a new run"
        )
    return False


def env_overrides(env: Mapping[str, Any] | Iterable[str] | None, source: str = "--env") -> dict[str, str]:
    """Environment overrides from a mapping or ``KEY=VALUE`` strings (the CLI's ``--env``); InputError otherwise.

    >>> env_overrides(["MIN_AREA=80", "NOTE=a=b"]), env_overrides({"K": 1})
    ({'MIN_AREA': '80', 'NOTE': 'a=b'}, {'K': '1'})
    >>> env_overrides(["MIN_AREA"])
    Traceback (most recent call last):
    ...
    opsflow.errors.InputError: --env: 'MIN_AREA': expected KEY=VALUE
    """
    if env is None:
        return {}
    pairs: list[tuple[str, str]] = []
    if isinstance(env, Mapping):
        pairs = [(str(k), str(v)) for k, v in env.items()]
    else:
        for item in env:
            key, sep, value = item.partition("=")
            if not sep:
                raise InputError(source, [(0, repr(item), "expected KEY=VALUE")])
            pairs.append((key, value))
    for key, _ in pairs:
        if not ENV_NAME.match(key):
            raise InputError(source, [(0, repr(key), "not an environment variable name")])
    return dict(pairs)


def decision_of(
    definition: PipelineDefinition, action: str, env: dict[str, str], stage: str | None, comment: str
) -> Decision:
    """The form's answer, checked here first so a bad one fails at once instead of as the server's refusal."""
    if stage is not None:
        definition.stage(stage)  # NotFoundError names the stages there are
    if action == "goto" and stage is None:
        raise InputError("action", [(0, "goto", "needs the stage to go to")])
    try:
        return Decision.model_validate({"action": action, "env": env, "goto_stage": stage, "comment": comment})
    except ValidationError:
        raise InputError("action", [(0, repr(action), "expected continue, redo, goto or stop")]) from None


# --- the API -------------------------------------------------------------------------------------------------
class PipelinesAPI:
    """Pipeline definitions and projects of one site (``site.pipelines``)."""

    def __init__(self, site: Site, store_block: str | None = None) -> None:
        self.site = site
        self._store_block = store_block

    def __repr__(self) -> str:
        return f"<PipelinesAPI {self.root}>"

    # --- where ---------------------------------------------------------------------------------------------
    @property
    def block_name(self) -> str:
        """The PipelineStore Block the flows load (the same store as :attr:`root`)."""
        return self._store_block or self.site.block

    @cached_property
    def root(self) -> Path:
        """The store's root: the Block's ``root`` on a site (or with ``store_block``), else ``<home>/pipelines``."""
        if self.site.is_local and self._store_block is None:
            return self.site.home / "pipelines"
        values = self.site.block_values(STORE_BLOCK_SLUG, self.block_name)
        if not values.get("root"):
            raise AdapterError(f"the {STORE_BLOCK_SLUG} block {self.block_name!r} has no root")
        return Path(values["root"])

    @property
    def library(self) -> PipelineLibrary:
        """The definition files (``<root>/pipelines``)."""
        return PipelineLibrary(self.root / "pipelines")

    @property
    def store(self) -> ProjectStore:
        """The projects (``<root>/projects``)."""
        return ProjectStore(self.root)

    @contextmanager
    def prefect(self, what: str) -> Iterator[None]:
        """Prefect's client pointed at the site; an unreachable API or a missing deployment as AdapterError."""
        import httpx

        with self.site.prefect():
            from prefect.exceptions import ObjectNotFound

            try:
                yield
            except (httpx.ConnectError, httpx.TimeoutException) as exc:
                raise AdapterError(f"{what}: cannot reach the Prefect API at {self.site.api_url}: {exc}") from exc
            except ObjectNotFound as exc:
                raise AdapterError(
                    f"{what}: not found on {self.site.api_url} ({exc}); are the deployments applied (`opsflow deploy`)?"
                ) from exc

    # --- definitions ---------------------------------------------------------------------------------------
    def definitions(self) -> Records[DefinitionRow]:
        """Every definition file with its number of stages, or its problem (file:line: field: message)."""
        rows: Records[DefinitionRow] = Records()
        library = self.library
        for name in library.list():
            try:
                rows.append(DefinitionRow(name=name, stages=len(library.get(name).stages)))
            except InputError as exc:
                rows.append(DefinitionRow(name=name, problem=str(exc)))
        return rows

    def validate(self, path: str | Path) -> PipelineDefinition:
        """Check a definition file anywhere (no store, no server); InputError names the file, line and field.

        Unlike a file in the library, its file name need not be the definition's name (``pipeline.yaml``).
        """
        return load_definition(path)

    def show(self, name: str) -> str:
        """A definition's YAML, as written (comments included)."""
        return self.library.text(name)

    def save(self, text: str) -> PipelineDefinition:
        """Validate a definition and write it to the library as ``<name>.yaml``."""
        return self.library.save(text)

    def add(self, path: str | Path, replace: bool = False) -> PipelineDefinition:
        """Req. 1110: validate a definition file and copy it into the library as ``<name>.yaml``.

        Validated now, not first when a project uses it: an error names ``path``, its line and field. An existing
        definition of that name is kept unless ``replace`` (projects keep their own copy either way).
        """
        definition = load_definition(path)
        if definition.name in self.library.list() and not replace:
            raise InputError(
                str(path), [(0, "name", f"pipeline {definition.name!r} exists already (replace it with --replace)")]
            )
        self.library.save(Path(path).read_text(encoding="utf-8"))
        return definition

    def delete(self, name: str) -> None:
        """Req. 1130: remove a definition from the library; projects made from it keep their copy and run on."""
        self.library.delete(name)

    # --- projects ------------------------------------------------------------------------------------------
    def create(self, name: str, pipeline: str) -> ProjectHandle:
        """A new project with its own copy of the definition ``pipeline`` (req. 1210)."""
        library = self.library
        self.store.create(name, library.get(pipeline), library.text(pipeline))
        return ProjectHandle(self, name)

    def project(self, name: str) -> ProjectHandle:
        """The handle of an existing project (:class:`~stage_pipeline.store.ProjectNotFound` otherwise)."""
        if not self.store.exists(name):
            raise ProjectNotFound(f"no project {name!r} under {self.store.projects_dir}")
        return ProjectHandle(self, name)

    def projects(self) -> Records[ProjectRow]:
        """Every project with its pipeline, status, current stage, tags and the reason of its status."""
        rows: Records[ProjectRow] = Records()
        store = self.store
        for name in store.list():
            p = store.get(name)
            rows.append(
                ProjectRow(
                    name=p.name, pipeline=p.definition.name, status=p.status.value, stage=p.current_stage or "",
                    tags=p.tags, reason=p.reason,
                )
            )  # fmt: skip
        return rows


class ProjectHandle:
    """One project: start, wait, answer, resume, pause, abort; its history, logs and files; rename, tags."""

    def __init__(self, api: PipelinesAPI, name: str) -> None:
        self.api = api
        self.name = name
        self._expect = Expectation()

    def __repr__(self) -> str:
        return f"<ProjectHandle {self.name}>"

    def _repr_html_(self) -> str:
        return self.status._repr_html_()

    def _repr_markdown_(self) -> str:
        return self.status._repr_markdown_()

    @property
    def status(self) -> Project:
        """The project as it is now (read from the store)."""
        return self.api.store.get(self.name)

    def show(self) -> Project:
        """The project as it is now: stage states and every attempt (a table in Jupyter)."""
        return self.status

    # --- runs (Prefect) ------------------------------------------------------------------------------------
    def start(
        self,
        stage: str | None = None,
        pause_after: bool = False,
        env: Mapping[str, Any] | Iterable[str] | None = None,
    ) -> RunStarted:
        """Create a `pipeline-run` flow run of the project at ``stage`` (default: where it stopped); returns at once.

        ``pause_after``: pause after that stage; ``env``: overrides for the stage that runs first.
        """
        p = self.status
        if stage is not None:
            p.definition.stage(stage)
        start = stage or first_stage(p)
        overrides = env_overrides(env)
        from stage_pipeline import prefect_api  # only now: bad input fails without loading Prefect

        with self.api.prefect(f"start {self.name}"):
            run = prefect_api.start_pipeline_run(self.name, start, pause_after, overrides, self.api.block_name)
        self._expect = Expectation(run_id=str(run.id))
        return RunStarted(project=self.name, run_id=str(run.id), run_name=run.name, stage=start)

    def answer(
        self,
        action: str = "continue",
        env: Mapping[str, Any] | Iterable[str] | None = None,
        comment: str = "",
        stage: str | None = None,
        timeout: float = 60.0,
    ) -> Answered:
        """Answer the decision the project waits for: ``continue``, ``redo`` (with ``env``), ``goto`` ``stage``,
        ``stop``; ``comment`` is kept with the attempt. Waits up to ``timeout`` s for the form to exist."""
        p = self.status
        if p.waiting is None:
            raise ProjectStateError(f"{self.name} waits for no decision (it is {p.status.value}: {p.reason})")
        waiting = p.waiting
        decision = decision_of(p.definition, action, env_overrides(env), stage, comment)
        with self.api.site.rest() as rest:  # REST, not Prefect's client: an answer returns in well under 2 s
            rest.answer_form(waiting.run_id, decision.model_dump(exclude_none=True), timeout)
        self._expect = Expectation(run_id=waiting.run_id, answered=waiting.key)
        return Answered(
            project=self.name, run_id=waiting.run_id, stage=waiting.stage, when=waiting.when, action=decision.action
        )

    def answer_input(self, values: Mapping[str, Any], timeout: float = 60.0) -> str:
        """Answer the form of a stage that asked for input while it runs (the same form as in the Prefect UI; the
        server checks ``values`` against the stage's schema). Returns the stage run's id."""
        run_id = next((a.run_id for a in reversed(self.status.running_attempts()) if a.run_id), None)
        if run_id is None:
            raise ProjectStateError(f"{self.name} has no running stage that could ask for input")
        with self.api.site.rest() as rest:
            rest.answer_form(run_id, dict(values), timeout)
        return run_id

    def resume(
        self,
        stage: str | None = None,
        env: Mapping[str, Any] | Iterable[str] | None = None,
        action: str | None = None,
        comment: str = "",
    ) -> RunStarted | Answered:
        """Answer the waiting form (``action``, default ``goto`` with a ``stage``, else ``continue``), or start a new
        run where the project stopped (or at ``stage``) when no run waits for a decision any more (``action`` is
        then moot: the new run starts at ``stage`` with ``env``)."""
        p = self.status
        overrides = env_overrides(env)  # bad input fails before anything talks to Prefect
        if stage is not None:
            p.definition.stage(stage)
        if p.waiting is not None:
            with self.api.site.rest() as rest:
                ended = rest.flow_run_end(p.waiting.run_id)
            if ended is None:  # its run still waits (or is about to suspend): answer it
                return self.answer(action or ("goto" if stage else "continue"), overrides, comment, stage)
        return self.start(stage, env=overrides)

    def wait(self, until: Until = "waiting", timeout: float = 600.0, progress: bool = True, poll_s: float = 1.0) -> Any:
        """Block until the project is ``until`` (``waiting``, ``running``, ``paused``, ``finished``, ``stopped``);
        polls the store (cheap), with a progress bar of stages done (``progress=False``: none).

        Returns the :class:`PendingDecision` for ``waiting``, else the :class:`Project`. Raises
        :class:`ProjectStateError` when the project comes to rest in another state (e.g. PAUSED while waiting
        for ``waiting``) or its new run ended before taking it over, :class:`WaitTimeout` after ``timeout`` s.
        """
        if until not in TARGETS:
            raise InputError("until", [(0, repr(until), f"expected one of {', '.join(TARGETS)}")])
        from tqdm.auto import tqdm

        store, expect = self.api.store, self._expect
        deadline = time.monotonic() + timeout
        next_run_check = time.monotonic() + 5.0
        p = store.get(self.name)
        with tqdm(total=len(p.stages), desc=self.name, unit="stage", disable=not progress, leave=True) as bar:
            while True:
                bar.total, bar.n = len(p.stages), p.stages_done()
                bar.set_postfix_str(f"{p.status.value} {p.current_stage or ''}".strip(), refresh=True)
                if wait_done(p, until, expect):
                    self._expect = Expectation()
                    return p.waiting if until == "waiting" else p
                now = time.monotonic()
                if now >= deadline:
                    raise WaitTimeout(
                        f"{self.name}: not {until} after {timeout:.0f} s (it is {p.status.value}: {p.reason})"
                    )
                if expect.run_id is not None and p.run_id != expect.run_id and now >= next_run_check:
                    next_run_check = now + 5.0
                    self._check_run(expect.run_id)
                time.sleep(poll_s)
                p = store.get(self.name)

    def _check_run(self, run_id: str) -> None:
        """A started run that ended before taking the project over (e.g. a stage still alive) will never do it."""
        with self.api.site.rest() as rest:
            ended = rest.flow_run_end(run_id)
        if ended is not None:
            raise ProjectStateError(f"{self.name}: run {run_id} ended before taking the project over: {ended}")

    # --- requests to the running project (files only) ------------------------------------------------------
    def pause(self) -> Project:
        """Req. 1420: pause before the next stage (the run checks between stages)."""
        return self.api.store.request_pause(self.name)

    def abort(self) -> Project:
        """Req. 1440: kill the running stage (its whole process tree); the stage fails and the project pauses."""
        if not self.status.running_attempts():
            raise ProjectStateError(f"{self.name}: no stage is running")
        return self.api.store.request_abort(self.name)

    # --- what happened -------------------------------------------------------------------------------------
    def history(self) -> Records[StageAttempt]:
        """Every attempt of every stage, oldest first."""
        return Records(self.status.history)

    def logs(self, stage: str | None = None, attempt: int | None = None) -> AttemptLog:
        """The log lines of an attempt (default: the latest, of ``stage`` or of any stage); [] before any line."""
        chosen = self.status.chosen_attempt(stage, attempt)
        path = self.api.store.log_path(self.name, chosen.stage, chosen.attempt)
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            lines = []
        return AttemptLog(lines, chosen.stage, chosen.attempt, path)

    def files(self, stage: str | None = None, attempt: int | None = None) -> Records[WorkspaceFile]:
        """The files of an attempt's workspace (default: the latest attempt): path (relative), size, mtime."""
        chosen = self.status.chosen_attempt(stage, attempt)
        return Records(list_files(self.api.store.workspace(self.name, chosen)))

    def decision(self) -> PendingDecision | None:
        """The decision the project waits for, if any."""
        return self.status.waiting

    # --- the project itself (req. 1220-1250) ---------------------------------------------------------------
    def rename(self, new_name: str, force: bool = False) -> Project:
        """Req. 1230; refused while a run drives the project (``force``: its run is known to be gone)."""
        project = self.api.store.rename(self.name, new_name, force=force)
        self.name = new_name
        return project

    def tag(self, *tags: str) -> Project:
        return self.api.store.tag(self.name, *tags)

    def untag(self, *tags: str) -> Project:
        return self.api.store.untag(self.name, *tags)

    def set_pipeline(self, pipeline: str) -> Project:
        """Switch to another definition: stage states kept by name, the history kept whole (req. 1220)."""
        library = self.api.library
        return self.api.store.set_definition(self.name, library.get(pipeline), library.text(pipeline))

    def delete(self, force: bool = False) -> None:
        """Remove the project with every file (req. 1250); refused while a run drives it unless ``force``."""
        self.api.store.delete(self.name, force=force)


__all__ = [
    "Answered",
    "AttemptLog",
    "DefinitionRow",
    "Expectation",
    "PipelinesAPI",
    "ProjectHandle",
    "ProjectRow",
    "RunStarted",
    "WaitTimeout",
    "env_overrides",
    "wait_done",
]
