"""`opsflow nodes …`: every node's CPU, memory, network and GPUs (seed 002, req. 1510-1520); each command is one
call of :class:`opsflow.api.nodes.NodesAPI`.

Example:
    $ opsflow nodes                           # one row per node: its pools and workers, its latest sample
    $ opsflow nodes --local                   # this machine only, sampled now (no store, no server)
    $ opsflow nodes publish --interval 10     # on each node: keep <store root>/.nodes/<hostname>.json fresh
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from opsflow.cli._utilities import OpsflowGroup, console, err_console

if TYPE_CHECKING:
    from opsflow.api.nodes import NodesAPI
    from stage_pipeline.node_table import NodeSnapshot

app = typer.Typer(
    help="CPU, memory, network and GPUs of every node (each node publishes its samples; this shows them all).",
    cls=OpsflowGroup,
    invoke_without_command=True,
)

StoreOpt = Annotated[
    str | None, typer.Option("--store", help="PipelineStore Block whose root the nodes publish under (default: local)")
]
RootOpt = Annotated[Path | None, typer.Option("--root", help="The store root itself (no Block, no server)")]


def _api(store: str | None, root: Path | None) -> NodesAPI:
    from opsflow.api import connect

    api = connect().nodes
    if store is not None:
        api = api.using(store)
    return api.at(root) if root is not None else api


@app.callback()
def nodes(
    ctx: typer.Context,
    local: Annotated[bool, typer.Option("--local", help="This machine only, sampled now")] = False,
    store: StoreOpt = None,
    root: RootOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="The rows as JSON")] = False,
) -> None:
    """One row per node: the pools and workers on it, its status, CPU %, load, memory, network, GPUs, sample age.

    A node whose sample is stale (older than 3 of its intervals) or missing says so instead of showing numbers.
    """
    if ctx.invoked_subcommand is not None:
        return
    if local:
        row, gpu_note = _api(store, root).local()
        rows = [row]
        notes = [f"GPUs: none ({gpu_note})"] if gpu_note else []
    else:
        table = _api(store, root).table()
        rows, notes = table.rows, table.notes
        if not rows:
            notes.append(
                f"no node publishes under {table.root}/.nodes and no worker is known: run `opsflow nodes publish` "
                "on each node (`opsflow up` does on this machine), or `opsflow nodes --local`"
            )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    elif rows:
        out = Table(*rows[0].keys())
        for r in rows:
            out.add_row(*(str(v) for v in r.values()))
        console.print(out)
    for note in notes:
        err_console.print(note, soft_wrap=True, highlight=False, markup=False)


@app.command()
def publish(
    interval: Annotated[float, typer.Option("--interval", min=0.1, help="Seconds between two samples")] = 10.0,
    store: StoreOpt = None,
    root: RootOpt = None,
    hostname: Annotated[
        str | None, typer.Option("--hostname", help="The name to publish as (default: this machine's hostname)")
    ] = None,
    rounds: Annotated[int | None, typer.Option("--rounds", min=1, help="Stop after this many samples")] = None,
) -> None:
    """Sample this node every INTERVAL seconds into <store root>/.nodes/<hostname>.json (atomically), until ended."""
    api = _api(store, root)
    first = True

    def said(path: Path, snap: NodeSnapshot) -> None:
        nonlocal first
        if first:
            console.print(f"publishing {snap.hostname} every {interval:g} s to {path}", highlight=False)
            first = False

    api.publish(interval_s=interval, hostname=hostname, rounds=rounds, on_sample=said)
