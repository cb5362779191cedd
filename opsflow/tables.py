"""Result objects that show themselves as tables: in Jupyter (HTML, Markdown), as text, and as DataFrames.

The API's results are pydantic models; a list of them is a :class:`Records`, which a notebook renders as a
table and ``to_frame()`` turns into a pandas DataFrame (pandas is needed only for that: ``opsflow[notebook]``).
A single model that mixes in :class:`TableView` renders as a two-column field/value table.

Example:
    >>> from pydantic import BaseModel
    >>> class Row(BaseModel):
    ...     node: str
    ...     state: str
    >>> rows = Records([Row(node="nid001", state="DONE"), Row(node="nid002", state="IDLE")])
    >>> print(rows._repr_markdown_())
    | node | state |
    | --- | --- |
    | nid001 | DONE |
    | nid002 | IDLE |
    >>> rows.to_frame().shape
    (2, 2)
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

if TYPE_CHECKING:
    import pandas as pd

M = TypeVar("M", bound=BaseModel)


def _cell(value: Any) -> str:
    if isinstance(value, list | tuple | set):
        return ", ".join(str(v) for v in value)
    if hasattr(value, "value") and not isinstance(value, str | int | float):  # an Enum
        return str(value.value)
    return "" if value is None else str(value)


def _rows(records: Sequence[BaseModel]) -> tuple[list[str], list[list[str]]]:
    dumps = [r.model_dump(mode="python") for r in records]
    columns: list[str] = []
    for d in dumps:
        columns += [k for k in d if k not in columns]
    return columns, [[_cell(d.get(c)) for c in columns] for d in dumps]


def html_table(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """An HTML table (cells escaped) as Jupyter shows it."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table ("|" in cells escaped)."""

    def esc(v: str) -> str:
        return v.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(esc(c) for c in columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _pandas() -> Any:
    try:
        import pandas
    except ImportError as exc:  # pragma: no cover - pandas is in the notebook extra and the dev tools
        raise ImportError("to_frame() needs pandas: pip install 'opsflow[notebook]'") from exc
    return pandas


class Records(list[M]):
    """A list of result models that renders as a table (Jupyter, Markdown) and converts to a DataFrame."""

    def _repr_html_(self) -> str:
        return html_table(*_rows(self)) if self else "<p>(none)</p>"

    def _repr_markdown_(self) -> str:
        return markdown_table(*_rows(self)) if self else "(none)"

    def to_frame(self) -> pd.DataFrame:
        """One row per record, one column per field (pandas)."""
        pandas = _pandas()
        return pandas.DataFrame([r.model_dump(mode="python") for r in self])


class TableView(BaseModel):
    """Mix into a result model: it then shows as a field/value table and ``to_frame()`` gives one row."""

    def _fields(self) -> list[list[str]]:
        return [[k, _cell(v)] for k, v in self.model_dump(mode="python").items()]

    def _repr_html_(self) -> str:
        return f"<b>{html.escape(type(self).__name__)}</b>" + html_table(["field", "value"], self._fields())

    def _repr_markdown_(self) -> str:
        return f"**{type(self).__name__}**\n\n" + markdown_table(["field", "value"], self._fields())

    def to_frame(self) -> pd.DataFrame:
        """This result as a one-row DataFrame (pandas)."""
        return _pandas().DataFrame([self.model_dump(mode="python")])
