"""The base of the Node Update service's bad-input errors (pure): an operator mistake, said in one sentence.

Each is an :class:`opsflow.errors.InputError` (so the CLI leaves with exit code 2 and a notebook catches one
type), whose message is the sentence as written: it already names the value or the file and says why.

Example:
    >>> e = NodeUpdateInputError("nid009: unknown node", source="nid009", field="node")
    >>> str(e), e.source, e.field, isinstance(e, InputError)
    ('nid009: unknown node', 'nid009', 'node', True)
"""

from __future__ import annotations

from opsflow.errors import InputError


class NodeUpdateInputError(InputError):
    """Bad input to the Node Update service; ``source``/``field`` say where, ``str()`` is the whole sentence."""

    def __init__(self, message: str, *, source: str = "", field: str = "") -> None:
        head, _, why = message.partition(": ")
        super().__init__(source or head, [(0, field, why or message)])
        self.args = (message,)  # the sentence as written, not InputError's "source: field: message"
