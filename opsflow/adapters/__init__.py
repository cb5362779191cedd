"""Thin adapters to external systems (Slurm CLI, Spark, Prometheus, Docker API): all I/O lives here."""
