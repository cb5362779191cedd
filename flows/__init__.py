"""One module per process, each a thin Prefect flow. A module never shares a name with a top-level package:
Prefect puts this folder on sys.path when it loads a flow by path, and the module would shadow the package."""
