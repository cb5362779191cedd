"""The receiver's journal of accepted deliveries: written (fsync'd) before GitLab gets its answer.

Why: GitLab waits at most 10 s and counts anything else as a failed delivery; Prefect on SQLite answers
concurrent run creations with 503 "database is locked" for seconds at a time. So the receiver records an
accepted delivery here first and may answer before its run exists; the run is created from the journal, by the
request if that is quick, else in the background, also after a restart of the receiver (what a 2xx answered
must never be lost, since GitLab will not send it again). The journal is also the first dedup check: a key it
holds is a duplicate, with the run it started; Prefect's idempotency key stays the durable backstop for a
journal that was lost or is on another host.

The file is JSON lines: ``{"accepted": {...}}`` when a delivery is taken, ``{"started": key, ...}`` once its
run exists. A line cut short by a crash is skipped. Loading rewrites the file with one line per delivery, so it
grows by the deliveries since the last start only.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / "deliveries.jsonl"
    >>> journal = DeliveryJournal(path)
    >>> journal.accept(JournalEntry(key="k1", block="loans", deployment="ci-training/cpu"))
    >>> journal.started("k1", "run-1", "http://ui/runs/flow-run/run-1")
    >>> DeliveryJournal(path).get("k1").flow_run_id, DeliveryJournal(path).waiting()
    ('run-1', [])
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from opsflow.files import atomic_write_text


class JournalEntry(BaseModel):
    """One accepted delivery: what its run is made of (never a secret), and the run once it exists."""

    key: str = Field(description="The run's idempotency key (project Block + delivery key)")
    block: str
    deployment: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    name: str = ""
    project: str = Field(default="", description="GitLab path of the project (to find its Block again)")
    sha: str = ""
    branch: str | None = None
    event_resource: dict[str, str] = Field(default_factory=dict)
    event_payload: dict[str, Any] = Field(default_factory=dict)
    flow_run_id: str | None = None
    url: str | None = None


class DeliveryJournal:
    """Accepted deliveries by key, kept in ``path`` (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, JournalEntry] = {}
        if path.exists():
            self._load()
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, "".join(self._line({"accepted": e.model_dump()}) for e in self.entries.values()))
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def _load(self) -> None:
        for raw in self.path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(raw)
                if "accepted" in record:
                    entry = JournalEntry.model_validate(record["accepted"])
                    self.entries[entry.key] = entry
                elif record.get("started") in self.entries:
                    entry = self.entries[record["started"]]
                    entry.flow_run_id, entry.url = str(record["flow_run_id"]), record.get("url")
            except (ValueError, KeyError, TypeError, ValidationError):
                continue  # a line cut short by a crash, or damaged: the delivery it held was not answered 2xx

    @staticmethod
    def _line(record: dict[str, Any]) -> str:
        return json.dumps(record, separators=(",", ":")) + "\n"

    def _append(self, record: dict[str, Any]) -> None:
        os.write(self._fd, self._line(record).encode())
        os.fsync(self._fd)

    def get(self, key: str) -> JournalEntry | None:
        return self.entries.get(key)

    def accept(self, entry: JournalEntry) -> None:
        """Record a delivery (on disk before this returns)."""
        self._append({"accepted": entry.model_dump()})
        self.entries[entry.key] = entry

    def started(self, key: str, flow_run_id: str, url: str) -> None:
        """Record the run of a delivery."""
        entry = self.entries[key]
        entry.flow_run_id, entry.url = flow_run_id, url
        self._append({"started": key, "flow_run_id": flow_run_id, "url": url})

    def waiting(self) -> list[JournalEntry]:
        """Deliveries whose run does not exist yet (in the order they came)."""
        return [e for e in self.entries.values() if e.flow_run_id is None]

    def close(self) -> None:
        os.close(self._fd)
