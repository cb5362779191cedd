"""`opsflow stack …`: the hooks the local stack's components call (slurmd's Epilog, a node's boot).

Example:
    $ opsflow stack node-boot nid001 -- /usr/sbin/slurmd -D -N nid001
"""

from __future__ import annotations

import os
import sys
import time

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
