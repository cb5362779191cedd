"""Imports point one way (ARCHITECTURE.md, "Layers"): a module imports only from its own layer or below, and a
pure core imports neither Prefect nor anything that does I/O.

An AST walk over every module of the distribution, lazy imports inside functions included (they are the ones
that creep upward). ``TYPE_CHECKING`` blocks are skipped: they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Bottom to top. A module belongs to the longest prefix that names it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("shared helpers and adapters", ("opsflow",)),
    ("subsystems", ("node_update", "spark_scaler", "stage_pipeline", "ci_training", "config_trials")),
    ("configuration", ("blocks", "work_pools")),
    ("flows", ("flows",)),
    ("API, local stack and demo", ("opsflow.api", "opsflow.stack")),
    ("CLI", ("opsflow.cli",)),
]
#: The package module ``opsflow`` itself only re-exports ``connect`` lazily (module ``__getattr__``).
FACADES = {"opsflow"}

#: Pure cores: plain functions and pydantic models, no network, subprocess, clock or filesystem.
PURE_CORES = (
    "node_update.models",
    "node_update.planner",
    "node_update.codename",
    "node_update.simulate",
    "spark_scaler.heat",
    "spark_scaler.policy",
    "spark_scaler.models",
    "stage_pipeline.definition",
    "stage_pipeline.models",
    "stage_pipeline.logscan",
    "stage_pipeline.steps",
    "stage_pipeline.file_rules",
    "stage_pipeline.limits",
    "stage_pipeline.node_table",
    "ci_training.models",
    "ci_training.rules",
    "ci_training.submit",
    "ci_training.junit",
    "ci_training.overrides",
    "config_trials.definition",
    "config_trials.inputs",
    "config_trials.stats",
    "config_trials.judge",
)
IMPURE = ("prefect", "httpx", "docker", "subprocess", "psutil", "socket", "requests", "pynvml", "opsflow.adapters")

PACKAGES = [name for _, names in LAYERS for name in names if "." not in name] + ["opsflow"]


def layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            names_it = module == prefix or module.startswith(prefix + ".")
            if names_it and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    return None if best is None else best[0]


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in sorted(set(PACKAGES)):
        base = ROOT / package
        if not base.is_dir():
            continue
        for path in base.rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, imported module) of every import that runs, at any depth."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if _type_checking_block(node):
            return
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            # ``from pkg import submodule`` imports the submodule too
            found.extend((node.lineno, f"{target}.{alias.name}") for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def upward_imports() -> list[str]:
    known = modules()
    problems = []
    for module, path in sorted(known.items()):
        if module in FACADES:
            continue
        own = layer_of(module)
        assert own is not None, module
        for line, name in imports(path, module):
            target = name
            while target not in known and "." in target:  # ``pkg.mod.function`` -> ``pkg.mod``
                target = target.rsplit(".", 1)[0]
            if target not in known or target in FACADES:
                continue
            theirs = layer_of(target)
            if theirs is not None and theirs > own:
                rel = path.relative_to(ROOT)
                problems.append(f"{rel}:{line}: {module} ({LAYERS[own][0]}) imports {target} ({LAYERS[theirs][0]})")
    return sorted(set(problems))


def test_imports_point_down_the_layers() -> None:
    problems = upward_imports()
    assert not problems, "upward imports:\n" + "\n".join(problems)


def test_pure_cores_import_neither_prefect_nor_io() -> None:
    known = modules()
    problems = []
    for module in PURE_CORES:
        for line, target in imports(known[module], module):
            if any(target == bad or target.startswith(bad + ".") for bad in IMPURE):
                problems.append(f"{known[module].relative_to(ROOT)}:{line}: {module} imports {target}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("module", "layer"),
    [("opsflow.files", 0), ("node_update.planner", 1), ("blocks.slurm", 2), ("flows.autoscale", 3),
     ("opsflow.stack.spark", 4), ("opsflow.api.node_update", 4), ("opsflow.cli.nu", 5)],
)  # fmt: skip
def test_layer_map_places_modules(module: str, layer: int) -> None:
    assert layer_of(module) == layer


def test_the_walk_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import flows\n"
        "def f():\n    from flows.autoscale import x\n    from . import sibling\n"
    )
    assert [t for _, t in imports(path, "spark_scaler.m")] == [
        "typing", "typing.TYPE_CHECKING", "flows.autoscale", "flows.autoscale.x",
        "spark_scaler", "spark_scaler.sibling",
    ]  # fmt: skip
