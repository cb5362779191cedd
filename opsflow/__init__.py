"""opsflow: Prefect flows for the operations of a GPU/HPC computing centre, and its local stack."""
