"""Signing in with a real browser, over TLS, as each kind of person who uses NeonPro.

Scripts and Django's test client send no ``Origin`` header, so they could not see that a
``no-referrer`` policy made Chromium send ``Origin: null`` on the sign-in form and fail
Django's CSRF check: only a browser catches that.
"""

from __future__ import annotations

from typing import Any

import pytest
from selenium.webdriver.common.by import By

from tests.browser.conftest import sign_in

# The served app runs on a clone of the test database, which pytest-django creates only for
# database tests.
pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("username", "role", "start"),
    [("dr.house", "Clinician", "/patients/"), ("patient.ada", "Patient", "/portal/"), ("admin", "Administrator", "/")],
)
def test_each_person_signs_in_and_lands_signed_in(
    browser: Any, served_app: Any, username: str, role: str, start: str
) -> None:
    sign_in(browser, served_app, username)

    assert browser.current_url == f"{served_app.url}{start}"  # where the role's work is
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "CSRF verification failed" not in body
    assert f"{username} · {role}" in browser.find_element(By.CSS_SELECTOR, "header .who").text
    session = browser.get_cookie("__Host-sessionid")
    assert session is not None and session["secure"] and session["httpOnly"]


def test_admin_reaches_the_admin_site_after_signing_in(browser: Any, served_app: Any) -> None:
    sign_in(browser, served_app, "admin")

    browser.get(f"{served_app.url}/admin/")
    assert browser.current_url == f"{served_app.url}/admin/"
    assert "Site administration" in browser.find_element(By.TAG_NAME, "body").text


def test_a_wrong_password_is_refused_with_a_message(browser: Any, served_app: Any) -> None:
    sign_in(browser, served_app, "dr.house", password="not the password at all")

    assert browser.current_url.startswith(f"{served_app.url}/accounts/login/")
    assert "didn't match" in browser.find_element(By.TAG_NAME, "body").text
    assert browser.get_cookie("__Host-sessionid") is None


def test_signing_out_ends_the_session(browser: Any, served_app: Any) -> None:
    sign_in(browser, served_app, "patient.ada")
    browser.find_element(By.XPATH, "//button[normalize-space()='Sign out']").click()

    browser.get(f"{served_app.url}/")
    assert browser.current_url.startswith(f"{served_app.url}/accounts/login/")
