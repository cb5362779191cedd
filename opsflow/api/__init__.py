"""The Python API: one entry point, ``connect()``, and a :class:`Site` with one handle per process.

A notebook or a script drives the same code as the CLI (every `opsflow` command is one call of this API) and the
flows (the handles call the subsystems' public functions and start the same deployments):

    import opsflow
    site = opsflow.connect()                  # the local stack, or PREFECT_API_URL + the Blocks of a site
    site.node_update.status()                 # per-node records; .to_frame() gives a DataFrame
    site.pipelines.projects()                 # projects with their status
    site.scaler("examples/spark_scaler/autoscaler.yaml").preview()

Where things are: with ``PREFECT_API_URL`` set (or ``api_url=`` given) every Prefect call goes to that server,
with ``PREFECT_API_AUTH_STRING`` (or ``auth_string=``), and the subsystems read their Blocks (named ``block``,
default ``local``) from it; without it, the local stack under ``home`` (``$OPSFLOW_HOME``, ``./.state``).
Nothing here starts a server.

Example:
    >>> site = connect(home="/tmp/no-stack-here", api_url="http://127.0.0.1:1/api")
    >>> site.api_url, site.is_local
    ('http://127.0.0.1:1/api', False)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsflow.errors import AdapterError, NotFoundError

if TYPE_CHECKING:
    from opsflow.adapters.prefect_rest import PrefectRest
    from opsflow.api.ci import CiAPI
    from opsflow.api.files import FilesAPI
    from opsflow.api.node_update import NodeUpdateAPI
    from opsflow.api.nodes import NodesAPI
    from opsflow.api.pipelines import PipelinesAPI
    from opsflow.api.scaler import ScalerAPI
    from opsflow.api.trials import TrialsAPI
    from opsflow.stack.env import LocalEndpoints


class Site:
    """A connection to one installation: its Prefect API, its Blocks and, for the local stack, its home.

    Build it with :func:`connect`. Handles: :attr:`node_update`, :attr:`nodes`, :attr:`pipelines`, :meth:`scaler`.
    """

    def __init__(self, api_url: str, auth_string: str | None, block: str, home: Path, is_local: bool) -> None:
        self.api_url = api_url
        self._auth_string = auth_string
        self.block = block
        self.home = home
        self.is_local = is_local

    def __repr__(self) -> str:  # never shows the auth string
        where = f"local stack at {self.home}" if self.is_local else "site"
        return f"<Site {where}: {self.api_url}>"

    # --- Prefect -----------------------------------------------------------------------------------------------
    @contextmanager
    def prefect(self) -> Iterator[None]:
        """Point this process's Prefect client at this site for the ``with`` block (imports Prefect)."""
        from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

        updates: dict[Any, Any] = {PREFECT_API_URL: self.api_url}
        if self._auth_string:
            updates[PREFECT_API_AUTH_STRING] = self._auth_string
        with temporary_settings(updates=updates):
            yield

    def rest(self) -> PrefectRest:
        """A few REST calls against this site's Prefect API without importing Prefect (answering a form)."""
        from opsflow.adapters.prefect_rest import PrefectRest

        return PrefectRest(self.api_url, self._auth_string)

    def start_deployment(self, deployment: str, parameters: dict[str, Any]) -> tuple[str, str, str]:
        """Create a run of ``deployment`` (``flow/deployment``) on this site; returns at once: id, name, UI link.

        An unknown deployment is a :class:`NotFoundError` naming ``opsflow deploy``; an unreachable API an
        :class:`AdapterError`.
        """
        import httpx

        with self.prefect():
            from prefect.deployments import run_deployment
            from prefect.exceptions import ObjectNotFound

            try:
                flow_run: Any = run_deployment(deployment, parameters=parameters, timeout=0, _sync=True)  # type: ignore[call-arg]
            except ObjectNotFound as exc:
                raise NotFoundError(
                    f"no deployment {deployment} on {self.api_url}; apply them with `opsflow deploy`"
                ) from exc
            except (httpx.ConnectError, httpx.TimeoutException) as exc:
                raise AdapterError(f"cannot reach the Prefect API at {self.api_url}: {exc}") from exc
        ui = self.api_url.removesuffix("/api")
        return str(flow_run.id), str(flow_run.name), f"{ui}/runs/flow-run/{flow_run.id}"

    def _http_auth(self) -> tuple[str, str] | None:
        if not self._auth_string:
            return None
        user, _, password = self._auth_string.partition(":")
        return user, password

    def block_values(self, block_type_slug: str, name: str | None = None) -> dict[str, Any]:
        """The saved values of a Block document, read over the REST API without importing Prefect (fast).

        Secret fields come back obfuscated; use :meth:`load_block` for a Block whose secrets are needed.
        """
        import httpx

        name = name or self.block
        url = f"{self.api_url}/block_types/slug/{block_type_slug}/block_documents/name/{name}"
        try:
            r = httpx.get(url, auth=self._http_auth(), timeout=10.0)
        except httpx.HTTPError as exc:
            raise AdapterError(f"cannot reach the Prefect API at {self.api_url}: {exc}") from exc
        if r.status_code == 404:
            raise NotFoundError(f"no {block_type_slug} block named {name!r} on {self.api_url}")
        if r.status_code == 401:
            raise AdapterError(f"the Prefect API at {self.api_url} refused the credentials (401)")
        if r.status_code >= 400:
            raise AdapterError(f"the Prefect API at {self.api_url} answered {r.status_code}: {r.text[:200]}")
        data: dict[str, Any] = r.json().get("data", {})
        return data

    def load_block(self, cls: Any, name: str | None = None) -> Any:
        """``cls.load(name)`` against this site (imports Prefect)."""
        with self.prefect():
            return cls.load(name or self.block, _sync=True)  # a Jupyter kernel runs an event loop: stay sync

    # --- handles -----------------------------------------------------------------------------------------------
    @cached_property
    def node_update(self) -> NodeUpdateAPI:
        """Node update rollouts: publish, retire, tick, status, resolve, simulate."""
        from opsflow.api.node_update import NodeUpdateAPI

        return NodeUpdateAPI(self)

    @cached_property
    def nodes(self) -> NodesAPI:
        """Node monitoring: every node's published CPU, memory, network and GPUs, joined with the workers."""
        from opsflow.api.nodes import NodesAPI

        return NodesAPI(self)

    @cached_property
    def pipelines(self) -> PipelinesAPI:
        """Staged pipelines: definitions and projects (create, start, wait, answer, logs, files)."""
        from opsflow.api.pipelines import PipelinesAPI

        return PipelinesAPI(self)

    @cached_property
    def files(self) -> FilesAPI:
        """The pipelines' file service: resumable uploads (tus), ranged downloads, listings."""
        from opsflow.api.files import FilesAPI

        return FilesAPI.of(self)

    @cached_property
    def ci(self) -> CiAPI:
        """CI-triggered training: the GitLabProject Blocks, the ci-training runs, commit statuses."""
        from opsflow.api.ci import CiAPI

        return CiAPI(self)

    @cached_property
    def trials(self) -> TrialsAPI:
        """Configuration trials: validate, run (the config-trial deployment), report, calibrate."""
        from opsflow.api.trials import TrialsAPI

        return TrialsAPI(self)

    def scaler(self, config: str | Path, blocks: str | None = None) -> ScalerAPI:
        """The Spark auto-scaler of one configuration file: preview, tick, status, run; ``blocks``: the Blocks
        to read Prometheus and the Spark master from when the file names none."""
        from opsflow.api.scaler import ScalerAPI

        return ScalerAPI(self, Path(config), blocks=blocks)

    @cached_property
    def local(self) -> LocalEndpoints:
        """The local stack's endpoints (its Spark, Prometheus, Docker engine) under :attr:`home`."""
        from opsflow.stack.env import local_endpoints

        return local_endpoints(self.home)


def connect(
    home: str | Path | None = None,
    *,
    api_url: str | None = None,
    auth_string: str | None = None,
    block: str = "local",
) -> Site:
    """Connect to the local stack, or to a site's Prefect server; starts nothing, contacts nothing yet.

    Precedence: ``api_url`` > ``$PREFECT_API_URL`` > the local stack under ``home`` (``$OPSFLOW_HOME``, ``./.state``).
    ``block``: the name of the Blocks the handles read (``local`` as the stack saves them).
    """
    from opsflow.home import default_home

    root = Path(home).resolve() if home is not None else default_home()
    url = api_url or os.environ.get("PREFECT_API_URL")
    if url:
        auth = auth_string if auth_string is not None else os.environ.get("PREFECT_API_AUTH_STRING")
        return Site(url.rstrip("/"), auth, block, root, is_local=False)
    from opsflow.stack.env import local_endpoints

    local = local_endpoints(root)
    return Site(local.prefect_api_url, auth_string or local.prefect_auth_string, block, root, is_local=True)


__all__ = ["Site", "connect"]
