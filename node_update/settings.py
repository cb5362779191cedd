"""Where the Node Update service keeps its files and how it is tuned: Block values, each overridable by env.

Precedence: environment variable > ``NodeUpdateSettings`` Block > default, so scripts and cron-less sites can
drive the service with environment variables alone (``OPSFLOW_NU_ROOT`` set → no Prefect server needed).

Example:
    >>> resolve({"OPSFLOW_NU_RES_LIMIT": "4"}, home=Path("/h")).res_limit
    4
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import Field, ValidationError

from node_update.models import Settings
from opsflow.errors import InputError
from opsflow.home import default_home

ENV = {
    "root": "OPSFLOW_NU_ROOT",
    "res_limit": "OPSFLOW_NU_RES_LIMIT",
    "reservation": "OPSFLOW_NU_RESERVATION",
    "max_failures": "OPSFLOW_NU_MAX_FAILURES",
}
LOCAL_DIR_ENV = "OPSFLOW_NU_LOCAL_DIR"


class NodeUpdateConfig(Settings):
    """The tick's settings plus where the shared root is."""

    root: Path = Field(description="Shared directory: updates/, active-updates.list, spool/, state/")


def local_root(home: Path) -> Path:
    """The shared root inside a local stack's home."""
    return home / "shared" / "node-update"


def local_dir_template(home: Path) -> str:
    """Each local-stack node's "local" directory (holding ``local.version``)."""
    return str(home / "nodes" / "{node}")


def _home(env: Mapping[str, str]) -> Path:
    return default_home(env)


def resolve(
    env: Mapping[str, str] | None = None, base: Mapping[str, object] | None = None, home: Path | None = None
) -> NodeUpdateConfig:
    """Settings from ``base`` (a Block's values) with environment overrides; errors name the variable."""
    env = os.environ if env is None else env
    values: dict[str, object] = {"root": local_root(home or _home(env))}
    values.update({k: v for k, v in (base or {}).items() if v is not None})
    for field, var in ENV.items():
        if env.get(var):
            values[field] = env[var]
    try:
        return NodeUpdateConfig.model_validate(values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0])
            var = ENV.get(field, "")
            where = f"{var}={env[var]!r}" if var and env.get(var) else field
            problems.append((0, where, str(err["msg"])))
        raise InputError("node-update settings", problems) from None


def node_env(cfg: NodeUpdateConfig, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """What node-side commands (epilog, apply) need to find the root and their local directory."""
    env = os.environ if env is None else env
    out = {ENV["root"]: str(cfg.root)}
    out[LOCAL_DIR_ENV] = env.get(LOCAL_DIR_ENV) or local_dir_template(_home(env))
    return out


