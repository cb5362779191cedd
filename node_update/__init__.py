"""Node update rollout (the CSCS Node Update service): core, Slurm adapter, node-side hooks. Built by its own issue."""
