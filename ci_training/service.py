"""The receiver as a process: ``python -m ci_training.service --port 8765`` (the stack's ``webhook`` component).

It reads the Prefect API from the environment (``PREFECT_API_URL``, ``PREFECT_API_AUTH_STRING``), like every
Prefect process, so a site runs the same command next to its Prefect server. After each accepted delivery it
posts the ``pending`` statuses of both stages, linking to the run, through the project's GitLab (in a thread:
python-gitlab is synchronous); the flow posts them again when it starts, which GitLab answers as a no-op.

Example:
    >>> parse_args(["--port", "9999"]).port
    9999
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool

from ci_training.journal import DeliveryJournal, JournalEntry
from ci_training.models import TEST_STATUS, TRAIN_STATUS, CommitState
from ci_training.prefect_api import PrefectAPI, PrefectDirectory, PrefectLauncher
from ci_training.receiver import KnownProject, LaunchedRun, build_app
from opsflow.errors import OpsflowError
from opsflow.home import default_home

log = logging.getLogger("opsflow.ci.receiver")


def post_pending(known: KnownProject, entry: JournalEntry, run: LaunchedRun) -> None:
    """``pending`` on both stages with the run's URL (best effort: the flow posts them too)."""
    from ci_training.gitlab import GitLabStatuses

    gitlab = GitLabStatuses.of(known.settings)
    sha = entry.sha
    for name in (TEST_STATUS, TRAIN_STATUS):
        try:
            gitlab.post(sha, name, CommitState.PENDING, ref=entry.branch, target_url=run.url, description="queued")
        except OpsflowError as exc:
            log.warning("pending status of %s on %s not posted: %s", name, sha[:8], exc)
            return


async def _pending(known: KnownProject, entry: JournalEntry, run: LaunchedRun) -> None:
    await run_in_threadpool(post_pending, known, entry, run)


def service_app(api_url: str, auth_string: str | None, journal: Path) -> Starlette:
    """The receiver wired to a Prefect API, to each project's GitLab and to its journal of deliveries."""
    api = PrefectAPI(api_url, auth_string)
    return build_app(PrefectDirectory(api), PrefectLauncher(api), DeliveryJournal(journal), pending=_pending)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ci_training.service", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--journal",
        type=Path,
        default=default_home() / "ci" / "deliveries.jsonl",
        help="the file of accepted deliveries (on a local disk; default $OPSFLOW_HOME/ci/deliveries.jsonl)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    import uvicorn

    args = parse_args(argv)
    api_url = os.environ.get("PREFECT_API_URL")
    if not api_url:
        raise SystemExit("PREFECT_API_URL is not set: the receiver starts runs on a Prefect server")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = service_app(api_url, os.environ.get("PREFECT_API_AUTH_STRING"), args.journal)
    # No access log: it would record every delivery line by line; the app logs what it decided instead.
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
