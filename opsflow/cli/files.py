"""`opsflow files …`: big files in and out of the pipelines' store; each command is one call of
:class:`opsflow.api.files.FilesAPI`.

Example:
    $ opsflow files upload traffic.mp4 resources/videos/           # resumes if run again after an interruption
    $ opsflow files upload ref.json projects/traffic/input/ref.json
    $ opsflow files ls projects/traffic/stages/detect/1
    $ opsflow files download projects/traffic/stages/result/1/result.mp4 .
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from opsflow.cli._utilities import console, err_console, group

if TYPE_CHECKING:
    from opsflow.api.files import FilesAPI

app = group("The pipelines' file service: resumable uploads, ranged downloads, listings.")


def _api() -> FilesAPI:
    from opsflow.api import connect

    return connect().files


@contextmanager
def _bar(what: str) -> Iterator[object]:
    columns = ("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task(what, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


@app.command()
def upload(
    local: Annotated[Path, typer.Argument(help="The local file")],
    dest: Annotated[str, typer.Argument(help="resources/... or projects/<name>/input/... (/ at the end: same name)")],
) -> None:
    """Upload a file (tus): run it again after an interruption and it resumes where the server stopped."""
    with _bar(f"upload {local.name}") as update:
        done = _api().upload(local, dest, progress=update)  # type: ignore[arg-type]
    console.print(done.message())


@app.command()
def download(
    path: Annotated[str, typer.Argument(help="A file or directory of the store")],
    local: Annotated[Path, typer.Argument(help="Where to write it (a directory keeps the remote name)")] = Path("."),
) -> None:
    """Download a file (resuming a .part left by an interrupted run) or a whole directory (unpacked)."""
    with _bar(f"download {path.rsplit('/', 1)[-1]}") as update:
        written = _api().download(path, local, progress=update)  # type: ignore[arg-type]
    console.print(f"wrote {written}")


@app.command("ls")
def list_files(path: Annotated[str, typer.Argument(help="A directory or file of the store")] = "") -> None:
    """Names, sizes, modification times and SHA-256 (where known) of every file under PATH."""
    entries = _api().ls(path)
    if not entries:
        console.print(f"{path or '/'}: no files")
        return
    header = ("path", "size", "mtime", "sha256", "read-only")
    rows = [
        (e.path, str(e.size), e.mtime.isoformat(timespec="seconds"), e.sha256 or "", "yes" if e.read_only else "")
        for e in entries
    ]
    table = Table(*header)
    for row in rows:
        table.add_row(*row)
    # As wide as its cells: a hash or a path cut short is of no use (a pipe or a narrow terminal wraps it).
    needed = sum(max(len(r[i]) for r in [header, *rows]) + 3 for i in range(len(header))) + 1
    Console(width=max(console.width, needed)).print(table)
