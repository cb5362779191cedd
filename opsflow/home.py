"""Where this installation keeps its state and its own console script: the one place that reads OPSFLOW_HOME.

The local stack (``opsflow.stack``) lays out everything it starts under this directory; code outside the stack
asks this module for the directory and never builds stack paths itself.

Example:
    >>> default_home({"OPSFLOW_HOME": "/srv/opsflow"})
    PosixPath('/srv/opsflow')
    >>> opsflow_script().endswith("/opsflow")
    True
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

HOME_VAR = "OPSFLOW_HOME"
DEFAULT_HOME = Path(".state")


def default_home(env: Mapping[str, str] | None = None) -> Path:
    """The state directory: ``$OPSFLOW_HOME`` or ``./.state``, always absolute."""
    env = os.environ if env is None else env
    return Path(env.get(HOME_VAR) or str(DEFAULT_HOME)).resolve()


def opsflow_script() -> str:
    """The `opsflow` console script of this installation (what slurmd, epilogs and jobs run)."""
    return str(Path(sys.executable).parent / "opsflow")
