"""`opsflow stack …`: the hooks the local stack's components call (slurmd's Epilog, a node's boot).

Example:
    $ opsflow stack node-boot nid001 -- /usr/sbin/slurmd -D -N nid001
    $ opsflow stack node-checks 'nid[001-008]' --every 60
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from opsflow.cli._utilities import group
from opsflow.home import default_home

app = group("Hooks the local stack's components call.")


@app.command()
def epilog() -> None:
    """Slurm Epilog of the local stack: record that a job ended here, then the node update check."""
    from node_update import node as node_side
    from node_update.config import load_config
    from opsflow.files import append_line

    home = default_home()
    job = os.environ.get("SLURM_JOB_ID", "?")
    node = os.environ.get("SLURMD_NODENAME", "?")
    append_line(home / "slurm" / "epilog.log", f"{time.strftime('%Y-%m-%dT%H:%M:%S')} job={job} node={node}")
    try:
        node_side.check(load_config().root, node, source="epilog")
    except Exception as exc:  # an epilog that fails drains the node: report, never raise
        print(f"opsflow stack epilog: node update check skipped: {exc}", file=sys.stderr)


@app.command("node-boot", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def node_boot(ctx: typer.Context, node: str) -> None:
    """A local-stack node "boots": run the boot hooks for NODE, then become its slurmd (argv after `--`)."""
    from node_update import node as node_side
    from node_update.config import load_config

    try:
        node_side.boot(load_config().root, node)
    except Exception as exc:  # a hook must never keep a node from coming up
        print(f"node-boot {node}: boot hook failed: {exc}", file=sys.stderr)
    argv = [a for a in ctx.args if a != "--"]
    if argv:
        os.execv(argv[0], argv)


@app.command("node-checks")
def node_checks(
    nodes: Annotated[str, typer.Argument(help="The nodes, as a Slurm hostlist (nid[001-008])")],
    every: Annotated[float, typer.Option(min=0.1, help="Seconds from the start of one round to the next")] = 60.0,
    rounds: Annotated[int, typer.Option(min=0, help="Stop after this many rounds (0: run until stopped)")] = 0,
) -> None:
    """The seed's cron job for every node of the local stack: `opsflow nu check NODE` for each, every EVERY s."""
    import hostlist

    from node_update import node as node_side
    from node_update.config import load_config

    names = hostlist.expand_hostlist(nodes)
    done = 0
    next_round = time.monotonic()
    while rounds == 0 or done < rounds:
        root = load_config().root  # read each round: a changed root is followed without a restart
        for node in names:
            if _reported_within(root, node, every):
                continue  # it spoke this round already (its epilog or boot): keep that report and its source
            pending = node_side.check(root, node, source="check")  # never raises for the node's own files
            if pending:
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
                print(f"{stamp} {node}: behind, requested {', '.join(pending)}", flush=True)
        done += 1
        next_round += every
        if rounds == 0 or done < rounds:
            time.sleep(max(0.0, next_round - time.monotonic()))


def _reported_within(root: Path, node: str, seconds: float) -> bool:
    from node_update import spool

    try:
        return time.time() - spool.report_path(root, node).stat().st_mtime < seconds
    except OSError:
        return False
