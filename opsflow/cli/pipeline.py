"""`opsflow pipeline …` and `opsflow project …`: the staged pipelines from a shell.

Each command is one call of the Python API (:mod:`opsflow.api.pipelines`) and the printing of its result. The
site is the one ``opsflow.connect()`` finds: ``PREFECT_API_URL`` (a site: the store is its ``PipelineStore``
Block) or the local stack under ``$OPSFLOW_HOME`` (the store is ``<home>/pipelines``); ``--store-block NAME``
reads the store from that Block instead. Reading commands (``pipeline list|show|validate``, ``project
list|show|logs|files``) touch only files and never import Prefect.

Example:
    $ opsflow pipeline validate examples/video_tracking/pipeline.yaml
    $ opsflow project create traffic --pipeline video-tracking
    $ opsflow project start traffic
    $ opsflow project wait traffic --until waiting
    $ opsflow project resume traffic --action redo --env MIN_AREA=60
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer
from rich.table import Table

from opsflow.cli._utilities import console, group

if TYPE_CHECKING:
    from opsflow.api.pipelines import PipelinesAPI, ProjectHandle, Until

pipeline_app = group("Pipeline definitions (YAML files in the store's pipelines/ directory).")
project_app = group("Projects: a pipeline's stages run on the cpu/gpu pools, with approvals in the UI.")
StoreOpt = Annotated[
    str | None, typer.Option("--store-block", help="PipelineStore block to read the store from (default: the site's)")
]
EnvOpt = Annotated[list[str] | None, typer.Option("--env", help="KEY=VALUE for the stage that runs next (repeat)")]


def _api(store_block: str | None) -> PipelinesAPI:
    from opsflow.api import connect
    from opsflow.api.pipelines import PipelinesAPI

    return PipelinesAPI(connect(), store_block)


def _project(name: str, store_block: str | None) -> ProjectHandle:
    return _api(store_block).project(name)


def _plain(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


# --- pipelines -----------------------------------------------------------------------------------------------
@pipeline_app.command("validate")
def pipeline_validate(path: Path) -> None:
    """Check a definition file; errors name the file, line and field."""
    d = _api(None).validate(path)
    _plain(f"{path}: pipeline {d.name} with {len(d.stages)} stages: {', '.join(d.stage_names)}")


@pipeline_app.command("add")
def pipeline_add(
    path: Path,
    replace: Annotated[bool, typer.Option(help="Replace a definition of the same name")] = False,
    store_block: StoreOpt = None,
) -> None:
    """Validate a definition file and add it to the store (errors name the file, line and field)."""
    d = _api(store_block).add(path, replace=replace)
    _plain(f"added pipeline {d.name} ({len(d.stages)} stages: {', '.join(d.stage_names)})")


@pipeline_app.command("delete")
def pipeline_delete(name: str, store_block: StoreOpt = None) -> None:
    """Remove a definition from the store; projects made from it keep their own copy."""
    _api(store_block).delete(name)
    _plain(f"deleted pipeline {name}")


@pipeline_app.command("list")
def pipeline_list(store_block: StoreOpt = None) -> None:
    """Definitions in the store (invalid files listed with their error)."""
    for row in _api(store_block).definitions():
        if row.problem:
            console.print(f"{row.name}: [red]{row.problem}[/red]", soft_wrap=True, highlight=False)
        else:
            _plain(f"{row.name} ({row.stages} stages)")


@pipeline_app.command("show")
def pipeline_show(name: str, store_block: StoreOpt = None) -> None:
    """A definition's YAML."""
    _plain(_api(store_block).show(name))


# --- projects ------------------------------------------------------------------------------------------------
@project_app.command("create")
def project_create(
    name: str, pipeline: Annotated[str, typer.Option(help="definition name")], store_block: StoreOpt = None
) -> None:
    """A new project with its own copy of the definition."""
    p = _api(store_block).create(name, pipeline).status
    _plain(f"project {p.name}: {len(p.stages)} stages of {pipeline}")


@project_app.command("list")
def project_list(store_block: StoreOpt = None) -> None:
    """Projects with their status."""
    table = Table("project", "pipeline", "status", "stage", "tags", "reason")
    for r in _api(store_block).projects():
        table.add_row(r.name, r.pipeline, r.status, r.stage, ",".join(r.tags), r.reason)
    console.print(table)


@project_app.command("show")
def project_show(name: str, store_block: StoreOpt = None) -> None:
    """Stage states and the history of every attempt."""
    p = _project(name, store_block).show()
    _plain(p.headline())
    _plain("stages: " + ", ".join(f"{s}={st.value}" for s, st in p.stages.items()))
    columns, rows = p.attempt_table()
    table = Table(*columns)
    for row in rows:
        table.add_row(*row)
    console.print(table)


@project_app.command("rename")
def project_rename(
    name: str,
    new_name: str,
    force: Annotated[bool, typer.Option(help="Even if it looks RUNNING or WAITING (its run is gone)")] = False,
    store_block: StoreOpt = None,
) -> None:
    """Give the project another name (its directory moves); refused while a run drives it."""
    _plain(f"project {_project(name, store_block).rename(new_name, force=force).name}")


@project_app.command("set-pipeline")
def project_set_pipeline(name: str, pipeline: str, store_block: StoreOpt = None) -> None:
    """Switch the project to another definition (stage states kept by name, history kept)."""
    p = _project(name, store_block).set_pipeline(pipeline)
    _plain(f"{p.name}: now {p.definition.name} ({', '.join(p.stages)})")


@project_app.command("tag")
def project_tag(name: str, tags: list[str], store_block: StoreOpt = None) -> None:
    """Add tags."""
    _plain(", ".join(_project(name, store_block).tag(*tags).tags))


@project_app.command("untag")
def project_untag(name: str, tags: list[str], store_block: StoreOpt = None) -> None:
    """Remove tags."""
    _plain(", ".join(_project(name, store_block).untag(*tags).tags))


@project_app.command("delete")
def project_delete(
    name: str,
    yes: Annotated[bool, typer.Option("--yes", help="no question")] = False,
    force: Annotated[bool, typer.Option(help="Even if it looks RUNNING or WAITING (its run is gone)")] = False,
    store_block: StoreOpt = None,
) -> None:
    """Remove the project with every file and record of it; refused while a run drives it."""
    project = _project(name, store_block)
    if not force:
        project.status.check_at_rest("delete")  # before the question: no "yes" for what will be refused
    if not yes:
        typer.confirm(f"delete project {name} and all its files?", abort=True)
    project.delete(force=force)


@project_app.command("start")
def project_start(
    name: str,
    stage: Annotated[str | None, typer.Option(help="stage to start (default: where it stopped)")] = None,
    pause_after: Annotated[bool, typer.Option("--pause-after", help="pause after this stage")] = False,
    env: EnvOpt = None,
    store_block: StoreOpt = None,
) -> None:
    """Start a `pipeline-run` of the project (through the cpu pool's worker)."""
    _plain(_project(name, store_block).start(stage, pause_after, env).message)


@project_app.command("pause")
def project_pause(name: str, store_block: StoreOpt = None) -> None:
    """Pause after the current stage."""
    _project(name, store_block).pause()
    _plain(f"{name}: pauses after its current stage")


@project_app.command("abort")
def project_abort(name: str, store_block: StoreOpt = None) -> None:
    """Kill the running stage (its whole process tree); the stage FAILS and the project pauses."""
    _project(name, store_block).abort()
    _plain(f"{name}: abort requested")


@project_app.command("resume")
def project_resume(
    name: str,
    stage: Annotated[str | None, typer.Option(help="go to / start from this stage")] = None,
    action: Annotated[str | None, typer.Option(help="answer to a waiting form: continue|redo|goto|stop")] = None,
    env: EnvOpt = None,
    comment: Annotated[str, typer.Option(help="kept in the history")] = "",
    store_block: StoreOpt = None,
) -> None:
    """Answer the form of a project waiting for a decision, or start a run of a paused one."""
    _plain(_project(name, store_block).resume(stage, env, action, comment).message)


@project_app.command("wait")
def project_wait(
    name: str,
    until: Annotated[str, typer.Option(help="waiting|running|paused|finished|stopped")] = "waiting",
    timeout: Annotated[float, typer.Option(help="seconds")] = 600.0,
    progress: Annotated[bool, typer.Option(help="show a progress bar of stages done")] = True,
    store_block: StoreOpt = None,
) -> None:
    """Wait until the project is waiting for a decision (or paused, finished, ...); fails if it cannot get there."""
    found = _project(name, store_block).wait(cast("Until", until), timeout, progress)  # the API checks it
    if until == "waiting":
        _plain(f"{name}: waits for a decision {found.when} {found.stage} (run {found.run_id})")
    else:
        _plain(found.headline())


@project_app.command("logs")
def project_logs(
    name: str,
    stage: Annotated[str | None, typer.Option(help="default: the latest attempt's stage")] = None,
    attempt: Annotated[int | None, typer.Option(help="default: the stage's latest")] = None,
    store_block: StoreOpt = None,
) -> None:
    """Print the log file of a stage attempt."""
    log = _project(name, store_block).logs(stage, attempt)
    _plain(f"# {log.stage} attempt {log.attempt}: {log.path}")
    _plain("\n".join(log) if log else "(no log)")


@project_app.command("files")
def project_files(
    name: str,
    stage: Annotated[str | None, typer.Option(help="default: the latest attempt's stage")] = None,
    attempt: Annotated[int | None, typer.Option(help="default: the stage's latest")] = None,
    store_block: StoreOpt = None,
) -> None:
    """List the files of a stage attempt's workspace."""
    table = Table("path", "size", "modified")
    for f in _project(name, store_block).files(stage, attempt):
        table.add_row(f.path, str(f.size), f.mtime.strftime("%Y-%m-%d %H:%M:%S"))
    console.print(table)
