"""The project's exceptions: one root, one input error, one adapter error.

Every failure a user can meet is an :class:`OpsflowError`, so a caller (the CLI, a notebook, a flow) catches one
type. :class:`InputError` is the one way to report bad input: it carries the source (a file, a variable, a
command-line option) and one ``(line, field, message)`` per problem. :class:`AdapterError` is an external system
that did not answer as expected (Slurm, Spark, Prometheus, Docker, Prefect): a level-triggered tick retries it
on its next round.

Example:
    >>> e = InputError("p.yaml", [(4, "stages.0.timeout", "must be > 0")])
    >>> str(e), e.line, e.field
    ('p.yaml:4: stages.0.timeout: must be > 0', 4, 'stages.0.timeout')
    >>> str(InputError("OPSFLOW_NU_RES_LIMIT", [(0, "res_limit", "not an integer")]))
    'OPSFLOW_NU_RES_LIMIT: res_limit: not an integer'
    >>> isinstance(e, OpsflowError) and isinstance(e, ValueError)
    True
"""

from __future__ import annotations


class OpsflowError(Exception):
    """Root of every error opsflow raises on purpose (its message is meant for the user as it is)."""


class InputError(OpsflowError, ValueError):
    """Bad input: ``source`` (file, variable, option) and ``problems`` as ``(line, field, message)``.

    A line of 0 means "no line" (an environment variable, an option); str() gives one problem per line,
    ``source:line: field: message``.
    """

    def __init__(self, source: str, problems: list[tuple[int, str, str]]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(
            "\n".join(
                f"{source}:{line}: {field}: {msg}" if line else f"{source}: {field}: {msg}"
                for line, field, msg in problems
            )
        )

    @property
    def line(self) -> int:
        """The line of the first problem (0: none)."""
        return self.problems[0][0] if self.problems else 0

    @property
    def field(self) -> str:
        """The field of the first problem."""
        return self.problems[0][1] if self.problems else ""


class NotFoundError(OpsflowError, KeyError):
    """A name that does not exist (a project, a pipeline, an update, a node); the message says which.

    >>> str(NotFoundError("no project named 'x'"))
    "no project named 'x'"
    """

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class AdapterError(OpsflowError, RuntimeError):
    """An external system failed or refused (Slurm, Spark, Prometheus, Docker, Prefect); retried next tick."""
