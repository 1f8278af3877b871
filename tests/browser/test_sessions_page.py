"""A person looks at where they are signed in and signs their other device out (real Chromium, TLS)."""

from __future__ import annotations

from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests.accounts.session_helpers import served_sign_in
from tests.browser.conftest import sign_in

pytestmark = pytest.mark.django_db


def test_a_person_ends_their_other_sessions_from_the_sessions_page(browser: Any, served_app: Any) -> None:
    phone, _ = served_sign_in(served_app, "dr.house", agent="NeonPhone/2.1")
    sign_in(browser, served_app, "dr.house")

    browser.find_element(By.LINK_TEXT, "Sessions").click()
    WebDriverWait(browser, 15).until(expected_conditions.url_to_be(f"{served_app.url}/accounts/sessions/"))
    page = browser.find_element(By.TAG_NAME, "body").text
    assert "This session" in page and "NeonPhone/2.1" in page
    button = browser.find_element(By.XPATH, "//button[normalize-space()='End all other sessions']")
    button.click()
    WebDriverWait(browser, 15).until(expected_conditions.staleness_of(button))

    page = browser.find_element(By.TAG_NAME, "body").text
    assert "other session" in page and "NeonPhone/2.1" not in page and "CSRF" not in page
    assert len(browser.find_elements(By.CSS_SELECTOR, "tbody tr")) == 1
    assert phone.get("/api/v1/me/").status_code in (401, 403)  # the other device is signed out
    assert browser.get_cookie("__Host-sessionid") is not None
