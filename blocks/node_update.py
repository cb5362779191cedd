"""Settings of the Node Update service (the CSCS NU service) as a Block, editable in the Prefect UI.

Example:
    >>> NodeUpdateSettings(root="/shared/node-update", res_limit=2).resolved(env={}).res_limit
    2
"""

from __future__ import annotations

from collections.abc import Mapping

from prefect.blocks.core import Block
from pydantic import Field

from blocks._docs import readme_section
from node_update.config import FIELDS, NodeUpdateConfig, load_config


class NodeUpdateSettings(Block):
    """Where the update bundles and the catalog live, and how fast a rollout may go.

    Each field can be overridden by an environment variable (OPSFLOW_NU_ROOT, OPSFLOW_NU_RES_LIMIT,
    OPSFLOW_NU_RESERVATION, OPSFLOW_NU_MAX_FAILURES, OPSFLOW_NU_RESERVE_BUSY, OPSFLOW_NU_CHECK_COMMAND).

    Examples:
        Load the saved settings, with the environment's overrides applied:
        ```python
        from blocks import NodeUpdateSettings

        node_update_settings = NodeUpdateSettings.load("BLOCK_NAME")
        config = node_update_settings.resolved()
        ```
    """

    _block_type_name = "Node Update Settings"
    _block_type_slug = "opsflow-node-update-settings"
    _description = "Shared root, reservation and limits of the node update rollout."
    _documentation_url = readme_section("Node update rollout (the CSCS Node Update service)")

    root: str | None = Field(
        default=None,
        description="Shared directory holding updates/, active-updates.list and the spool.",
        examples=["/scratch/node-update"],
    )
    res_limit: int = Field(default=4, ge=1, description="RES_LIMIT: most nodes in the reservation at once (F6).")
    reservation: str = Field(default="node_update", description="Name of the single Slurm reservation (F9).")
    max_failures: int = Field(
        default=3, ge=1, description="FAIL nodes of one update after which it starts on no new node."
    )
    reserve_busy: bool = Field(
        default=True,
        description="Slots no idle node takes go to busy nodes whose jobs end soonest (a saturated machine).",
    )
    check_command: str = Field(
        default="",
        description="Site-wide health check run on each node after its update scripts; non-zero exit: FAIL.",
        examples=["/opt/nlm/bin/node-health --quick"],
    )
    slurm_block: str = Field(default="local", description="Name of the SlurmCluster block of the cluster to update.")

    def resolved(self, env: Mapping[str, str] | None = None) -> NodeUpdateConfig:
        """These values with the environment's overrides applied (``env``: default ``os.environ``)."""
        return load_config(env, base=self.model_dump(include=set(FIELDS)))
