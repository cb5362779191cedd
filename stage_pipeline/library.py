"""The pipelines directory: one YAML file per definition, ``<root>/<name>.yaml`` (req. 1110-1130).

Editing a file is the expected way to define or change a pipeline (the seed's wish); :meth:`PipelineLibrary.save`
is the checked way (validates first, writes atomically). Deleting a definition never touches a project: each
project keeps its own copy of the definition (req. 1130).

Example:
    >>> import tempfile
    >>> lib = PipelineLibrary(Path(tempfile.mkdtemp()))
    >>> lib.save("name: demo\\nstages:\\n  - {name: a, command: [echo, hi]}\\n").name
    'demo'
    >>> lib.list(), lib.get("demo").stage_names
    (['demo'], ['a'])
"""

from __future__ import annotations

from pathlib import Path

from opsflow.errors import InputError, NotFoundError
from opsflow.files import atomic_write_text
from stage_pipeline.definition import PipelineDefinition, load_definition, parse_definition
from stage_pipeline.store import check_name


class PipelineNotFound(NotFoundError):
    """No definition of that name in the library (a KeyError, with a readable message)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "pipeline not found"


class PipelineLibrary:
    """The definitions in one directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, name: str) -> Path:
        return self.root / f"{check_name(name, 'pipeline')}.yaml"

    def list(self) -> list[str]:
        """Names of the definition files (valid or not: :meth:`get` tells which), sorted."""
        if not self.root.is_dir():
            return []
        return sorted(p.stem for p in self.root.glob("*.yaml") if p.is_file() and not p.name.startswith("."))

    def text(self, name: str) -> str:
        """The YAML text of a definition, as written (comments included)."""
        try:
            return self.path(name).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PipelineNotFound(f"no pipeline {name!r} in {self.root}") from None

    def get(self, name: str) -> PipelineDefinition:
        """The validated definition; InputError names the file, line and field."""
        path = self.path(name)
        if not path.is_file():
            raise PipelineNotFound(f"no pipeline {name!r} in {self.root}")
        return load_definition(path, expected_name=name)

    def problems(self) -> dict[str, InputError]:
        """Every invalid definition file with its error (an empty dict: all valid)."""
        found: dict[str, InputError] = {}
        for name in self.list():
            try:
                self.get(name)
            except InputError as exc:
                found[name] = exc
            except ValueError as exc:  # a file name that is no valid pipeline name
                found[name] = InputError(str(self.root / f"{name}.yaml"), [(1, "(file)", str(exc))])
        return found

    def validate(self, path: Path) -> PipelineDefinition:
        """Check a definition file anywhere (e.g. before copying it in); its file name must match its name."""
        path = Path(path)
        return load_definition(path, expected_name=path.stem if path.suffix in {".yaml", ".yml"} else None)

    def save(self, text: str, name: str | None = None) -> PipelineDefinition:
        """Validate ``text`` and write it as ``<root>/<its name>.yaml`` atomically (req. 1110/1120).

        ``name`` (when given) must equal the definition's name: a rename is a new definition plus a delete.
        """
        source = str(self.path(name)) if name is not None else "<new definition>"
        definition = parse_definition(text, source, expected_name=name)
        atomic_write_text(self.path(definition.name), text)
        return definition

    def delete(self, name: str) -> None:
        """Req. 1130: remove the definition file; projects keep their own copy and run on."""
        try:
            self.path(name).unlink()
        except FileNotFoundError:
            raise PipelineNotFound(f"no pipeline {name!r} in {self.root}") from None
