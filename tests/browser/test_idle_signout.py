"""An idle page warns, "Stay signed in" keeps the session, and without activity the page
signs out on its own (real Chromium, TLS, a served app with a 16-second idle limit)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.conftest import IDLE_SECONDS, WARN_SECONDS, sign_in, wait_for

pytestmark = pytest.mark.django_db


def _warning_open(browser: Any) -> bool:
    return bool(browser.execute_script("return document.getElementById('idle-warning').open"))


def test_an_idle_session_is_warned_kept_on_request_then_signed_out(browser: Any, idle_app: Any) -> None:
    sign_in(browser, idle_app, "dr.house")
    browser.get(f"{idle_app.url}/accounts/sessions/")
    assert browser.current_url == f"{idle_app.url}/accounts/sessions/", browser.find_element(By.TAG_NAME, "body").text[
        :600
    ]
    wait_for(browser, "#idle-warning")
    opened = time.monotonic()
    assert not _warning_open(browser)

    WebDriverWait(browser, IDLE_SECONDS + 5).until(_warning_open)
    # The warning comes WARN_SECONDS before the end, not at once, and takes the focus.
    assert time.monotonic() - opened >= IDLE_SECONDS - WARN_SECONDS - 2
    stay = browser.find_element(By.ID, "idle-stay")
    assert browser.switch_to.active_element == stay
    countdown = int(browser.find_element(By.ID, "idle-countdown").text)
    assert 0 < countdown <= WARN_SECONDS
    stay.click()
    WebDriverWait(browser, 5).until(lambda driver: not _warning_open(driver))
    kept = time.monotonic()

    # Past the time the first page's session would have ended, it is still signed in ...
    WebDriverWait(browser, IDLE_SECONDS + 5).until(_warning_open)
    assert time.monotonic() - opened > IDLE_SECONDS
    # ... and left alone now, the page signs itself out and says why.
    WebDriverWait(browser, WARN_SECONDS + 5).until(expected_conditions.url_contains("/accounts/login/?idle=1"))
    assert time.monotonic() - kept >= IDLE_SECONDS - 2
    assert "signed out after a time without activity" in browser.find_element(By.ID, "signed-out-idle").text
    browser.get(f"{idle_app.url}/accounts/sessions/")
    assert browser.current_url.startswith(f"{idle_app.url}/accounts/login/")  # ended on the server too
