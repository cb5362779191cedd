"""`opsflow pipeline …` and `opsflow project …`: the staged pipelines from a shell (the same calls as the Python API).

The store is the `PipelineStore` block (default `local`, saved by `opsflow up`), read from the stack's Prefect
server; `pipeline validate FILE` needs no server.

Example:
    $ opsflow pipeline validate examples/video_tracking/pipeline.yaml
    $ opsflow project create traffic --pipeline video-tracking
    $ opsflow project start traffic
    $ opsflow project resume traffic --action redo --env MIN_AREA=60
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from opsflow.errors import InputError
from stage_pipeline.definition import load_definition

pipeline_app = typer.Typer(help="Pipeline definitions (YAML files in the store's pipelines/ directory).")
project_app = typer.Typer(help="Projects: a pipeline's stages run on the cpu/gpu pools, with approvals in the UI.")
console = Console(width=140)
StoreOpt = Annotated[str, typer.Option("--store-block", help="PipelineStore block name")]
EnvOpt = Annotated[list[str] | None, typer.Option("--env", help="KEY=VALUE for the stage that runs next (repeat)")]


@contextmanager
def _prefect() -> Iterator[None]:
    from opsflow.stack.config import StackConfig, default_home
    from opsflow.stack.env import prefect_client_settings

    with prefect_client_settings(StackConfig.load(default_home())):
        yield


def _store_block(name: str):  # type: ignore[no-untyped-def]  # PipelineStore, imported lazily (Prefect is slow)
    from blocks import PipelineStore, load_block

    return load_block(PipelineStore, name)


def _fail(message: str) -> None:
    console.print(f"[red]{message}[/red]", soft_wrap=True)
    raise typer.Exit(1)


def _env(items: list[str] | None) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            _fail(f"--env {item!r}: expected KEY=VALUE")
        env[key] = value
    return env


# --- pipelines -----------------------------------------------------------------------------------------------
@pipeline_app.command("validate")
def pipeline_validate(path: Path) -> None:
    """Check a definition file; errors name the file, line and field."""
    try:
        d = load_definition(path)
    except (InputError, OSError) as exc:
        _fail(str(exc))
    console.print(f"{path}: pipeline {d.name} with {len(d.stages)} stages: {', '.join(d.stage_names)}")


@pipeline_app.command("list")
def pipeline_list(store_block: StoreOpt = "local") -> None:
    """Definitions in the store (invalid files listed with their error)."""
    with _prefect():
        library = _store_block(store_block).library()
    problems = library.problems()
    for name in library.list():
        console.print(f"{name}: [red]{problems[name]}[/red]" if name in problems else name, soft_wrap=True)


@pipeline_app.command("show")
def pipeline_show(name: str, store_block: StoreOpt = "local") -> None:
    """A definition's YAML."""
    with _prefect():
        library = _store_block(store_block).library()
    try:
        console.print(library.text(name), markup=False, highlight=False)
    except KeyError as exc:
        _fail(str(exc))


# --- projects ------------------------------------------------------------------------------------------------
@project_app.command("create")
def project_create(
    name: str, pipeline: Annotated[str, typer.Option(help="definition name")], store_block: StoreOpt = "local"
) -> None:
    """A new project with its own copy of the definition."""
    with _prefect():
        store_cfg = _store_block(store_block)
    library = store_cfg.library()
    try:
        p = store_cfg.projects().create(name, library.get(pipeline), library.text(pipeline))
    except (KeyError, ValueError, FileExistsError) as exc:
        _fail(str(exc))
    console.print(f"project {p.name}: {len(p.stages)} stages of {pipeline}")


@project_app.command("list")
def project_list(store_block: StoreOpt = "local") -> None:
    """Projects with their status."""
    with _prefect():
        store = _store_block(store_block).projects()
    table = Table("project", "pipeline", "status", "stage", "tags", "reason")
    for name in store.list():
        p = store.get(name)
        table.add_row(p.name, p.definition.name, p.status.value, p.current_stage or "", ",".join(p.tags), p.reason)
    console.print(table)


@project_app.command("show")
def project_show(name: str, store_block: StoreOpt = "local") -> None:
    """Stage states and the history of every attempt."""
    with _prefect():
        store = _store_block(store_block).projects()
    try:
        p = store.get(name)
    except KeyError as exc:
        _fail(str(exc))
    console.print(f"{p.name} ({p.definition.name}): {p.status.value} {p.reason}; tags {p.tags}")
    console.print("stages: " + ", ".join(f"{s}={st.value}" for s, st in p.stages.items()))
    table = Table("stage", "attempt", "outcome", "exit", "started", "ended", "errors", "env", "comment")
    for a in p.history:
        table.add_row(
            a.stage, str(a.attempt), a.outcome.value if a.outcome else "running", str(a.exit_code),
            a.started.strftime("%H:%M:%S"), a.ended.strftime("%H:%M:%S") if a.ended else "", str(a.error_count),
            " ".join(f"{k}={v}" for k, v in a.env.items()), a.comment,
        )  # fmt: skip
    console.print(table)


@project_app.command("rename")
def project_rename(name: str, new_name: str, store_block: StoreOpt = "local") -> None:
    with _prefect():
        store = _store_block(store_block).projects()
    try:
        store.rename(name, new_name)
    except (KeyError, ValueError, FileExistsError) as exc:
        _fail(str(exc))


@project_app.command("set-pipeline")
def project_set_pipeline(name: str, pipeline: str, store_block: StoreOpt = "local") -> None:
    """Switch the project to another definition (stage states kept by name, history kept)."""
    with _prefect():
        store_cfg = _store_block(store_block)
    library = store_cfg.library()
    try:
        store_cfg.projects().set_definition(name, library.get(pipeline), library.text(pipeline))
    except (KeyError, ValueError) as exc:
        _fail(str(exc))


@project_app.command("tag")
def project_tag(name: str, tags: list[str], store_block: StoreOpt = "local") -> None:
    with _prefect():
        store = _store_block(store_block).projects()
    console.print(", ".join(store.tag(name, *tags).tags))


@project_app.command("untag")
def project_untag(name: str, tags: list[str], store_block: StoreOpt = "local") -> None:
    with _prefect():
        store = _store_block(store_block).projects()
    console.print(", ".join(store.untag(name, *tags).tags))


@project_app.command("delete")
def project_delete(
    name: str, yes: Annotated[bool, typer.Option("--yes", help="no question")] = False, store_block: StoreOpt = "local"
) -> None:
    """Remove the project with every file and record of it."""
    if not yes:
        typer.confirm(f"delete project {name} and all its files?", abort=True)
    with _prefect():
        store = _store_block(store_block).projects()
    try:
        store.delete(name)
    except KeyError as exc:
        _fail(str(exc))


@project_app.command("start")
def project_start(
    name: str,
    stage: Annotated[str | None, typer.Option(help="stage to start (default: where it stopped)")] = None,
    pause_after: Annotated[bool, typer.Option("--pause-after", help="pause after this stage")] = False,
    env: EnvOpt = None,
    store_block: StoreOpt = "local",
) -> None:
    """Start a `pipeline-run` of the project (through the cpu pool's worker)."""
    from stage_pipeline.prefect_api import start_pipeline_run
    from stage_pipeline.steps import first_stage

    with _prefect():
        store = _store_block(store_block).projects()
        p = store.get(name)
        start = stage or first_stage(p)
        run = start_pipeline_run(name, start, pause_after, _env(env), store_block)
    console.print(f"{name}: run {run.name} ({run.id}) from {start}")


@project_app.command("pause")
def project_pause(name: str, store_block: StoreOpt = "local") -> None:
    """Pause after the current stage."""
    with _prefect():
        store = _store_block(store_block).projects()
    store.request_pause(name)
    console.print(f"{name}: pauses after its current stage")


@project_app.command("abort")
def project_abort(name: str, store_block: StoreOpt = "local") -> None:
    """Kill the running stage (its whole process tree); the stage FAILS and the project pauses."""
    with _prefect():
        store = _store_block(store_block).projects()
    if not store.get(name).running_attempts():
        _fail(f"{name}: no stage is running")
    store.request_abort(name)
    console.print(f"{name}: abort requested")


@project_app.command("resume")
def project_resume(
    name: str,
    stage: Annotated[str | None, typer.Option(help="go to / start from this stage")] = None,
    action: Annotated[str | None, typer.Option(help="answer to a waiting form: continue|redo|goto|stop")] = None,
    env: EnvOpt = None,
    comment: Annotated[str, typer.Option(help="kept in the history")] = "",
    store_block: StoreOpt = "local",
) -> None:
    """Answer the form of a project waiting for a decision, or start a run of a paused one."""
    from stage_pipeline.prefect_api import answer, start_pipeline_run
    from stage_pipeline.steps import Decision

    with _prefect():
        store = _store_block(store_block).projects()
        p = store.get(name)
        if p.waiting is not None:
            chosen = action or ("goto" if stage else "continue")
            decision = Decision.model_validate(
                {"action": chosen, "env": _env(env), "goto_stage": stage, "comment": comment}
            )
            try:
                answer(p.waiting.run_id, decision)
            except RuntimeError as exc:
                _fail(f"{name}: the server refused the answer: {exc}")
            console.print(f"{name}: answered {decision.action} to the decision on {p.waiting.stage}")
            return
        run = start_pipeline_run(name, stage, False, _env(env), store_block)
    console.print(f"{name}: run {run.name} ({run.id}) resumes {'at ' + stage if stage else 'where it stopped'}")


@project_app.command("logs")
def project_logs(
    name: str,
    stage: Annotated[str | None, typer.Option(help="default: the latest attempt's stage")] = None,
    attempt: Annotated[int | None, typer.Option(help="default: the stage's latest")] = None,
    store_block: StoreOpt = "local",
) -> None:
    """Print the log file of a stage attempt."""
    with _prefect():
        store = _store_block(store_block).projects()
    p = store.get(name)
    runs = [a for a in p.history if stage is None or a.stage == stage]
    if attempt is not None:
        runs = [a for a in runs if a.attempt == attempt]
    if not runs:
        _fail(f"{name}: no such attempt")
    chosen = runs[-1]
    path = store.log_path(name, chosen.stage, chosen.attempt)
    console.print(f"# {chosen.stage} attempt {chosen.attempt}: {path}")
    console.print(path.read_text(errors="replace") if path.exists() else "(no log)", markup=False, highlight=False)
