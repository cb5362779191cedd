"""Projects on disk: ``<root>/projects/<name>/project.json`` (+ the project's workspaces and logs beside it).

Seed 002, req. 1210-1250 (create, change the pipeline, rename, tags, delete with every file). Every change
loads, applies a :class:`~stage_pipeline.models.Project` method and writes back under the project's lock
(``fcntl.flock`` on ``<project>/.lock``, so the lock moves with a rename and dies with a delete); writes are
atomic, so a crash never leaves a torn ``project.json``.

Example:
    >>> import tempfile
    >>> from stage_pipeline.definition import parse_definition
    >>> store = ProjectStore(Path(tempfile.mkdtemp()))
    >>> d = parse_definition("name: p\\nstages:\\n  - {name: a, command: [x]}\\n")
    >>> store.create("demo", d).stages
    {'a': <StageState.PENDING: 'PENDING'>}
    >>> store.tag("demo", "b", "a").tags
    ['a', 'b']
    >>> store.rename("demo", "demo2").name, store.list()
    ('demo2', ['demo2'])
"""

from __future__ import annotations

import builtins
import fcntl
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from opsflow.errors import InputError, NotFoundError, OpsflowError
from opsflow.files import atomic_write_text
from stage_pipeline.definition import NAME_PATTERN, PipelineDefinition, definition_yaml
from stage_pipeline.models import AttemptOutcome, PendingDecision, Project, ProjectStatus, StageAttempt
from stage_pipeline.steps import first_stage

T = TypeVar("T")
_NAME = re.compile(NAME_PATTERN)


class ProjectNotFound(NotFoundError):
    """No project of that name (a KeyError, with a readable message)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "project not found"


class ProjectExists(OpsflowError, FileExistsError):
    """A project of that name exists already."""


class InvalidName(InputError):
    """A project, pipeline or stage name that is no safe identifier (the message is the problem itself)."""

    def __str__(self) -> str:
        return self.problems[0][2]


def check_name(name: str, what: str = "project") -> str:
    """A safe identifier, so a name can never leave the store's root (no '/', '..', or leading '.').

    >>> check_name("../etc")
    Traceback (most recent call last):
    ...
    stage_pipeline.store.InvalidName: invalid project name '../etc': use 1-63 characters a-z, 0-9, '-' or '_'
    """
    if not isinstance(name, str) or not _NAME.match(name):
        msg = f"invalid {what} name {name!r}: use 1-63 characters a-z, 0-9, '-' or '_'"
        raise InvalidName(f"{what} name", [(0, what, msg)])
    return name


def _now() -> datetime:
    return datetime.now(UTC)


def make_writable(path: Path) -> None:
    """Give the owner write access to a tree again (sealed workspaces are 0444/0555) so it can be removed."""
    if not path.exists() or path.is_symlink():
        return
    for dirpath, dirnames, filenames in os.walk(path):
        for name in [*dirnames, *filenames]:
            entry = Path(dirpath) / name
            if not entry.is_symlink():
                entry.chmod(stat.S_IMODE(entry.lstat().st_mode) | stat.S_IWUSR | stat.S_IRUSR | stat.S_IXUSR)
    path.chmod(stat.S_IMODE(path.lstat().st_mode) | stat.S_IRWXU)


def remove_tree(path: Path) -> None:
    """Remove a tree including sealed read-only parts (owned by 65534 when sealed as root)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        make_writable(path)
        shutil.rmtree(path)


class ProjectStore:
    """All projects under ``root``; each method is one locked load-change-write."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.projects_dir = self.root / "projects"

    # --- paths ----------------------------------------------------------------------------------------------

    def project_dir(self, name: str) -> Path:
        return self.projects_dir / check_name(name)

    def workspace(self, name: str, attempt: StageAttempt) -> Path:
        """The absolute workspace of an attempt (stored relative, so it survives a rename)."""
        return self.project_dir(name) / attempt.workspace

    def log_path(self, name: str, stage: str, attempt: int) -> Path:
        """The log file kept with the project for one stage attempt."""
        return self.project_dir(name) / "logs" / check_name(stage, "stage") / f"{attempt}.log"

    def ask_dir(self, name: str, stage: str, attempt: int) -> Path:
        """Where one stage attempt puts its requests for input and finds the answers (kept with the project, out
        of the workspace, so a later stage's copy of it never holds an earlier stage's answers)."""
        return self.project_dir(name) / "asks" / check_name(stage, "stage") / str(attempt)

    def heartbeat_path(self, name: str, stage: str, attempt: int) -> Path:
        """Touched every few seconds while an attempt runs: an old one means its worker is gone."""
        return self.project_dir(name) / "heartbeats" / f"{check_name(stage, 'stage')}.{attempt}"

    def heartbeats(self, project: Project) -> dict[tuple[str, int], datetime | None]:
        """When each running attempt of ``project`` last touched its heartbeat (None: never), for
        :meth:`Project.lost_attempts <stage_pipeline.models.Project.lost_attempts>`."""
        found: dict[tuple[str, int], datetime | None] = {}
        for a in project.running_attempts():
            try:
                mtime = self.heartbeat_path(project.name, a.stage, a.attempt).stat().st_mtime
            except FileNotFoundError:
                found[(a.stage, a.attempt)] = None
            else:
                found[(a.stage, a.attempt)] = datetime.fromtimestamp(mtime, UTC)
        return found

    def _file(self, name: str) -> Path:
        return self.project_dir(name) / "project.json"

    # --- reading --------------------------------------------------------------------------------------------

    def list(self) -> list[str]:
        """Names of all projects, sorted (half-created temporary directories are skipped)."""
        if not self.projects_dir.is_dir():
            return []
        found = [p.name for p in self.projects_dir.iterdir() if _NAME.match(p.name)]
        return sorted(n for n in found if (self.projects_dir / n / "project.json").is_file())

    def get(self, name: str) -> Project:
        path = self._file(name)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ProjectNotFound(f"no project {name!r} under {self.projects_dir}") from None
        project = Project.model_validate_json(text)
        # The directory is the truth: a crash between a rename and the rewrite of project.json leaves the old name.
        project.name = name
        return project

    def exists(self, name: str) -> bool:
        return self._file(name).is_file()

    # --- locking and writing --------------------------------------------------------------------------------

    @contextmanager
    def _locked(self, name: str) -> Iterator[Project]:
        """Hold the project's lock and yield it freshly loaded; the caller saves what it changed."""
        lock = self.project_dir(name) / ".lock"
        while True:
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:
                raise ProjectNotFound(f"no project {name!r} under {self.projects_dir}") from None
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                # A rename or delete while we waited: our lock file is no longer this name's lock; look again.
                if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        try:
            yield self.get(name)
        finally:
            os.close(fd)

    def _write(self, project: Project) -> None:
        atomic_write_text(self._file(project.name), project.model_dump_json(indent=2) + "\n")

    def update(self, name: str, change: Callable[[Project], T]) -> T:
        """Apply ``change`` to the project under its lock and save it; returns what ``change`` returned."""
        with self._locked(name) as project:
            result = change(project)
            self._write(project)
            return result

    def save(self, project: Project) -> None:
        """Write a whole project (under its lock); prefer :meth:`update`, which cannot lose a concurrent change."""
        with self._locked(project.name):
            self._write(project)

    # --- req. 1210-1250 -------------------------------------------------------------------------------------

    def create(self, name: str, definition: PipelineDefinition, definition_text: str | None = None) -> Project:
        """Req. 1210: a new project with its own copy of the definition; refuses an existing name."""
        check_name(name)
        if self.project_dir(name).exists():
            raise ProjectExists(f"project {name!r} exists already")
        text = definition_text if definition_text is not None else definition_yaml(definition)
        project = Project.new(name, definition, text, _now())
        self.projects_dir.mkdir(parents=True, exist_ok=True)
        # Built in a hidden directory and renamed into place: readers never see a project without project.json,
        # and of two concurrent creators the second rename fails (the target is a non-empty directory).
        tmp = Path(tempfile.mkdtemp(dir=self.projects_dir, prefix=f".new-{name}."))
        try:
            atomic_write_text(tmp / "project.json", project.model_dump_json(indent=2) + "\n")
            os.rename(tmp, self.project_dir(name))
        except OSError as exc:
            remove_tree(tmp)
            if self.project_dir(name).exists():
                raise ProjectExists(f"project {name!r} exists already") from None
            raise exc
        return project

    def rename(self, name: str, new_name: str, force: bool = False) -> Project:
        """Req. 1230: one ``os.rename`` of the project directory; refuses an existing target, and a project whose
        run is in flight unless ``force``."""
        check_name(new_name)
        with self._locked(name) as project:
            if not force:
                project.check_at_rest("rename")
            target = self.project_dir(new_name)
            if target.exists() or target.is_symlink():
                raise ProjectExists(f"project {new_name!r} exists already")
            os.rename(self.project_dir(name), target)
            # The lock file moved with the directory, so we still hold the lock, now for the new name.
            project.name, project.updated = new_name, _now()
            self._write(project)
            return project

    def set_definition(self, name: str, definition: PipelineDefinition, definition_text: str | None = None) -> Project:
        """Req. 1220: switch the project's pipeline (refused while a stage is running)."""
        text = definition_text if definition_text is not None else definition_yaml(definition)

        def change(p: Project) -> Project:
            p.set_definition(definition, text, _now())
            return p

        return self.update(name, change)

    def tag(self, name: str, *tags: str) -> Project:
        """Req. 1240: add tags (idempotent; kept sorted)."""
        for t in tags:
            if not t.strip() or len(t) > 100:
                raise InputError("tag", [(0, repr(t), "a tag is 1-100 characters, not only blanks")])
        return self.update(name, lambda p: _set_tags(p, sorted(set(p.tags) | set(tags))))

    def untag(self, name: str, *tags: str) -> Project:
        """Req. 1240: remove tags (a tag the project lacks is ignored)."""
        return self.update(name, lambda p: _set_tags(p, sorted(set(p.tags) - set(tags))))

    def delete(self, name: str, force: bool = False) -> None:
        """Req. 1250: remove the project with every file (sealed workspaces included); refused while its run is
        in flight unless ``force``."""
        with self._locked(name) as project:
            if not force:
                project.check_at_rest("delete")
            # Renamed aside first, so the name is free at once and a crash mid-removal leaves no half project.
            doomed = Path(tempfile.mkdtemp(dir=self.projects_dir, prefix=f".del-{name}."))
            os.rename(self.project_dir(name), doomed / name)
        remove_tree(doomed)

    # --- execution state ------------------------------------------------------------------------------------

    def set_status(self, name: str, status: ProjectStatus, reason: str = "") -> Project:
        """E.g. ``set_status(p, ProjectStatus.PAUSED, "no fitting node: no online worker in pool gpu")``."""
        def change(p: Project) -> Project:
            p.set_status(status, reason, _now())
            return p

        return self.update(name, change)

    def pause(self, name: str, reason: str, before: str | None = None) -> Project:
        """Pause the project now (see :meth:`Project.pause <stage_pipeline.models.Project.pause>`)."""
        return self.update(name, lambda p: _apply(p, p.pause, reason, _now(), before))

    def take_over(self, name: str, run_id: str, start: str | None) -> Project:
        """Make ``run_id`` the project's driver, starting at ``start`` (None: where it stopped)."""
        return self.update(name, lambda p: _apply(p, p.take_over, run_id, start or first_stage(p), _now()))

    def ask(self, name: str, pending: PendingDecision) -> Project:
        """The project waits for ``pending`` (its run suspends with the form)."""
        return self.update(name, lambda p: _apply(p, p.ask, pending, _now()))

    def answered(self, name: str, stage: str, comment: str, reason: str) -> Project:
        """The decision waited for was given (its comment is kept with the stage's latest attempt)."""
        return self.update(name, lambda p: _apply(p, p.answered, stage, comment, reason, _now()))

    def request_pause(self, name: str) -> Project:
        """Req. 1420: pause before the next stage (the flow checks between stages)."""
        return self.update(name, lambda p: _flag(p, pause=True))

    def clear_pause(self, name: str) -> Project:
        return self.update(name, lambda p: _flag(p, pause=False))

    def request_abort(self, name: str) -> Project:
        """Req. 1440: the running stage is killed (its runner polls this); the attempt ends ABORTED."""
        return self.update(name, lambda p: _flag(p, abort=True))

    def begin_attempt(self, name: str, stage: str, env: dict[str, str], run_id: str | None = None) -> StageAttempt:
        return self.update(name, lambda p: p.begin_attempt(stage, env, _now(), run_id))

    def end_attempt(
        self,
        name: str,
        stage: str,
        attempt: int,
        outcome: AttemptOutcome,
        exit_code: int | None,
        errors: builtins.list[str],
        error_count: int | None = None,
        comment: str = "",
    ) -> StageAttempt:
        return self.update(
            name, lambda p: p.end_attempt(stage, attempt, outcome, exit_code, errors, _now(), error_count, comment)
        )

    def recover_stale(
        self, name: str, reason: str = "its worker stopped during the stage"
    ) -> builtins.list[StageAttempt]:
        """Close every RUNNING attempt as LOST and pause the project. The flow decides that they are stale."""
        return self.update(name, lambda p: p.mark_lost(reason, _now()))


def _set_tags(project: Project, tags: list[str]) -> Project:
    project.tags, project.updated = tags, _now()
    return project


def _flag(project: Project, pause: bool | None = None, abort: bool | None = None) -> Project:
    if pause is not None:
        project.pause_requested = pause
    if abort is not None:
        project.abort_requested = abort
    project.updated = _now()
    return project


def _apply(project: Project, change: Callable[..., object], *args: object) -> Project:
    change(*args)
    return project
