"""The Slurm cluster the flows submit to and reserve nodes of."""

from __future__ import annotations

from pathlib import Path

from prefect.blocks.core import Block
from pydantic import Field

from opsflow.adapters.slurm import SlurmCLI


class SlurmCluster(Block):
    """How to reach a Slurm cluster through its command-line tools (`sinfo`, `sbatch`, `scontrol`, `srun`)."""

    _block_type_name = "Slurm Cluster"
    _block_type_slug = "opsflow-slurm-cluster"
    _description = "A Slurm cluster reached through its CLI tools on the worker host."

    conf_path: str | None = Field(
        default=None,
        description="slurm.conf to use (exported as SLURM_CONF); empty for the host's default configuration",
    )
    bin_dir: str | None = Field(
        default=None, description="Directory holding sinfo/sbatch/scontrol/srun; empty to search PATH"
    )
    partition: str = Field(default="batch", description="Partition jobs are submitted to")
    shared_dir: str = Field(
        description="A directory visible from the compute nodes and the worker host (job scripts and outputs)"
    )

    def cli(self) -> SlurmCLI:
        """The CLI adapter configured by this block."""
        return SlurmCLI(
            conf=Path(self.conf_path) if self.conf_path else None,
            bin_dir=Path(self.bin_dir) if self.bin_dir else None,
        )
