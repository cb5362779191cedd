"""Answering a suspended flow run's form in the Prefect UI with headless Chromium (selenium), as an operator does.

The server uses basic auth: the UI's login page takes the auth string ``admin:<password>``. Selectors are what the
UI shows: button texts and the form's field labels (from the form's JSON schema), plus prefect-ui-library classes.
The ``browser`` fixture (tests/e2e/conftest.py) starts Chromium.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from opsflow.adapters.prefect_runs import flow_run_state
from tests.support import unavailable

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: The UI renders lazily on a loaded 2-core machine; explicit waits up to this long.
UI_WAIT_S = 60
FIELD_LABEL = "//span[contains(@class, 'schema-form-property__label')]"
SUBMIT = "//div[contains(@class, 'p-modal__footer')]//button[normalize-space()='Submit']"
RESUMED_TOAST = "//*[contains(@class, 'p-toast__message')][contains(normalize-space(), 'Flow run resumed')]"
FAILED_TOAST = "//*[contains(@class, 'p-toast__message')][contains(normalize-space(), 'Something went wrong')]"


@contextmanager
def chromium() -> Iterator[webdriver.Chrome]:
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
    driver: webdriver.Chrome, url: str, fields: dict[str, str], shot: Path | None = None, wait_label: str = "Comment"
) -> None:
    """Open the run's page, click Resume, fill the form (a select takes the value by name, a textarea or input
    the text), (screenshot it), submit; waits for the UI's confirmation.

    The local stack's Prefect server runs on SQLite, which now and then refuses the resume's state write under
    the full suite's load ("database is locked": a read transaction that cannot be upgraded is not retried by
    its busy timeout); the UI then says "Something went wrong" and the run stays paused. An operator submits
    again, and so does this, once, after checking the run did stay paused.
    """
    if not submit_resume_form(driver, url, fields, shot, wait_label):
        run_id = url.rsplit("/", 1)[-1]
        assert flow_run_state(run_id) == "PAUSED", f"the UI's resume failed and the run is {flow_run_state(run_id)}"
        assert submit_resume_form(driver, url, fields, None, wait_label), "the UI's resume failed twice"


def submit_resume_form(
    driver: webdriver.Chrome, url: str, fields: dict[str, str], shot: Path | None, wait_label: str
) -> bool:
    """One try of :func:`resume_in_ui`: True on the UI's "Flow run resumed", False on its error toast."""
    driver.get(url)
    wait = WebDriverWait(driver, UI_WAIT_S)
    wait.until(ec.element_to_be_clickable((By.XPATH, "//button[normalize-space()='Resume']"))).click()
    wait.until(
        ec.visibility_of_element_located((By.XPATH, f"{FIELD_LABEL}[starts-with(normalize-space(), '{wait_label}')]"))
    )
    for label, value in fields.items():
        field = form_field(driver, label)
        selects = field.find_elements(By.TAG_NAME, "select")
        if selects:
            Select(selects[0]).select_by_value(value)
        else:
            field.find_element(By.CSS_SELECTOR, "textarea, input").send_keys(value)
    if shot is not None:
        driver.find_element(By.CSS_SELECTOR, ".p-modal__card").screenshot(str(shot))
    driver.find_element(By.XPATH, SUBMIT).click()
    toast = wait.until(ec.visibility_of_any_elements_located((By.XPATH, f"{RESUMED_TOAST} | {FAILED_TOAST}")))
    return "Flow run resumed" in toast[0].text


def form_links(driver: webdriver.Chrome, url: str, wait_label: str = "Comment") -> dict[str, str]:
    """Open the run's Resume form and return its description's links (text → href) and inline images (alt → src)."""
    driver.get(url)
    wait = WebDriverWait(driver, UI_WAIT_S)
    wait.until(ec.element_to_be_clickable((By.XPATH, "//button[normalize-space()='Resume']"))).click()
    wait.until(
        ec.visibility_of_element_located((By.XPATH, f"{FIELD_LABEL}[starts-with(normalize-space(), '{wait_label}')]"))
    )
    card = driver.find_element(By.CSS_SELECTOR, ".p-modal__card")
    found = {a.text.strip(): a.get_attribute("href") or "" for a in card.find_elements(By.TAG_NAME, "a") if a.text}
    for img in card.find_elements(By.TAG_NAME, "img"):
        found[f"img:{img.get_attribute('alt')}"] = img.get_attribute("src") or ""
    return found


def image_loads(driver: webdriver.Chrome, url: str) -> tuple[int, int]:
    """Open ``url`` as the browser's page and return the image's natural size ((0, 0): it did not load)."""
    driver.get(url)
    size = driver.execute_script(
        "const i = document.images[0]; return i && i.complete ? [i.naturalWidth, i.naturalHeight] : [0, 0];"
    )
    return int(size[0]), int(size[1])
