"""Codenames: the ``YYYYmmddHHMMSS`` timestamps that name update bundles and node levels (pure, no I/O).

A codename is 14 ASCII digits that form a real date-time, in UTC. Because of the fixed width, comparing two
codenames as strings compares them in time, so "is this node behind?" is ``level < codename`` (seed VI).

Example:
    >>> parse_codename("20261123120000")
    '20261123120000'
    >>> codename_at(0.0)
    '19700101000000'
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from node_update.errors import NodeUpdateInputError

#: strptime/strftime format of a codename.
FORMAT = "%Y%m%d%H%M%S"
_DIGITS = re.compile(r"[0-9]{14}", re.ASCII)


class CodenameError(NodeUpdateInputError):
    """A text that is not a codename; ``value`` is the text, ``why`` the reason."""

    def __init__(self, value: str, why: str) -> None:
        super().__init__(f"invalid codename {value!r}: {why}", source="codename", field=value)
        self.value = value
        self.why = why


def parse_codename(text: str) -> str:
    """Return ``text`` if it is a codename: 14 digits ``YYYYmmddHHMMSS`` forming a real date-time (seed VI).

    >>> try:
    ...     parse_codename("20260229000000")
    ... except CodenameError as exc:
    ...     print(exc)
    invalid codename '20260229000000': not a real date-time: day is out of range for month
    """
    if not isinstance(text, str) or not _DIGITS.fullmatch(text):
        raise CodenameError(str(text), "expected 14 digits YYYYmmddHHMMSS")
    try:
        # The constructor names the bad field ("month must be in 1..12"); strptime is the authority on the format.
        datetime(int(text[0:4]), int(text[4:6]), int(text[6:8]), int(text[8:10]), int(text[10:12]), int(text[12:14]))
        parsed = datetime.strptime(text, FORMAT)
    except ValueError as exc:
        raise CodenameError(text, f"not a real date-time: {exc}") from None
    if parsed.strftime(FORMAT) != text:  # strptime accepts unpadded fields; a codename has none
        raise CodenameError(text, "not a real date-time")
    return text


def codename_at(t: datetime | float) -> str:
    """The codename of a moment, in UTC (a naive ``datetime`` is taken as UTC); F7 uses it for the boot time.

    >>> codename_at(datetime(2026, 1, 2, 3, 4, 5))
    '20260102030405'
    """
    if isinstance(t, datetime):
        moment = t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    else:
        moment = datetime.fromtimestamp(float(t), tz=UTC)
    return moment.strftime(FORMAT)
