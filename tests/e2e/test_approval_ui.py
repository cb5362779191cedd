"""The approval form answered the way an operator does: in the Prefect UI, with headless Chromium (selenium).

A project waits after its first stage; the test logs in to the UI (the server uses basic auth: the UI's login
page takes the auth string ``admin:<password>``), opens the suspended flow run, clicks Resume, asks for a redo with
a changed env and a comment, then answers the second form with continue. Selectors are what the UI shows: button
texts and the form's field labels (from the form's JSON schema). With OPSFLOW_SCREENSHOT set, the filled form is
also saved to docs/approval-form.png.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from blocks import PipelineStore, load_block
from opsflow.stack.config import StackConfig
from opsflow.stack.env import api_auth_string
from stage_pipeline.models import AttemptOutcome, Project, ProjectStatus
from stage_pipeline.prefect_api import flow_run_state, start_pipeline_run
from tests.e2e.pipeline_support import define, new_project, status_is, wait_for
from tests.support import unavailable, wait_until

pytestmark = pytest.mark.stack

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: The UI renders lazily on a loaded 2-core machine; explicit waits up to this long.
UI_WAIT_S = 60
#: Each decision starts the run's process again, then a stage's: ~40 s each here while other stacks run.
FLOW_WAIT_S = 300
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "approval-form.png"
# Selectors by what the UI shows (texts, field labels from the form's JSON schema) plus prefect-ui-library classes.
FIELD_LABEL = "//span[contains(@class, 'schema-form-property__label')]"
SUBMIT = "//div[contains(@class, 'p-modal__footer')]//button[normalize-space()='Submit']"
RESUMED_TOAST = "//*[contains(@class, 'p-toast__message')][contains(normalize-space(), 'Flow run resumed')]"
FAILED_TOAST = "//*[contains(@class, 'p-toast__message')][contains(normalize-space(), 'Something went wrong')]"

STAGES = """\
- name: first
  command: [sh, -c, 'echo "made by first: $GREETING" > data.txt']
  env: {GREETING: hello}
  approval: {mode: after, description: Check data.txt}
- name: second
  command: [sh, -c, 'cat data.txt']
"""


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    """Headless Debian Chromium; unavailable (fail in CI, skip elsewhere) when it cannot start."""
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        unavailable(f"{CHROMIUM} and {CHROMEDRIVER} are needed (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # --no-sandbox: the tests run as root, where Chromium's sandbox refuses to start.
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1600"):
        options.add_argument(arg)
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    except WebDriverException as exc:
        unavailable(f"chromium did not start: {exc.msg}")
    try:
        yield driver
    finally:
        driver.quit()


def log_in(driver: webdriver.Chrome, base: str, auth: str, path: str) -> None:
    """The UI's login page, redirecting to ``path``.

    Opened directly: a deep link opened without a password stored in the browser does not reliably land on the
    login page (the UI's 401 redirect races the page's own failed requests and may end on ``/``).
    """
    driver.get(f"{base}/login?redirect={path}")
    wait = WebDriverWait(driver, UI_WAIT_S)
    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "input[type=password][placeholder='admin:pass']")))
    driver.find_element(By.CSS_SELECTOR, "input[type=password]").send_keys(auth)
    driver.find_element(By.XPATH, "//form//button[@type='submit'][normalize-space()='Login']").click()
    wait.until(ec.url_contains(path))


def form_field(driver: webdriver.Chrome, label: str) -> WebElement:
    """The schema form's property whose label starts with ``label`` (``Action (Optional)`` etc.)."""
    return driver.find_element(
        By.XPATH,
        "//div[contains(concat(' ', normalize-space(@class), ' '), ' schema-form-property ')]"
        f"[.{FIELD_LABEL}[starts-with(normalize-space(), '{label}')]]",
    )


def resume_in_ui(
    driver: webdriver.Chrome, url: str, action: str, comment: str, env_json: str = "", shot: Path | None = None
) -> None:
    """Open the run's page, click Resume, fill the form, (screenshot it), submit; waits for the UI's confirmation.

    The local stack's Prefect server runs on SQLite, which now and then refuses the resume's state write under
    the full suite's load ("database is locked": a read transaction that cannot be upgraded is not retried by
    its busy timeout); the UI then says "Something went wrong" and the run stays paused. An operator submits
    again, and so does this, once, after checking the run did stay paused.
    """
    if not submit_resume_form(driver, url, action, comment, env_json, shot):
        run_id = url.rsplit("/", 1)[-1]
        assert flow_run_state(run_id) == "PAUSED", f"the UI's resume failed and the run is {flow_run_state(run_id)}"
        assert submit_resume_form(driver, url, action, comment, env_json, None), "the UI's resume failed twice"


def submit_resume_form(
    driver: webdriver.Chrome, url: str, action: str, comment: str, env_json: str, shot: Path | None
) -> bool:
    """One try of :func:`resume_in_ui`: True on the UI's "Flow run resumed", False on its error toast."""
    driver.get(url)
    wait = WebDriverWait(driver, UI_WAIT_S)
    wait.until(ec.element_to_be_clickable((By.XPATH, "//button[normalize-space()='Resume']"))).click()
    wait.until(
        ec.visibility_of_element_located((By.XPATH, f"{FIELD_LABEL}[starts-with(normalize-space(), 'Comment')]"))
    )
    Select(form_field(driver, "Action").find_element(By.TAG_NAME, "select")).select_by_value(action)
    if env_json:
        form_field(driver, "Env").find_element(By.TAG_NAME, "textarea").send_keys(env_json)
    form_field(driver, "Comment").find_element(By.TAG_NAME, "textarea").send_keys(comment)
    if shot is not None:
        driver.find_element(By.CSS_SELECTOR, ".p-modal__card").screenshot(str(shot))
    driver.find_element(By.XPATH, SUBMIT).click()
    toast = wait.until(ec.visibility_of_any_elements_located((By.XPATH, f"{RESUMED_TOAST} | {FAILED_TOAST}")))
    return "Flow run resumed" in toast[0].text


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
        resume_in_ui(browser, url, "redo", "redo from the UI", '{"GREETING": "from-ui"}', shot=shot)
        p = wait_for(
            projects, "uiapprove1", lambda q: q.status == ProjectStatus.WAITING and len(q.history) == 2, FLOW_WAIT_S
        )
        assert waiting_run(p) == run_id  # the same run re-entered and asks again after the redo
        resume_in_ui(browser, url, "continue", "ok from the UI")
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
