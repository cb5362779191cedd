"""Settings of the Node Update service (the CSCS NU service) as a Block, editable in the Prefect UI."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field

from node_update.settings import NodeUpdateConfig, resolve


class NodeUpdateSettings(Block):
    """Where the update bundles and the catalog live, and how fast a rollout may go.

    Each field can be overridden by an environment variable (OPSFLOW_NU_ROOT, OPSFLOW_NU_RES_LIMIT,
    OPSFLOW_NU_RESERVATION, OPSFLOW_NU_MAX_FAILURES).
    """

    _block_type_name = "Node Update Settings"
    _block_type_slug = "opsflow-node-update-settings"
    _description = "Shared root, reservation and limits of the node update rollout."

    root: str | None = Field(
        default=None, description="Shared directory holding updates/, active-updates.list and the spool"
    )
    res_limit: int = Field(default=4, ge=1, description="RES_LIMIT: most nodes in the reservation at once (F6)")
    reservation: str = Field(default="node_update", description="Name of the single Slurm reservation (F9)")
    max_failures: int = Field(
        default=3, ge=1, description="FAIL nodes of one update after which it starts on no new node"
    )
    slurm_block: str = Field(default="local", description="Name of the SlurmCluster block of the cluster to update")

    def resolved(self) -> NodeUpdateConfig:
        """These values with the environment's overrides applied."""
        return resolve(base=self.model_dump(include={"root", "res_limit", "reservation", "max_failures"}))
