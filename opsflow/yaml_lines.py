"""Line numbers for errors in YAML files: the composed node tree (``yaml.compose``) mapped to a key path.

Used by every loader that reports ``file:line: key.path: message`` (the scaler config, pipeline definitions).

Example:
    >>> root = yaml.compose("a:\\n  b: 1\\n  c: [x, y]\\n")
    >>> line_of(root, ("a", "c", 1)), line_of(root, ("a", "missing"))
    (3, 1)
    >>> duplicate_keys(yaml.compose("a: 1\\na: 2\\n"))
    [(2, 'a', 'key given twice (first on line 1)')]
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import ValidationError

from opsflow.errors import InputError


def load_mapping(text: str, source: str, empty: str, not_a_mapping: str) -> tuple[yaml.Node, dict[str, Any]]:
    """The node tree (for line numbers) and the data of a YAML document that must be a mapping, parsed once.

    Syntax errors, an empty document (message ``empty``), another kind of document (``not_a_mapping``) and keys
    given twice raise :class:`~opsflow.errors.InputError` naming ``source``.

    >>> node, data = load_mapping("a: 1", "a.yaml", "empty", "not a mapping")
    >>> data, node.start_mark.line
    ({'a': 1}, 0)
    >>> load_mapping("- 1", "a.yaml", "empty", "not a mapping")
    Traceback (most recent call last):
    ...
    opsflow.errors.InputError: a.yaml:1: (file): not a mapping
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise InputError(source, [(mark.line + 1 if mark else 1, "(yaml)", str(exc.problem or exc))]) from None
    except yaml.YAMLError as exc:
        raise InputError(source, [(1, "(yaml)", str(exc))]) from None
    finally:
        loader.dispose()
    if node is None:
        raise InputError(source, [(1, "(file)", empty)])
    if not isinstance(data, dict):
        raise InputError(source, [(node.start_mark.line + 1, "(file)", not_a_mapping)])
    duplicates = duplicate_keys(node)
    if duplicates:
        raise InputError(source, duplicates)
    return node, data


def key_text(node: yaml.Node) -> str:
    """A mapping key as text ("?" for a complex key)."""
    return str(node.value) if isinstance(node, yaml.ScalarNode) else "?"


def duplicate_keys(node: yaml.Node, path: tuple[str, ...] = ()) -> list[tuple[int, str, str]]:
    """(line, key path, message) of every key given twice in one mapping (PyYAML silently keeps the last)."""
    found: list[tuple[int, str, str]] = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            name, line = key_text(key), key.start_mark.line + 1
            if name in seen:
                found.append((line, ".".join((*path, name)), f"key given twice (first on line {seen[name]})"))
            seen.setdefault(name, line)
            found += duplicate_keys(value, (*path, name))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            found += duplicate_keys(item, (*path, str(index)))
    return found


def line_of(root: yaml.Node, loc: tuple[int | str, ...]) -> int:
    """The line of the deepest part of ``loc`` present in the file (a missing key: its parent's line)."""
    node, line = root, root.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key_text(key) == str(part):
                    node, line = value, key.start_mark.line + 1
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def validation_problems(root: yaml.Node, exc: ValidationError, unknown_key: str) -> list[tuple[int, str, str]]:
    """A pydantic error of a model validated from the YAML of ``root`` as ``(line, field, message)``, by line.

    An unknown key gets ``unknown_key`` as its message; any other error pydantic's message, with the value
    given when it is a scalar (``(got 0)``).

    >>> from pydantic import BaseModel, ConfigDict, Field
    >>> class General(BaseModel):
    ...     model_config = ConfigDict(extra="forbid")
    ...     interval: int = Field(gt=0)
    >>> root = yaml.compose("interval: 0\\ncolour: red\\n")
    >>> try:
    ...     General.model_validate(yaml.safe_load("interval: 0\\ncolour: red\\n"))
    ... except ValidationError as exc:
    ...     validation_problems(root, exc, "unknown key")
    [(1, 'interval', 'Input should be greater than 0 (got 0)'), (2, 'colour', 'unknown key')]
    """
    problems = []
    for err in exc.errors():
        if err["type"] == "extra_forbidden":
            msg = unknown_key
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
            value = err.get("input")
            if err["type"] != "missing" and (value is None or isinstance(value, str | int | float | bool)):
                msg += f" (got {value!r})"
        problems.append((line_of(root, tuple(err["loc"])), ".".join(str(p) for p in err["loc"]) or "(file)", msg))
    return sorted(problems, key=lambda p: p[0])
