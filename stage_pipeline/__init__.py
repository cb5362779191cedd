"""Staged pipelines (the Winslow system as Prefect flows): definitions, projects, workspaces, runners, log scanning.

Pure cores (``definition``, ``models``, ``logscan``) are separate from the filesystem parts (``library``,
``store``, ``workspace``) and the process adapters (``runners``, ``monitor``).
"""
