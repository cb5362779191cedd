"""One module per process, each a thin Prefect flow wiring a core to its adapters."""
