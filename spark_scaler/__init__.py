"""Spark worker autoscaling (the thesis Auto-Scaler): core, metric sources, worker backends. Built by its own issue."""
