"""The operations notebook, executed by nbclient in a real ipykernel against the local stack.

The kernel sees only OPSFLOW_HOME (no PREFECT_API_URL, no SLURM_CONF): ``opsflow.connect()`` must find the stack
by itself, as it does for a user who opens the notebook next to a running `opsflow up`.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from examples.notebooks.make_operations import NOTEBOOK, build
from opsflow.stack.config import StackConfig

pytestmark = pytest.mark.stack

STRIPPED = ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING", "SLURM_CONF", "OPSFLOW_NU_ROOT", "OPSFLOW_NU_LOCAL_DIR")


def outputs_of(cell: nbformat.NotebookNode) -> str:
    """All text a code cell showed: streams, results (text and HTML) and errors."""
    parts: list[str] = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type in ("execute_result", "display_data"):
            parts += [str(out.data.get(kind, "")) for kind in ("text/plain", "text/html", "text/markdown")]
        elif out.output_type == "error":
            parts.append("\n".join(out.traceback))
    return "\n".join(parts)


def test_the_committed_notebook_is_the_one_the_script_builds() -> None:
    committed = nbformat.read(NOTEBOOK, as_version=4)
    assert [c.source for c in committed.cells] == [c.source for c in build().cells]
    assert all(not c.get("outputs") for c in committed.cells if c.cell_type == "code"), "commit it without outputs"


def test_operations_notebook_runs_green_against_the_stack(
    stack: StackConfig, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OPSFLOW_HOME", str(stack.home))
    for var in STRIPPED:
        monkeypatch.delenv(var, raising=False)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    try:
        client.execute()
    finally:
        nbformat.write(nb, tmp_path / "operations.executed.ipynb")  # kept for a look when it fails
    text = {i: outputs_of(c) for i, c in enumerate(nb.cells) if c.cell_type == "code"}
    everything = "\n".join(text.values())

    assert "rollout converged: True" in everything, everything[-3000:]
    plan = next(t for t in text.values() if "dry_run" in t or "would" in t.lower())
    assert "<table" in plan, "the dry-run plan renders as a table in Jupyter"
    assert any(
        "image/png" in out.get("data", {}) for c in nb.cells for out in c.get("outputs", [])
    ), "the rollout's progress plot is shown"
    assert "project status: FINISHED" in everything, everything[-3000:]
    assert "total 15" in everything, "the second stage ran on the approved output of the first"
    assert "numbers.txt" in everything, "the first stage's workspace files are listed"
    preview = [t for t in text.values() if "policy" in t.lower()]
    assert preview, "the scaler preview shows the policy in force and its decision"
