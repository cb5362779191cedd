"""Pipeline definitions: YAML → pydantic, every error as ``<file>:<line>: <field.path>: <what>``.

Seed 002, req. 1110: "A valid pipeline definition has a name and must contain at least one stage definition";
stage names are unique so a stage can be named to start, redo or go to. Pure: :func:`load_definition` reads one
file, everything else works on text.

Example:
    >>> d = parse_definition("name: demo\\nstages:\\n  - name: a\\n    command: [echo, hi]\\n    approval: after\\n")
    >>> d.stages[0].approval.mode, d.stages[0].pool
    ('after', 'cpu')
    >>> parse_definition("name: demo\\nstages: []\\n", "demo.yaml")
    Traceback (most recent call last):
    ...
    opsflow.errors.InputError: demo.yaml:2: stages: a pipeline needs at least one stage (got [])
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from opsflow.errors import InputError, NotFoundError
from opsflow.yaml_lines import line_of, load_mapping
from stage_pipeline.logscan import DEFAULT_ERROR_REGEX, progress_groups_ok

#: Pipeline, stage and project names: safe as a file or directory name and in a Prefect parameter.
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
#: An environment variable name, in a stage's env and in an override given at start or in a decision.
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def memory_bytes(text: str) -> int:
    """Bytes of a memory size; suffixes K/M/G/T are binary (as Docker and Slurm read them).

    >>> memory_bytes("512M"), memory_bytes("2G"), memory_bytes("1.5Gi"), memory_bytes("1024")
    (536870912, 2147483648, 1610612736, 1024)
    """
    match = _MEMORY.match(text)
    if match is None:
        raise ValueError(f"not a memory size like 512M or 2G: {text!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


class _Strict(BaseModel):
    # A typo in a key is an error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid")


class Resources(_Strict):
    """What a stage asks of its node; ``gpus > 0`` sends it to the ``gpu`` work pool."""

    cpus: float = Field(1.0, gt=0, description="CPU cores")
    memory: str | None = Field(None, description="memory limit as text, e.g. 512M or 2G")
    gpus: int = Field(0, ge=0, description="number of GPUs")

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and _MEMORY.match(value) is None:
            raise ValueError("not a memory size like 512M or 2G")
        return value

    @property
    def memory_bytes(self) -> int | None:
        """The memory limit in bytes (None: no limit)."""
        return None if self.memory is None else memory_bytes(self.memory)


class Approval(_Strict):
    """A decision asked of the user ``before`` or ``after`` the stage (``none``: none); a bare mode is accepted."""

    mode: Literal["none", "before", "after"] = "none"
    description: str = Field("", description="shown in the approval form")

    @model_validator(mode="before")
    @classmethod
    def _bare_mode(cls, value: Any) -> Any:
        # `approval: after` is the short form of `approval: {mode: after}`.
        return {"mode": value} if isinstance(value, str) else value


class StageDefinition(_Strict):
    """One stage: an argv ``command`` (run by the shell runner) or an ``image`` (+ optional ``command``)."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    command: list[str] | None = Field(None, min_length=1, description="argv list, never a shell string")
    image: str | None = Field(None, min_length=1, description="container image; runs in Docker when set")
    env: dict[str, str] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    approval: Approval = Field(default_factory=Approval)
    progress_regex: str | None = Field(None, description="named group pct (0-100) or done and total")
    error_regex: str = Field(DEFAULT_ERROR_REGEX, description="lines matching it are reported as errors")
    timeout: float | None = Field(None, gt=0, description="seconds")

    @field_validator("command", mode="before")
    @classmethod
    def _argv(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError("must be a list of arguments (argv), not a string: no shell is used")
        return value

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str) or not ENV_NAME.match(key):
                raise ValueError(f"not an environment variable name: {key!r}")
            # Numbers are written unquoted in YAML (MIN_AREA: 40); booleans are refused as `yes` would become True.
            out[key] = str(item) if isinstance(item, int | float) and not isinstance(item, bool) else item
        return out

    @field_validator("progress_regex", "error_regex")
    @classmethod
    def _regex(cls, value: str | None, info: Any) -> str | None:
        if value is None:
            return None
        try:
            pattern = re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from None
        if info.field_name == "progress_regex" and not progress_groups_ok(pattern):
            raise ValueError("needs a named group 'pct' or the named groups 'done' and 'total'")
        return value

    @model_validator(mode="after")
    def _runnable(self) -> StageDefinition:
        if self.command is None and self.image is None:
            raise ValueError("a stage needs a command (argv list) or an image")
        return self

    @property
    def pool(self) -> str:
        """The work pool the stage runs on: ``gpu`` when it asks for GPUs, else ``cpu``."""
        return "gpu" if self.resources.gpus > 0 else "cpu"


class PipelineDefinition(_Strict):
    """A named, ordered list of stages with unique names (req. 1110)."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    stages: list[StageDefinition]

    @field_validator("stages")
    @classmethod
    def _stages(cls, value: list[StageDefinition]) -> list[StageDefinition]:
        if not value:
            raise ValueError("a pipeline needs at least one stage")
        seen: dict[str, int] = {}
        for index, stage in enumerate(value):
            if stage.name in seen:
                # The index travels in ctx so the error can point at the duplicate's own line.
                raise PydanticCustomError(
                    "duplicate_stage",
                    "duplicate stage name '{stage}'",
                    {"stage": stage.name, "first": seen[stage.name], "index": index},
                )
            seen[stage.name] = index
        return value

    @property
    def stage_names(self) -> list[str]:
        return [stage.name for stage in self.stages]

    def stage(self, name: str) -> StageDefinition:
        """The stage called ``name``; :class:`~opsflow.errors.NotFoundError` (a KeyError) when the pipeline has none."""
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise NotFoundError(f"pipeline {self.name!r} has no stage {name!r} (stages: {', '.join(self.stage_names)})")

    def next_stage(self, name: str) -> str | None:
        """The stage after ``name`` in definition order (None after the last)."""
        names = self.stage_names
        index = names.index(self.stage(name).name)
        return names[index + 1] if index + 1 < len(names) else None


# --- YAML with line numbers -------------------------------------------------------------------------------------


def _problem(root: yaml.Node, err: Any) -> tuple[int, str, str]:
    loc = tuple(err["loc"])
    # Pydantic may name a validator in loc ("function-after[...]"); the file has no such key.
    loc = tuple(p for p in loc if not (isinstance(p, str) and "[" in p))
    kind = err["type"]
    if kind == "duplicate_stage":
        first = line_of(root, (*loc, err["ctx"]["first"], "name"))
        loc = (*loc, err["ctx"]["index"], "name")
        msg = f"duplicate stage name {err['ctx']['stage']!r} (first on line {first})"
    elif kind == "extra_forbidden":
        msg = "unknown key"
    elif kind == "string_pattern_mismatch":
        msg = "must be 1-63 characters a-z, 0-9, '-' or '_', starting with a letter or digit"
    elif kind == "string_type" and len(loc) > 1 and loc[-2] == "command":
        msg = "each argument must be a string (quote it)"
    else:
        msg = str(err["msg"]).removeprefix("Value error, ")
    value = err.get("input")
    if kind not in {"missing", "duplicate_stage"} and (value is None or isinstance(value, str | int | float)):
        msg += f" (got {value!r})"
    elif isinstance(value, list) and not value:
        msg += " (got [])"
    return line_of(root, loc), ".".join(str(p) for p in loc) or "(file)", msg


def parse_definition(
    text: str, source_name: str = "<definition>", expected_name: str | None = None
) -> PipelineDefinition:
    """Parse and validate a definition given as YAML text; errors name ``source_name``, the line and the field.

    ``expected_name`` (the file's stem) must equal the definition's ``name`` when given.
    """
    node, data = load_mapping(
        text, source_name, "empty; expected a mapping with name and stages", "expected a mapping with name and stages"
    )
    try:
        definition = PipelineDefinition.model_validate(data)
    except ValidationError as exc:
        problems = sorted((_problem(node, err) for err in exc.errors()), key=lambda p: p[0])
        raise InputError(source_name, problems) from None
    if expected_name is not None and definition.name != expected_name:
        line = line_of(node, ("name",))
        msg = f"{definition.name!r} does not match the file name {expected_name + '.yaml'!r}"
        raise InputError(source_name, [(line, "name", msg)])
    return definition


def load_definition(path: str | Path, expected_name: str | None = None) -> PipelineDefinition:
    """Read and validate one definition file.

    >>> load_definition(Path(__file__).parents[1] / "examples/video_tracking/pipeline.yaml").name
    'video-tracking'
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(str(path), [(1, "(file)", f"cannot read: {exc}")]) from None
    return parse_definition(text, str(path), expected_name)


def definition_yaml(definition: PipelineDefinition) -> str:
    """YAML text of a definition (for one built in Python, which has no file text to keep)."""
    return yaml.safe_dump(definition.model_dump(exclude_defaults=True), sort_keys=False)
