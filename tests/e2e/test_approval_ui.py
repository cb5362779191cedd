"""The approval form answered the way an operator does: in the Prefect UI, with headless Chromium (selenium).

A project waits after its first stage; the test logs in to the UI, opens the suspended flow run, clicks Resume,
asks for a redo with a changed env and a comment, then answers the second form with continue (the helpers:
tests/e2e/ui_support.py). With OPSFLOW_SCREENSHOT set, the filled form is also saved to docs/approval-form.png.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from selenium import webdriver

from blocks import PipelineStore, load_block
from opsflow.stack.config import StackConfig
from opsflow.stack.env import api_auth_string
from stage_pipeline.models import AttemptOutcome, Project, ProjectStatus
from stage_pipeline.prefect_api import flow_run_state, start_pipeline_run
from tests.e2e.pipeline_support import define, new_project, status_is, wait_for
from tests.e2e.ui_support import form_links, image_loads, log_in, resume_in_ui
from tests.support import wait_until

pytestmark = pytest.mark.stack

DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "approval-form.png"
#: Each decision starts the run's process again, then a stage's: ~40 s each here while other stacks run.
FLOW_WAIT_S = 300

#: A 1x1 PNG: the first stage's "chart", which the form links to through the file service.
DOT_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="

STAGES = f"""\
- name: first
  command: [sh, -c, 'echo "made by first: $GREETING" > data.txt && printf %s {DOT_PNG} | base64 -d > dot.png']
  env: {{GREETING: hello}}
  approval: {{mode: after, description: Check data.txt and dot.png}}
- name: second
  command: [sh, -c, 'cat data.txt']
"""


def waiting_run(project: Project) -> str:
    assert project.waiting is not None, f"{project.name} waits for nothing: {project.status} {project.reason}"
    run_id = project.waiting.run_id
    assert wait_until(lambda: flow_run_state(run_id) == "PAUSED", timeout_s=30), flow_run_state(run_id)
    return run_id


def test_redo_then_continue_answered_in_the_prefect_ui(
    browser: webdriver.Chrome, stack: StackConfig, tmp_path: Path
) -> None:
    pipelines = load_block(PipelineStore, "local")
    define(pipelines, "uiapprove", STAGES)
    projects = new_project(pipelines, "uiapprove1", "uiapprove")
    start_pipeline_run("uiapprove1")
    run_id = waiting_run(wait_for(projects, "uiapprove1", status_is(ProjectStatus.WAITING), FLOW_WAIT_S))
    base = f"http://127.0.0.1:{stack.prefect_port}"
    url = f"{base}/runs/flow-run/{run_id}"
    shot = tmp_path / "approval-form.png"
    try:
        log_in(browser, base, api_auth_string(stack), f"/runs/flow-run/{run_id}")
        # The form links to the attempt's files through the file service; the image opens without a password.
        links = form_links(browser, url)
        assert links.get("dot.png", "").startswith(f"{stack.files_url}/files/projects/uiapprove1/"), links
        assert "data.txt" in links, links
        assert image_loads(browser, links["dot.png"]) == (1, 1)
        assert image_loads(browser, links["dot.png"].replace("sig=", "sig=0")) == (0, 0)  # a forged link: 401
        redo = {"Action": "redo", "Env": '{"GREETING": "from-ui"}', "Comment": "redo from the UI"}
        resume_in_ui(browser, url, redo, shot=shot)
        p = wait_for(
            projects, "uiapprove1", lambda q: q.status == ProjectStatus.WAITING and len(q.history) == 2, FLOW_WAIT_S
        )
        assert waiting_run(p) == run_id  # the same run re-entered and asks again after the redo
        resume_in_ui(browser, url, {"Action": "continue", "Comment": "ok from the UI"})
    except Exception as exc:
        browser.save_screenshot(str(tmp_path / "failure.png"))
        (tmp_path / "failure.html").write_text(browser.page_source)
        exc.add_note(f"browser state: {tmp_path}/failure.png, failure.html; filled form: {shot}")
        raise
    finally:
        if os.environ.get("OPSFLOW_SCREENSHOT") and shot.exists():
            DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
            shutil.copyfile(shot, DOCS_SCREENSHOT)
    p = wait_for(projects, "uiapprove1", status_is(ProjectStatus.FINISHED, ProjectStatus.PAUSED), FLOW_WAIT_S)
    assert p.status == ProjectStatus.FINISHED, p.reason
    assert wait_until(lambda: flow_run_state(run_id) == "COMPLETED", timeout_s=60), flow_run_state(run_id)
    assert [(a.stage, a.attempt, a.outcome, a.comment) for a in p.history] == [
        ("first", 1, AttemptOutcome.SUCCEEDED, "redo from the UI"),
        ("first", 2, AttemptOutcome.SUCCEEDED, "ok from the UI"),
        ("second", 1, AttemptOutcome.SUCCEEDED, ""),
    ]
    assert [a.env["GREETING"] for a in p.attempts_of("first")] == ["hello", "from-ui"]
    assert "made by first: from-ui" in projects.log_path("uiapprove1", "second", 1).read_text()
