"""Node update rollouts from a notebook or a script: ``opsflow.connect().node_update``.

Every ``opsflow nu`` operator command is one call of a :class:`NodeUpdateAPI` method, and a tick runs here, in
this process (:func:`node_update.tick.run_tick`: no flow run, no Prefect server needed for the local stack).

Where the configuration comes from, most specific first:

1. the environment: ``OPSFLOW_NU_ROOT``, ``OPSFLOW_NU_RES_LIMIT``, ``OPSFLOW_NU_RESERVATION``,
   ``OPSFLOW_NU_MAX_FAILURES``;
2. at a site (``PREFECT_API_URL`` set), or when a Block name is given (``using("name")``, ``--block``): the
   ``NodeUpdateSettings`` Block of that name, read over the REST API (no Prefect import), and the Slurm CLI of the
   ``SlurmCluster`` Block its ``slurm_block`` names;
3. the local stack under the site's home: the root ``<home>/shared/node-update`` and the stack's ``slurm.conf``
   (unless ``SLURM_CONF`` is set), so a notebook started without the stack's environment reaches its Slurm.

Example:
    >>> import opsflow, tempfile
    >>> from pathlib import Path
    >>> home, bundle = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
    >>> _ = (bundle / "update.sh").write_text("#!/bin/sh\\n"); (bundle / "update.sh").chmod(0o755)
    >>> nu = opsflow.connect(home).node_update        # a local stack that is not running: files only
    >>> nu.publish("20261201120000", nodes="nid[001-008]", bundle=bundle).nodes
    'nid[001-008]'
    >>> [u.codename for u in nu.updates()], list(nu.status())
    (['20261201120000'], [])
"""

from __future__ import annotations

import getpass
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import hostlist
from pydantic import ValidationError

from node_update import catalog as catalog_io
from node_update import spool
from node_update.config import FIELDS, load_config, node_env
from node_update.models import CanaryDecision, CatalogEntry, NodeUpdateConfig
from node_update.operator import NodeStatus, Resolution, hold_node, node_statuses, resolve_failure, unhold_node
from node_update.planner import done_nodes
from node_update.prefect_api import answer_approval
from node_update.simulate import SimulationConfig, SimulationResult, format_result
from node_update.simulate import simulate as run_simulation
from node_update.slurm import NodeUpdateSlurm
from node_update.tick import RolloutTimeout, TickReport, TickSummary, run_tick
from opsflow.adapters.slurm import SlurmCLI
from opsflow.errors import InputError
from opsflow.tables import Records, TableView

if TYPE_CHECKING:
    from opsflow.api import Site

#: Block type slugs (as the Blocks save themselves on a Prefect server).
SETTINGS_SLUG = "opsflow-node-update-settings"
SLURM_SLUG = "opsflow-slurm-cluster"


def _input_error(source: str, exc: ValidationError) -> InputError:
    """A keyword argument's bad value as the one input error (no line: it came from a call, not a file)."""
    return InputError(source, [(0, ".".join(str(p) for p in e["loc"]), str(e["msg"])) for e in exc.errors()])


class Update(TableView):
    """One active update of the catalog."""

    codename: str
    nodes: str
    node_count: int
    canary: int = 0
    approval: str = ""

    @classmethod
    def of(cls, entry: CatalogEntry) -> Update:
        return cls(
            codename=entry.codename,
            nodes=str(hostlist.collect_hostlist(entry.nodes)) if entry.nodes else "",
            node_count=len(entry.nodes),
            canary=entry.canary,
            approval=entry.approval,
        )


class SimulationReport(SimulationResult, TableView):
    """A simulated rollout (:func:`node_update.simulate.simulate`), shown as a table; ``str()`` is the CLI's text."""

    def __str__(self) -> str:
        return format_result(self)


class NodeUpdateAPI:
    """Publish, retire and list updates, tick, read node states, resolve failures, simulate and roll out.

    Build it from a Site (``opsflow.connect().node_update``); :meth:`using` gives one reading another Block.
    """

    def __init__(self, site: Site, block: str | None = None) -> None:
        self.site = site
        self.block = block

    def __repr__(self) -> str:
        return f"<NodeUpdateAPI of {self.site!r}{f', block {self.block!r}' if self.block else ''}>"

    def using(self, block: str | None) -> NodeUpdateAPI:
        """This API reading the ``NodeUpdateSettings`` Block ``block`` (None: this site's default)."""
        return self if block is None else NodeUpdateAPI(self.site, block)

    # --- where things are ------------------------------------------------------------------------------------
    @property
    def uses_blocks(self) -> bool:
        """Whether the configuration comes from Blocks (at a site, or a Block name was given)."""
        return self.block is not None or not self.site.is_local

    def _settings_values(self) -> dict[str, Any]:
        if not self.uses_blocks:
            return {}
        return self.site.block_values(SETTINGS_SLUG, self.block or self.site.block)

    def config(self, values: dict[str, Any] | None = None) -> NodeUpdateConfig:
        """The service's configuration: environment > Block values > the local stack's default.

        Raises :class:`opsflow.errors.InputError` naming the variable of a bad value.
        """
        values = self._settings_values() if values is None else values
        return load_config(base={k: values.get(k) for k in FIELDS}, home=self.site.home)

    def slurm(self, values: dict[str, Any] | None = None) -> NodeUpdateSlurm:
        """The Slurm commands of the cluster to update (its ``SlurmCluster`` Block, or the local stack's)."""
        if self.uses_blocks:
            values = self._settings_values() if values is None else values
            cluster = self.site.block_values(SLURM_SLUG, str(values.get("slurm_block") or self.site.block))
            conf, bin_dir = cluster.get("conf_path"), cluster.get("bin_dir")
            return NodeUpdateSlurm(
                SlurmCLI(conf=Path(conf) if conf else None, bin_dir=Path(bin_dir) if bin_dir else None)
            )
        local_conf = self.site.local.slurm_conf
        use_local = not os.environ.get("SLURM_CONF") and local_conf.exists()
        return NodeUpdateSlurm(SlurmCLI(conf=local_conf if use_local else None))

    # --- the catalog -----------------------------------------------------------------------------------------
    def publish(
        self,
        codename: str,
        *,
        nodes: str,
        bundle: str | Path | None = None,
        canary: int = 0,
        approve: bool = False,
    ) -> Update:
        """Publish an update for the nodes of a Slurm hostlist (F4, F5): copy ``bundle`` in, append its line.

        ``approve`` (needs ``canary``): once the canary nodes are DONE the rollout waits for :meth:`decide` (or the
        form of its ``node-update-approval`` run in the Prefect UI). Raises
        :class:`node_update.catalog.CatalogError` (bad input, nothing changed) naming the value and why.
        """
        root = self.config().root
        source = Path(bundle) if bundle else None
        return Update.of(catalog_io.publish(root, codename, nodes, canary=canary, bundle=source, approve=approve))

    def decide(
        self,
        codename: str,
        action: Literal["widen", "retire"] = "widen",
        *,
        res_limit: int | None = None,
        comment: str = "",
        by: str | None = None,
        timeout_s: float = 180.0,
    ) -> Update:
        """Answer a gated update once its canary is done: ``widen`` (optionally with a new ``res_limit``) or
        ``retire``, with a comment; returns the update as the catalog records it afterwards.

        The answer goes to the form of the update's waiting ``node-update-approval`` run (as the Prefect UI's
        Resume does; that run records it and waits up to ``timeout_s`` for it); with no such run (ticks run here,
        without Prefect) it is recorded in the catalog directly, where only the settings Block's flow can change
        ``res_limit``. Raises :class:`opsflow.errors.InputError` for a bad answer,
        :class:`node_update.catalog.CatalogError` when the update waits for no decision.
        """
        try:
            decision = CanaryDecision(action=action, res_limit=res_limit, comment=comment, by=by or getpass.getuser())
        except ValidationError as exc:
            raise _input_error("decide", exc) from None
        root = self.config().root
        entry = self._gated(root, codename)
        if answer_approval(root, entry.codename, decision, timeout_s=timeout_s) is None:
            if res_limit is not None:
                raise InputError("decide", [(0, "res_limit", "no approval run waits: it alone saves res_limit")])
            catalog_io.record_decision(root, entry.codename, decision, by=decision.by, at=time.time())
        deadline = time.monotonic() + timeout_s
        while (now := self._find(root, entry.codename)) is not None and now.approval == "pending":
            if time.monotonic() > deadline:
                raise RolloutTimeout(f"{codename}: the approval run did not record the answer in {timeout_s:.0f} s", [])
            time.sleep(0.5)
        return Update.of(now or entry.model_copy(update={"nodes": []}))

    @staticmethod
    def _find(root: Path, codename: str) -> CatalogEntry | None:
        return catalog_io.load_catalog(root).find(codename)

    def _gated(self, root: Path, codename: str) -> CatalogEntry:
        """The catalog entry of ``codename`` if it waits for a decision now (canary done); else say why."""
        entry = self._find(root, codename)
        if entry is None:
            raise catalog_io.UnknownCodenameError(f"{codename}: not in {catalog_io.catalog_path(root)}")
        if entry.approval != "pending":
            raise catalog_io.CatalogError(f"{codename}: waits for no decision (approval={entry.approval or 'none'})")
        done = len(done_nodes(entry.codename, entry.nodes, spool.load_ledger(root)))
        if done < entry.canary:
            raise catalog_io.CatalogError(f"{codename}: its canary is not done yet ({done} of {entry.canary} nodes)")
        return entry

    def retire(self, codename: str) -> Update:
        """Retire an update (F4): no node starts it any more; running applies finish.

        Raises :class:`node_update.catalog.UnknownCodenameError` when the catalog does not hold it.
        """
        return Update.of(catalog_io.retire(self.config().root, codename))

    def updates(self) -> Records[Update]:
        """The active updates, oldest line first. A catalog with a bad line raises the error naming it."""
        catalog = catalog_io.load_catalog(self.config().root)
        if catalog.error:
            raise catalog_io.CatalogError(catalog.error)
        return Records(Update.of(e) for e in catalog.entries)

    # --- ticks -----------------------------------------------------------------------------------------------
    def tick(self, dry_run: bool = False) -> TickReport:
        """One orchestrator tick, here and now: observe, plan, and unless ``dry_run`` act on Slurm."""
        values = self._settings_values()
        cfg = self.config(values)
        env = node_env(cfg, home=self.site.home)
        return run_tick(cfg, self.slurm(values), dry_run=dry_run, env=env)

    def rollout(self, max_ticks: int = 60, every_s: float = 5.0, progress: bool = True) -> Records[TickSummary]:
        """Tick every ``every_s`` seconds until every covered node has every active update (or is in FAIL).

        Returns one row per tick (state counts, progress) to plot; a progress bar (tqdm) shows the updated nodes
        unless ``progress=False``. Raises :class:`node_update.tick.RolloutTimeout` (its ``ticks`` hold the rows)
        when ``max_ticks`` ticks did not converge.
        """
        from tqdm.auto import tqdm

        rows: Records[TickSummary] = Records()
        with tqdm(total=0, unit="node", desc="node update", disable=not progress) as bar:
            for n in range(1, max_ticks + 1):
                row = self.tick().summary(tick=n)
                rows.append(row)
                bar.total, bar.n = row.covered, row.updated
                bar.set_postfix_str(f"ready {row.ready}, updating {row.updating}, fail {row.fail}", refresh=True)
                if row.converged:
                    return rows
                if n < max_ticks:
                    time.sleep(every_s)
        last = rows[-1] if rows else None
        where = f"{last.updated} of {last.covered} nodes updated, {last.fail} FAIL" if last else "no tick ran"
        raise RolloutTimeout(f"the rollout did not converge in {max_ticks} ticks: {where}", list(rows))

    # --- nodes -----------------------------------------------------------------------------------------------
    def status(self) -> Records[NodeStatus]:
        """Per node: state, level and reason, as the last tick left them."""
        return Records(node_statuses(spool.load_ledger(self.config().root)))

    def resolve(self, node: str, *, retry: bool = False, release: bool = False) -> NodeStatus:
        """Move a FAIL node on (the only way out of FAIL): ``retry`` its failed update, or ``release`` it without.

        Raises :class:`node_update.operator.UnknownNodeError` or ``NotFailedError``; the next tick acts on it.
        """
        if retry == release:
            raise InputError("resolve", [(0, "retry/release", "say exactly one of retry or release")])
        spool.safe_name(node)
        return resolve_failure(self.config().root, node, Resolution.RETRY if retry else Resolution.RELEASE)

    def hold(self, node: str, *, reason: str, out: bool = False, by: str | None = None) -> NodeStatus:
        """Keep ``node`` in the reservation (default; no update starts on it, it counts against res_limit) or,
        with ``out``, out of it, until :meth:`unhold`; applied by the next tick and shown by :meth:`status`."""
        spool.safe_name(node)
        return hold_node(self.config().root, node, "out" if out else "in", reason, by=by)

    def unhold(self, node: str) -> NodeStatus:
        """Lift an operator's hold on ``node`` (see :meth:`hold`)."""
        spool.safe_name(node)
        return unhold_node(self.config().root, node)

    # --- before publishing -----------------------------------------------------------------------------------
    def simulate(
        self,
        nodes: int = 7517,
        res_limit: int = 64,
        utilization: float = 0.99,
        mean_job_hours: float = 6.0,
        update_minutes: float = 10.0,
        tick_minutes: float = 1.0,
        seed: int = 1,
        saturated: bool = False,
        reserve_busy: bool = True,
    ) -> SimulationReport:
        """Predict a rollout's makespan with the real planner on a synthetic job trace, next to its lower bound.

        ``saturated``: a queue that never empties (a freed node goes to the next job at once unless reserved);
        ``reserve_busy``: the planner's setting (False: the old mechanism, idle nodes only).

        >>> import opsflow
        >>> opsflow.connect().node_update.simulate(nodes=20, res_limit=5, utilization=0.0).makespan_hours * 60
        44.0
        """
        try:
            cfg = SimulationConfig(
                nodes=nodes,
                res_limit=res_limit,
                utilization=utilization,
                mean_job_hours=mean_job_hours,
                update_minutes=update_minutes,
                tick_minutes=tick_minutes,
                seed=seed,
                saturated=saturated,
                reserve_busy=reserve_busy,
            )
        except ValidationError as exc:
            raise _input_error("simulate", exc) from None
        return SimulationReport.model_validate(run_simulation(cfg).model_dump())


__all__ = ["NodeUpdateAPI", "SimulationReport", "Update"]
