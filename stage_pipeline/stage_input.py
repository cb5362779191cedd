"""A stage that asks for input while it runs (seed 003: "dynamically detect within a stage whether user input is
required", e.g. reference points in one frame). Pure: the request file's rules and the form built from it.

The protocol, from the stage's side: write ``$OPSFLOW_ASK/<name>.request.json`` (write a temporary name, then
rename, so it is never read half-written) holding ``{"description": ..., "schema": {JSON schema of an object}}``,
then wait for ``$OPSFLOW_ASK/<name>.answer.json``: the form's answer as a JSON object, or ``{"error": ...}`` when
the request was refused or nobody answered in time. The stage's run pauses meanwhile (a form in the Prefect UI);
the heartbeat goes on, so the project run does not take the waiting stage for a lost one.

The schema is a flat object: ``string``, ``integer``, ``number``, ``boolean`` and arrays of those, with
``enum``, ``default``, ``description``, ``minimum`` / ``maximum``; ``required`` names the fields without default.

Example:
    >>> req = parse_request("points.request.json", '{"description": "Mark the frame", '
    ...     '"schema": {"properties": {"x": {"type": "integer", "minimum": 0}}, "required": ["x"]}}')
    >>> req.name, req.timeout_s
    ('points', 86400.0)
    >>> form_model(req).model_validate({"x": 3}).model_dump()
    {'x': 3}
    >>> form_model(req).model_validate({"x": -1})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for points...
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from opsflow.errors import InputError

REQUEST_SUFFIX = ".request.json"
ANSWER_SUFFIX = ".answer.json"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_TYPES: dict[str, type] = {"string": str, "integer": int, "number": float, "boolean": bool}


class InputRequest(BaseModel):
    """One request of a running stage: its name (from the file name), what to tell the operator, the form."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    schema_: dict[str, Any] = Field(alias="schema", description="JSON schema of the answer (a flat object)")
    timeout_s: float = Field(86400.0, gt=0, description="the stage gets an error answer after this long")


def request_name(filename: str) -> str | None:
    """The request's name from its file name (None: not a request file).

    >>> request_name("points.request.json"), request_name("points.answer.json"), request_name("Bad Name.request.json")
    ('points', None, None)
    """
    if not filename.endswith(REQUEST_SUFFIX):
        return None
    name = filename[: -len(REQUEST_SUFFIX)]
    return name if _NAME.match(name) else None


def answer_filename(name: str) -> str:
    return f"{name}{ANSWER_SUFFIX}"


def parse_request(filename: str, text: str) -> InputRequest:
    """The request in ``text`` (the file ``filename``); an :class:`InputError` naming the field when it is not one.

    >>> parse_request("a.request.json", '{"schema": {"properties": {"k": {"type": "color"}}}}')  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    opsflow.errors.InputError: a.request.json: schema.properties.k.type: 'color' is not one of ...
    """
    name = request_name(filename)
    if name is None:
        raise InputError(filename, [(0, "name", "a request is <name>.request.json, name of a-z 0-9 _ -")])
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(filename, [(exc.lineno, "json", exc.msg)]) from None
    if not isinstance(raw, dict):
        raise InputError(filename, [(0, "request", "not a JSON object")])
    try:
        request = InputRequest.model_validate({**raw, "name": name})
    except ValidationError as exc:
        problems = [(0, ".".join(str(x) for x in e["loc"]), e["msg"]) for e in exc.errors()]
        raise InputError(filename, problems) from None
    _fields(filename, request.schema_)  # the schema's own problems, now rather than when the form is built
    return request


def form_model(request: InputRequest, base: type[BaseModel] = BaseModel) -> type[BaseModel]:
    """The form for ``request`` as a pydantic model (``base``: Prefect's RunInput in the flow), whose JSON schema
    the Prefect UI renders and the server checks answers against."""
    fields = _fields(f"{request.name}{REQUEST_SUFFIX}", request.schema_)
    model: type[BaseModel] = create_model(request.name, __base__=base, **fields)
    return model


def _fields(source: str, schema: dict[str, Any]) -> dict[str, Any]:
    properties = schema.get("properties")
    if not isinstance(properties, dict) or not properties:
        raise InputError(source, [(0, "schema.properties", "an object of at least one field")])
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) and r in properties for r in required):
        raise InputError(source, [(0, "schema.required", "a list of names from schema.properties")])
    fields: dict[str, Any] = {}
    for key, spec in properties.items():
        where = f"schema.properties.{key}"
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            raise InputError(source, [(0, where, "a field name is a Python identifier")])
        if not isinstance(spec, dict):
            raise InputError(source, [(0, where, "not an object")])
        kind = _kind(source, where, spec)
        default = spec.get("default", ... if key in required else None)
        if default is None and key not in required:
            kind = kind | None  # an optional field: the form may leave it empty
        limits = {arg: spec[k] for k, arg in (("minimum", "ge"), ("maximum", "le")) if k in spec}
        info = Field(default, description=str(spec.get("description", "")), title=spec.get("title"), **limits)
        fields[key] = (kind, info)
    return fields


def _kind(source: str, where: str, spec: dict[str, Any]) -> Any:
    if "enum" in spec:
        values = spec["enum"]
        if not isinstance(values, list) or not values or not all(isinstance(v, str | int | float) for v in values):
            raise InputError(source, [(0, f"{where}.enum", "a list of strings or numbers")])
        return Literal[tuple(values)]
    kind = spec.get("type")
    if kind == "array":
        items = spec.get("items", {})
        inner = items.get("type") if isinstance(items, dict) else None
        if inner not in _TYPES:
            raise InputError(source, [(0, f"{where}.items.type", f"{inner!r} is not one of {sorted(_TYPES)}")])
        element: Any = _TYPES[inner]
        return list[element]
    if kind not in _TYPES:
        raise InputError(source, [(0, f"{where}.type", f"{kind!r} is not one of {sorted([*_TYPES, 'array'])}")])
    return _TYPES[kind]
