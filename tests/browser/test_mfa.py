"""Second factor in a real browser: enrolment with the QR code the app draws, codes, lock-out."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from selenium.webdriver.common.by import By

from tests.browser.conftest import sign_in, submit
from tests.served import totp_code

pytestmark = pytest.mark.django_db


def test_a_new_clinician_enrols_with_the_qr_code_and_signs_in(browser: Any, served_app: Any) -> None:
    password = secrets.token_urlsafe(16)
    made = served_app.manage(
        "shell",
        "-c",
        "from neonpro.accounts.models import User; "
        f"User.objects.create_user(username='dr.new', password='{password}', role='clinician')",
    )
    assert made.returncode == 0, made.stderr

    sign_in(browser, served_app, "dr.new", password)

    assert browser.current_url.startswith(f"{served_app.url}/accounts/login/enrol/")
    qr = browser.find_element(By.ID, "totp-qr")
    assert qr.get_attribute("src").startswith("data:image/svg+xml")
    assert browser.execute_script("return arguments[0].naturalWidth", qr) > 0, "drawn: the CSP allows it"
    secret = browser.find_element(By.ID, "totp-secret").text.replace(" ", "")
    browser.find_element(By.ID, "id_token").send_keys(totp_code(secret, account="dr.new"))
    submit(browser)
    codes = browser.find_elements(By.CSS_SELECTOR, "#recovery-codes li")
    assert len(codes) == 10
    browser.find_element(By.ID, "continue").click()
    assert browser.find_element(By.CSS_SELECTOR, "header .who").text == "dr.new · Clinician"  # signed in


def test_a_wrong_code_is_refused_with_a_message(browser: Any, served_app: Any) -> None:
    # An account of its own: a wrong code throttles the next try of that account for a second.
    password = secrets.token_urlsafe(16)
    made = served_app.manage(
        "shell",
        "-c",
        "from neonpro.accounts.models import User; from neonpro.accounts.mfa import enrol_with_secret; "
        f"enrol_with_secret(User.objects.create_user(username='pat.code', password='{password}', role='patient'))",
    )
    assert made.returncode == 0, made.stderr

    sign_in(browser, served_app, "pat.code", password, code="000000")

    assert browser.current_url.startswith(f"{served_app.url}/accounts/login/verify/")
    assert "not right" in browser.find_element(By.TAG_NAME, "body").text
    assert browser.get_cookie("__Host-sessionid") is not None  # the pending step only: not signed in
    browser.get(f"{served_app.url}/")
    assert browser.current_url.startswith(f"{served_app.url}/accounts/login/")


def test_repeated_failures_show_the_lock_out_message(browser: Any, served_app: Any) -> None:
    for _ in range(5):
        sign_in(browser, served_app, "nobody.at.all", password="not a password at all")

    body = browser.find_element(By.TAG_NAME, "body").text
    assert "Too many failed sign-in attempts" in body and "administrator to unlock" in body
