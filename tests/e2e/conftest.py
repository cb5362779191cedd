"""Fixtures of the end-to-end tests that more than one module uses."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from selenium import webdriver

from tests.e2e.ui_support import chromium


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    """Headless Chromium for the Prefect UI (:func:`tests.e2e.ui_support.chromium`)."""
    with chromium() as driver:
        yield driver
