"""`opsflow ci …`: CI-triggered training; each command is one call of :class:`opsflow.api.ci.CiAPI`.

Example:
    $ opsflow ci url                      # paste into GitLab: Settings → Webhooks
    $ opsflow ci projects
    $ opsflow ci runs --project loans
    $ opsflow ci statuses loans 1a2b3c4d...   # the full 40-character SHA
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from opsflow.cli._utilities import console, group

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pydantic import BaseModel

    from opsflow.api.ci import CiAPI

app = group("CI-triggered training: GitLab pushes that test, then train on Spark.")


def _api() -> CiAPI:
    from opsflow.api import connect

    return connect().ci


def _table(rows: Sequence[BaseModel], empty: str) -> None:
    if not rows:
        console.print(empty)
        return
    columns = list(type(rows[0]).model_fields)
    table = Table(*columns)
    for row in rows:
        data = row.model_dump()
        table.add_row(*(", ".join(v) if isinstance(v, list) else str(v) for v in (data[c] for c in columns)))
    console.print(table)


@app.command()
def url() -> None:
    """The webhook receiver's URL to paste into GitLab (Settings → Webhooks, trigger: Push events)."""
    console.print(_api().webhook_url())


@app.command()
def projects() -> None:
    """The GitLabProject Blocks of the site (secrets are never shown)."""
    _table(_api().projects(), "no GitLabProject Block saved")


@app.command()
def runs(
    project: Annotated[str | None, typer.Option(help="Only this GitLabProject Block's runs")] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many, newest first")] = 20,
) -> None:
    """The recent ci-training runs: project, ref, commit, state and the run's page."""
    _table(_api().runs(project, limit), "no ci-training run yet")


@app.command()
def statuses(
    project: Annotated[str, typer.Argument(help="GitLabProject Block name")],
    sha: Annotated[str, typer.Argument(help="Commit SHA")],
) -> None:
    """The commit statuses GitLab has for a commit (opsflow/test, opsflow/train)."""
    _table(_api().statuses(project, sha), "no status on that commit")
