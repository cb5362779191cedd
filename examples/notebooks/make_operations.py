"""Writes ``operations.ipynb`` (unexecuted) from the cells below: the notebook's source of truth, kept readable.

Run: ``.venv/bin/python examples/notebooks/make_operations.py``; ``tests/e2e/test_notebook.py`` executes the
notebook against the local stack and checks this file still produces it.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
NOTEBOOK = HERE / "operations.ipynb"

CELLS: list[tuple[str, str]] = [
    ("md", """\
# Operating the centre from a notebook

The same calls as the `opsflow` CLI, on the local stack (`opsflow up`) or, with `PREFECT_API_URL` set, on a site:
a node update rollout on Slurm, a pipeline project whose approval is answered here, and a look at the Spark
auto-scaler's next decision. Run it from this folder (`examples/notebooks`)."""),
    ("code", """\
import time

import opsflow
from node_update import codename_at

site = opsflow.connect()
site"""),
    ("md", """\
## Node update rollout

Publish an update for the 8 nodes of the local Slurm. The rollout goes through one reservation that never holds
more than `res_limit` nodes; each tick makes one Slurm snapshot and at most one reservation change."""),
    ("code", """\
codename = codename_at(time.time())
site.node_update.publish(codename, nodes="nid[001-008]", bundle="../node_update/bundle")"""),
    ("code", """\
site.node_update.tick(dry_run=True)  # what the next tick would do; changes nothing"""),
    ("code", """\
history = site.node_update.rollout(max_ticks=60, every_s=2)
history.to_frame()[["tick", "reservation", "idle", "ready", "updating", "done", "fail", "updated", "covered"]]"""),
    ("code", """\
frame = history.to_frame()
ax = frame.plot(x="tick", y=["ready", "updating", "done", "updated"], drawstyle="steps-post", marker="o",
                title=f"rollout of {codename}")
ax.set_ylabel("nodes");"""),
    ("code", """\
status = site.node_update.status()
converged = history[-1].converged and all(s.level == codename for s in status)
print("rollout converged:", converged)
status"""),
    ("md", """\
## A pipeline project, approved from here

Two stages; the first asks for an approval. `wait` blocks (with a progress bar) until the project waits for the
decision, then `answer` resumes it, as the form in the Prefect UI would."""),
    ("code", """\
site.pipelines.save('''
name: notebook-demo
description: two stages and an approval answered from the notebook
stages:
  - name: count
    command: [sh, -c, 'seq 1 5 > numbers.txt; echo counted 5 numbers']
    approval: {mode: after, description: Check numbers.txt}
  - name: total
    command: [sh, -c, 'echo total $(( $(paste -sd+ numbers.txt) )) | tee total.txt']
''')
project = site.pipelines.create(f"notebook-{codename}", pipeline="notebook-demo")
project.start()"""),
    ("code", """\
decision = project.wait(until="waiting", timeout=300)
decision"""),
    ("code", """\
project.files("count")"""),
    ("code", """\
project.answer("continue", comment="five numbers, as expected")
final = project.wait(until="finished", timeout=300)
print("project status:", final.status.value)
print("\\n".join(project.logs("total")))"""),
    ("code", """\
project.history()"""),
    ("md", """\
## The Spark auto-scaler

What the next Monitor → Analyse → Plan → Execute tick would decide for this configuration, without acting, and
the controller's persisted state."""),
    ("code", """\
scaler = site.scaler("../spark_scaler/autoscaler.yaml")
scaler.preview()"""),
    ("code", """\
scaler.status()"""),
]


def build() -> nbformat.NotebookNode:
    """The notebook as ``CELLS`` describe it, without outputs."""
    cells = [new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in CELLS]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    for index, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{index:02d}"  # stable ids: the file does not change from one build to the next
    return nb


if __name__ == "__main__":
    nbformat.write(build(), NOTEBOOK)
    print(f"wrote {NOTEBOOK}")
