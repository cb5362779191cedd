"""The Node Update service's configuration: a ``NodeUpdateSettings`` Block's values, each overridable by env.

Precedence: environment variable > Block value > default (the shared root inside the local stack's home), so
scripts and cron-less sites can drive the service with environment variables alone (``OPSFLOW_NU_ROOT`` set: no
Prefect server needed). The model itself, :class:`NodeUpdateConfig`, lives in the pure ``models`` module (the
planner takes it); this module only reads the environment.

Example:
    >>> cfg = load_config({"OPSFLOW_NU_RES_LIMIT": "4"}, home=Path("/h"))
    >>> cfg.res_limit, cfg.root
    (4, PosixPath('/h/shared/node-update'))
    >>> try:
    ...     load_config({"OPSFLOW_NU_RES_LIMIT": "abc"}, home=Path("/h"))
    ... except InputError as exc:
    ...     print(exc.source, "|", exc.field)
    node-update settings | OPSFLOW_NU_RES_LIMIT='abc'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import ValidationError

from node_update.models import NodeUpdateConfig
from opsflow.errors import InputError
from opsflow.home import default_home

#: The environment variable that overrides each field.
ENV = {
    "root": "OPSFLOW_NU_ROOT",
    "res_limit": "OPSFLOW_NU_RES_LIMIT",
    "reservation": "OPSFLOW_NU_RESERVATION",
    "max_failures": "OPSFLOW_NU_MAX_FAILURES",
    "reserve_busy": "OPSFLOW_NU_RESERVE_BUSY",
    "check_command": "OPSFLOW_NU_CHECK_COMMAND",
}
#: The fields of :class:`NodeUpdateConfig` (a Block holds more, e.g. ``slurm_block``).
FIELDS = tuple(ENV)
#: Template of a node's local directory (``{node}`` replaced), read by the node-side commands.
LOCAL_DIR_ENV = "OPSFLOW_NU_LOCAL_DIR"


def local_root(home: Path) -> Path:
    """The shared root inside a local stack's home.

    >>> local_root(Path("/h"))
    PosixPath('/h/shared/node-update')
    """
    return home / "shared" / "node-update"


def local_dir_template(home: Path) -> str:
    """Each local-stack node's "local" directory (holding ``local.version``).

    >>> local_dir_template(Path("/h"))
    '/h/nodes/{node}'
    """
    return str(home / "nodes" / "{node}")


def load_config(
    env: Mapping[str, str] | None = None, base: Mapping[str, object] | None = None, home: Path | None = None
) -> NodeUpdateConfig:
    """The configuration from ``base`` (a Block's values) with environment overrides; errors name the variable.

    ``home`` is the local stack's home (default ``$OPSFLOW_HOME``): the root defaults to :func:`local_root` of it.
    Raises :class:`InputError` with one problem per bad value, naming the variable that set it.
    """
    env = os.environ if env is None else env
    values: dict[str, object] = {"root": local_root(home or default_home(env))}
    values.update({k: v for k, v in (base or {}).items() if k in FIELDS and v is not None})
    for field, var in ENV.items():
        if env.get(var):
            values[field] = env[var]
    try:
        return NodeUpdateConfig.model_validate(values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "(settings)"
            var = ENV.get(field, "")
            where = f"{var}={env[var]!r}" if var and env.get(var) else field
            problems.append((0, where, str(err["msg"])))
        raise InputError("node-update settings", problems) from None


def node_env(cfg: NodeUpdateConfig, env: Mapping[str, str] | None = None, home: Path | None = None) -> dict[str, str]:
    """What node-side commands (epilog, apply) need to find the root and their local directory.

    >>> node_env(NodeUpdateConfig(root=Path("/r")), env={}, home=Path("/h"))
    {'OPSFLOW_NU_ROOT': '/r', 'OPSFLOW_NU_LOCAL_DIR': '/h/nodes/{node}'}
    """
    env = os.environ if env is None else env
    out = {ENV["root"]: str(cfg.root)}
    out[LOCAL_DIR_ENV] = env.get(LOCAL_DIR_ENV) or local_dir_template(home or default_home(env))
    if cfg.check_command:
        out[ENV["check_command"]] = cfg.check_command
    return out


__all__ = ["ENV", "FIELDS", "LOCAL_DIR_ENV", "NodeUpdateConfig", "load_config", "local_dir_template", "local_root",
           "node_env"]  # fmt: skip
