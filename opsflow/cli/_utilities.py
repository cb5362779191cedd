"""What every `opsflow` command shares: one console, one way to fail, one group class that turns errors into it.

Exit codes: 1 for an operation that failed (an engine refused, an API is unreachable), 2 for bad input or usage
(a wrong file, an unknown name, a bad option). Every error is one line on stderr, never a traceback.

Example:
    >>> from typer.testing import CliRunner
    >>> app = typer.Typer(cls=OpsflowGroup)
    >>> @app.command()
    ... def boom() -> None:
    ...     raise InputError("a.yaml", [(3, "x", "bad")])
    >>> @app.command()
    ... def other() -> None: ...
    >>> result = CliRunner().invoke(app, ["boom"])
    >>> result.exit_code, result.output.strip()
    (2, 'error: a.yaml:3: x: bad')
"""

from __future__ import annotations

import shutil
from typing import Any, NoReturn

import typer
from rich.console import Console
from typer.core import TyperGroup

from opsflow.errors import InputError, NotFoundError, OpsflowError

#: Wide enough for URLs even when stdout is not a terminal (rich would assume 80 columns).
console = Console(width=max(140, shutil.get_terminal_size().columns))
err_console = Console(stderr=True, width=max(140, shutil.get_terminal_size().columns))

#: How Prefect says it needed an API and was refused a temporary server (Prefect 3, with ephemeral mode off).
NO_API_MESSAGE = "No Prefect API URL provided"

#: Exit code of a failed operation, and of bad input or usage (click's own code for usage errors).
FAILED, BAD_INPUT = 1, 2


def exit_with_error(message: str | Exception, code: int = FAILED) -> NoReturn:
    """Print ``error: <message>`` on stderr and leave with ``code`` (1: failed operation, 2: bad input)."""
    err_console.print(f"[red]error:[/red] {message}", soft_wrap=True, markup=True, highlight=False)
    raise typer.Exit(code)


def error_code(exc: BaseException) -> int:
    """The exit code an error stands for: bad input and unknown names 2, anything else 1."""
    return BAD_INPUT if isinstance(exc, InputError | NotFoundError) else FAILED


def describe(exc: BaseException) -> str:
    """One line for an unexpected failure of an external system (an unreachable Prefect API, ...)."""
    import httpx

    if isinstance(exc, httpx.ConnectError | httpx.TimeoutException):
        url = exc.request.url if exc.request else "?"
        return f"cannot reach {url}: {exc or type(exc).__name__}"
    return f"{type(exc).__name__}: {exc}"


class OpsflowGroup(TyperGroup):
    """A typer group whose commands fail the one opsflow way: an :class:`OpsflowError` (or an unreachable API)
    becomes :func:`exit_with_error` with the code it stands for, so no command prints a traceback for it."""

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]  # typer's Context is a subclass
        try:
            return super().invoke(ctx)
        except OpsflowError as exc:
            exit_with_error(str(exc), error_code(exc))
        except (typer.Exit, typer.Abort, typer.TyperException):  # typer's own ways out: usage errors, --help
            raise
        except OSError as exc:  # a file that cannot be read or written: the OS message names it
            exit_with_error(str(exc), FAILED)
        except Exception as exc:
            if unreachable(exc):
                exit_with_error(describe(exc), FAILED)
            if str(exc).startswith(NO_API_MESSAGE):  # a flow called with no API: the CLI never starts a server
                exit_with_error(
                    "this command needs a Prefect server and opsflow never starts a temporary one: "
                    "run `opsflow up` or set PREFECT_API_URL",
                    FAILED,
                )
            raise


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says an HTTP API (Prefect's, Spark's, Prometheus's) could not be reached."""
    import httpx  # only on the error path: a command that succeeds does not pay for the import

    return isinstance(exc, httpx.ConnectError | httpx.TimeoutException)

def group(help: str) -> typer.Typer:
    """A sub-command group of `opsflow`, failing the opsflow way."""
    return typer.Typer(help=help, no_args_is_help=True, cls=OpsflowGroup)


__all__ = ["BAD_INPUT", "FAILED", "OpsflowGroup", "console", "err_console", "exit_with_error", "group"]
