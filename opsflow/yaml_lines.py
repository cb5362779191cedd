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


class YamlProblem(ValueError):
    """A YAML file that does not parse; ``line`` is 1-based."""

    def __init__(self, line: int, message: str) -> None:
        self.line = line
        super().__init__(message)


def compose_and_load(text: str) -> tuple[yaml.Node | None, Any]:
    """The node tree (for line numbers) and the plain data of one YAML document, parsed once.

    >>> node, data = compose_and_load("a: 1")
    >>> data, node.start_mark.line
    ({'a': 1}, 0)
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        return node, (loader.construct_document(node) if node is not None else None)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise YamlProblem(mark.line + 1 if mark else 1, str(exc.problem or exc)) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(1, str(exc)) from None
    finally:
        loader.dispose()


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
