"""Ada uses the patient portal in a real browser (Chromium, TLS): her own record only, her phone
number, an appointment request she then cancels, and the download of all her data."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.browser.conftest import screenshot, sign_in, submit, wait_for

pytestmark = pytest.mark.django_db
OTHERS = ("Ben Sample", "Cleo Test", "MRN-000102", "MRN-000103")


def body_text(browser: Any) -> str:
    return str(browser.find_element(By.TAG_NAME, "body").text)


def change_phone(browser: Any, app: Any, phone: str) -> str:
    """Set the phone number on the contact page; the number it had before."""
    browser.get(f"{app.url}/portal/contact/")
    field = wait_for(browser, "#id_phone")
    before = str(field.get_attribute("value"))
    field.clear()
    field.send_keys(phone)
    submit(browser)
    assert browser.current_url == f"{app.url}/portal/", body_text(browser)
    return before


def test_ada_sees_her_record_changes_her_phone_requests_and_cancels_and_downloads(
    browser: Any, served_app: Any, tmp_path: Path
) -> None:
    sign_in(browser, served_app, "patient.ada")
    browser.find_element(By.LINK_TEXT, "My record").click()
    WebDriverWait(browser, 15).until(expected_conditions.url_to_be(f"{served_app.url}/portal/"))
    page = body_text(browser)
    assert "Ada Demo" in page and "MRN-000101" in page and "***-**-0001" in page and "900-12-0001" not in page
    assert "Seasonal allergic rhinitis (demo)" in page and "Follow-up (demo)" in page
    assert not [other for other in OTHERS if other in browser.page_source]
    screenshot(browser, "portal")

    original = change_phone(browser, served_app, "+1 555 0199")
    try:
        assert "+1 555 0199" in browser.find_element(By.ID, "details").text
    finally:
        change_phone(browser, served_app, original)
    assert original in browser.find_element(By.ID, "details").text

    reason = f"Browser test request {uuid.uuid4().hex[:8]}"
    browser.find_element(By.LINK_TEXT, "Request an appointment").click()
    Select(wait_for(browser, "#id_provider")).select_by_visible_text("dr.house")
    when = (dt.datetime.now(dt.UTC) + dt.timedelta(days=40)).replace(hour=10, minute=30)
    moment = browser.find_element(By.ID, "id_scheduled_at")
    browser.execute_script("arguments[0].value = arguments[1]", moment, when.strftime("%Y-%m-%dT%H:%M"))
    browser.find_element(By.ID, "id_reason").send_keys(reason)
    submit(browser)
    assert "Your request was sent" in body_text(browser)
    row = browser.find_element(By.XPATH, f"//tr[td[normalize-space()='{reason}']]")
    assert "dr.house" in row.text and "Requested" in row.text and when.strftime("%Y-%m-%d 10:30") in row.text

    row.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(browser, 15).until(expected_conditions.alert_is_present()).accept()
    WebDriverWait(browser, 15).until(expected_conditions.staleness_of(row))
    assert "The appointment is cancelled." in body_text(browser)
    row = browser.find_element(By.XPATH, f"//tr[td[normalize-space()='{reason}']]")
    assert "Cancelled" in row.text and not row.find_elements(By.CSS_SELECTOR, "button")

    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)})
    try:
        browser.find_element(By.LINK_TEXT, "Download my data").click()
        wait_for(browser, "#download-export").click()
        [download] = WebDriverWait(browser, 20).until(lambda _: list(tmp_path.glob("*.json")))
    finally:
        browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "default"})
    assert re.fullmatch(r"neonpro-export-\d{4}-\d{2}-\d{2}\.json", download.name)
    bundle = json.loads(download.read_text())
    assert bundle["patient"]["mrn"] == "MRN-000101" and bundle["patient"]["full_name"] == "Ada Demo"
    assert any(a["reason"] == reason and a["status"] == "cancelled" for a in bundle["appointments"])
    assert not [other for other in OTHERS if other in download.read_text()]
