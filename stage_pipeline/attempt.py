"""One running stage attempt's side work, Prefect-free: its log file, heartbeat, abort polling and progress.

The `stage-run` flow hands :meth:`AttemptWatch.on_line` and :meth:`AttemptWatch.should_abort` to a runner and
passes two callbacks of its own (the run logger, the progress artifact), so everything a stage attempt does
besides running lives here and in :mod:`stage_pipeline.logscan`; the flow only wires. Every output line goes to
``logs/<stage>/<attempt>.log`` of the project and to the scanner (errors, progress, ETA); the heartbeat file is
touched every :data:`HEARTBEAT_S`, which is how a later run tells a live attempt from a lost one
(:func:`stage_pipeline.models.attempt_is_lost`).

Example:
    >>> import tempfile
    >>> from stage_pipeline.definition import parse_definition
    >>> from stage_pipeline.store import ProjectStore
    >>> store = ProjectStore(Path(tempfile.mkdtemp()))
    >>> d = parse_definition("name: p\\nstages:\\n  - {name: a, command: [x], progress_regex: '(?P<pct>\\\\d+)%'}\\n")
    >>> _ = store.create("demo", d)
    >>> attempt = store.begin_attempt("demo", "a", {})
    >>> seen = []
    >>> with AttemptWatch(store, "demo", attempt, d.stages[0], lambda err, line: seen.append((err, line))) as w:
    ...     w.on_line("50%")
    ...     w.on_line("error: bad frame")
    >>> seen, w.scanner.error_count
    ([(False, '50%'), (True, 'error: bad frame')], 1)
    >>> store.log_path("demo", "a", 1).read_text()
    '50%\\nerror: bad frame\\n'
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from opsflow.errors import InputError
from stage_pipeline.definition import StageDefinition
from stage_pipeline.logscan import LogScanner
from stage_pipeline.models import AttemptOutcome, StageAttempt
from stage_pipeline.runners import RunOutcome, StageJob
from stage_pipeline.stage_input import ANSWER_SUFFIX, REQUEST_SUFFIX, InputRequest, parse_request
from stage_pipeline.store import ProjectStore

#: Seconds between two heartbeats / abort checks of a running stage, and between two progress updates.
HEARTBEAT_S = 2.0
PROGRESS_EVERY_S = 2.0


def outcome_of(result: RunOutcome) -> AttemptOutcome:
    """How the attempt is recorded.

    >>> from datetime import datetime, timezone
    >>> t = datetime.now(timezone.utc)
    >>> outcome_of(RunOutcome(exit_code=1, aborted=True, started=t, ended=t)).value
    'aborted'
    """
    if result.aborted:
        return AttemptOutcome.ABORTED
    if result.timed_out:
        return AttemptOutcome.TIMED_OUT
    return AttemptOutcome.SUCCEEDED if result.succeeded else AttemptOutcome.FAILED


def stage_job(
    project: str,
    spec: StageDefinition,
    attempt: StageAttempt,
    workspace: Path,
    resources: Path,
    inputs: Path | None = None,
    asks: Path | None = None,
) -> StageJob:
    """The runner's job for one attempt: the stage's command (or image) with the attempt's env, in its workspace,
    limited to the stage's ``resources``; ``inputs``: the project's uploaded input area, when it has one."""
    return StageJob(
        name=f"{project}.{spec.name}.{attempt.attempt}",
        argv=spec.command or [],
        image=spec.image,
        env=attempt.env,
        workdir=workspace,
        resources=resources,
        inputs=inputs,
        asks=asks,
        timeout_s=spec.timeout,
        cpus=spec.resources.cpus,
        memory_bytes=spec.resources.memory_bytes,
        gpus=spec.resources.gpus,
    )


@dataclass
class Pacer:
    """When a running attempt next beats, re-reads its abort flag and updates its progress. Pure (clock passed in).

    >>> pacer = Pacer(last_beat=0.0)
    >>> pacer.beat_due(1.0), pacer.beat_due(2.5), pacer.progress_due(0.5, 2.5), pacer.progress_due(0.6, 3.0)
    (False, True, True, False)
    >>> pacer.progress_due(1.0, 3.0)  # the end is always shown
    True
    """

    last_beat: float
    last_progress: float = float("-inf")
    heartbeat_s: float = HEARTBEAT_S
    progress_s: float = PROGRESS_EVERY_S

    def beat_due(self, now: float) -> bool:
        if now - self.last_beat < self.heartbeat_s:
            return False
        self.last_beat = now
        return True

    def progress_due(self, progress: float, now: float) -> bool:
        if progress < 1.0 and now - self.last_progress < self.progress_s:
            return False
        self.last_progress = now
        return True


class AttemptWatch:
    """The side work of one running attempt (a context manager: opens the log, starts the heartbeat).

    ``on_log(is_error, line)`` receives every output line; ``on_progress(fraction, eta_s)`` is called at most
    every :data:`PROGRESS_EVERY_S` (and at 100 %).
    """

    def __init__(
        self,
        store: ProjectStore,
        project: str,
        attempt: StageAttempt,
        spec: StageDefinition,
        on_log: Callable[[bool, str], None],
        on_progress: Callable[[float, float | None], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        ask_dir: Path | None = None,
        on_request: Callable[[InputRequest], dict[str, Any]] | None = None,
    ) -> None:
        self.store, self.project, self.attempt = store, project, attempt
        self.ask_dir, self._on_request = ask_dir, on_request
        self.scanner = LogScanner(spec.error_regex, spec.progress_regex)
        self._on_log, self._on_progress, self._clock = on_log, on_progress, clock
        self.heartbeat = store.heartbeat_path(project, attempt.stage, attempt.attempt)
        self.log_path = store.log_path(project, attempt.stage, attempt.attempt)
        self._pacer = Pacer(last_beat=clock())
        self._abort = False
        self._log: IO[str] | None = None

    def __enter__(self) -> AttemptWatch:
        self.heartbeat.parent.mkdir(parents=True, exist_ok=True)
        self.heartbeat.touch()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("a", encoding="utf-8")
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def on_line(self, line: str) -> None:
        """One output line: to the log file (flushed, so `project logs` sees it live), the scanner, the callbacks."""
        if self._log is not None:
            self._log.write(line + "\n")
            self._log.flush()
        now = self._clock()
        info = self.scanner.feed(line, now)
        self._on_log(info.is_error, line)
        if info.progress is not None and self._on_progress is not None and self._pacer.progress_due(info.progress, now):
            self._on_progress(info.progress, self.scanner.eta_seconds(now))

    def should_abort(self) -> bool:
        """Polled by the runner: beats the heartbeat and re-reads the project's abort request every few seconds."""
        if self._pacer.beat_due(self._clock()):
            self.heartbeat.touch()
            self._abort = self.store.get(self.project).abort_requested
            if not self._abort:
                self.answer_requests()
        return self._abort

    def answer_requests(self) -> None:
        """Answer the stage's open input requests (:mod:`stage_pipeline.stage_input`), one at a time: ``on_request``
        waits for the operator's form while the heartbeat goes on; a request that breaks the rules, or a stage
        with nobody to ask, gets ``{"error": ...}``, so the stage never waits for an answer that cannot come."""
        if self.ask_dir is None or not self.ask_dir.is_dir():
            return
        for path in sorted(self.ask_dir.glob(f"*{REQUEST_SUFFIX}")):
            answer_path = path.with_name(path.name[: -len(REQUEST_SUFFIX)] + ANSWER_SUFFIX)
            if answer_path.exists():
                continue
            try:
                request = parse_request(path.name, path.read_text(encoding="utf-8", errors="replace"))
                if self._on_request is None:
                    raise InputError(path.name, [(0, "request", "this stage cannot ask for input here")])
            except InputError as exc:
                self._on_log(True, f"input request refused: {exc}")
                answer: dict[str, Any] = {"error": str(exc)}
            else:
                with self._beating():
                    answer = self._on_request(request)
            tmp = answer_path.with_name(f".{answer_path.name}.tmp")
            tmp.write_text(json.dumps(answer), encoding="utf-8")
            tmp.replace(answer_path)  # the stage never reads half an answer

    @contextlib.contextmanager
    def _beating(self) -> Iterator[None]:
        """Heartbeats from a thread while the caller's thread waits (for the operator's answer)."""
        done = threading.Event()

        def beat() -> None:
            while not done.wait(self._pacer.heartbeat_s):
                self.heartbeat.touch()

        thread = threading.Thread(target=beat, name="heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def finish(self, outcome: AttemptOutcome, result: RunOutcome) -> None:
        """Record how the attempt ended and stop its heartbeat (after the workspace is sealed)."""
        self.store.end_attempt(
            self.project, self.attempt.stage, self.attempt.attempt, outcome, result.exit_code,
            self.scanner.errors, self.scanner.error_count, comment=result.error or "",
        )  # fmt: skip
        self.heartbeat.unlink(missing_ok=True)

    def summary(self, outcome: AttemptOutcome, exit_code: int | None) -> str:
        """The attempt's markdown summary: outcome, the scanner's counts and the error lines."""
        text = f"**{self.attempt.stage}** attempt {self.attempt.attempt}: {outcome.value} (exit code {exit_code}); "
        text += self.scanner.summary()
        if self.scanner.errors:
            text += "\n\n" + "\n".join(f"- `{line}`" for line in self.scanner.errors)
        return text
