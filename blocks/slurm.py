"""The Slurm cluster the flows submit to and reserve nodes of.

Example:
    >>> cluster = SlurmCluster(shared_dir="/tmp/shared", conf_path="/etc/slurm/slurm.conf")
    >>> cluster.get_client().conf
    PosixPath('/etc/slurm/slurm.conf')
"""

from __future__ import annotations

from pathlib import Path

from prefect.blocks.core import Block
from pydantic import Field

from blocks._docs import readme_section
from opsflow.adapters.slurm import SlurmCLI


class SlurmCluster(Block):
    """How to reach a Slurm cluster through its command-line tools (`sinfo`, `sbatch`, `scontrol`, `srun`).

    Examples:
        Load a saved cluster and read its nodes:
        ```python
        from blocks import SlurmCluster

        slurm_cluster = SlurmCluster.load("BLOCK_NAME")
        nodes = slurm_cluster.get_client().nodes()
        ```
    """

    _block_type_name = "Slurm Cluster"
    _block_type_slug = "opsflow-slurm-cluster"
    _description = "A Slurm cluster reached through its CLI tools on the worker host."
    _documentation_url = readme_section("Pointing the same code at a site")

    conf_path: str | None = Field(
        default=None,
        description="slurm.conf to use (exported as SLURM_CONF); empty for the host's default configuration.",
        examples=["/etc/slurm/slurm.conf"],
    )
    bin_dir: str | None = Field(
        default=None, description="Directory holding sinfo/sbatch/scontrol/srun; empty to search PATH."
    )
    partition: str = Field(default="batch", description="Partition jobs are submitted to.")
    shared_dir: str = Field(
        description="A directory visible from the compute nodes and the worker host (job scripts and outputs).",
        examples=["/scratch/opsflow"],
    )

    def get_client(self) -> SlurmCLI:
        """The CLI adapter configured by this block (runs nothing until one of its commands is called)."""
        return SlurmCLI(
            conf=Path(self.conf_path) if self.conf_path else None,
            bin_dir=Path(self.bin_dir) if self.bin_dir else None,
        )
