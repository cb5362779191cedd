"""A warm, pre-imported Prefect engine per worker node: a flow run starts as a fork instead of a cold interpreter.

Issue 15: each flow run of the process worker is ``python -m prefect.engine``, 4-5 s of imports on a small node,
paid by every stage. Here the worker's command is :mod:`warm_engine.launcher` (``opsflow-engine``, set in the
deployments' job variables): a stdlib-only client that hands its stdin/stdout/stderr, environment and working
directory to the node's :mod:`warm_engine.zygote` over a unix socket. The zygote has imported Prefect and the
project's flows once; it forks, and the child runs the very same ``prefect.engine`` main the cold command would.
The launcher stays the worker's process for the run: it forwards signals to the child and exits with its status,
so cancellation, crash detection and logs are the worker's as before. Without a zygote (none started on the
node, or its code is older than the files on disk) the launcher execs the cold command: nothing else changes.

This package's ``__init__`` imports nothing, so the launcher starts in milliseconds.
"""
