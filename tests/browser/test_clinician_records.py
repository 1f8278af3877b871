"""A clinician writes a record and books, moves and cancels an appointment (real Chromium, TLS).

Everything here adds rows (a record, an appointment for a day no demo row uses) and leaves the
demo's own rows as they were. The chart page is another page's: this test goes on by URL.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.conftest import screenshot, sign_in, submit, wait_for

pytestmark = pytest.mark.django_db


def _json(browser: Any, url: str) -> Any:
    """An API answer as the signed-in browser gets it (Chromium shows JSON in a <pre>)."""
    browser.get(url)
    return json.loads(wait_for(browser, "pre").text)


def _set(browser: Any, field_id: str, value: str) -> None:
    field = browser.find_element(By.ID, field_id)
    field.clear()
    field.send_keys(value)


def _set_datetime(browser: Any, field_id: str, value: str) -> None:
    # A datetime-local input takes keys segment by segment, in the browser's locale: set its
    # value as the date picker would.
    browser.execute_script("arguments[0].value = arguments[1]", browser.find_element(By.ID, field_id), value)


def _row(browser: Any, reason: str) -> Any:
    """The schedule's row of the appointment booked for ``reason``."""
    return browser.find_element(By.XPATH, f"//tr[td[normalize-space()='{reason}']]")


def test_a_clinician_writes_a_record_and_books_moves_and_cancels_an_appointment(browser: Any, served_app: Any) -> None:
    url = served_app.url
    sign_in(browser, served_app, "dr.house")
    [ben] = [p["id"] for p in _json(browser, f"{url}/api/v1/patients/") if p["full_name"] == "Ben Sample"]
    marker = f"Browser test {uuid.uuid4().hex[:8]}"

    # A record: a lab value that is not a number is refused next to its field, nothing saved.
    browser.get(f"{url}/patients/{ben}/records/new/")
    _set(browser, "id_diagnosis", marker)
    _set(browser, "id_allergies", "Penicillin (rash)")
    _set(browser, "id_lab-0-name", "eosinophils")
    _set(browser, "id_lab-0-value", "0,4")
    _set(browser, "id_lab-0-unit", "10^9/L")
    submit(browser)
    error = wait_for(browser, ".field.invalid #id_lab-0-value_error")
    assert error.text == "Enter a number."
    assert browser.find_element(By.ID, "id_diagnosis").get_attribute("value") == marker  # kept as typed
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", error)
    screenshot(browser, "record-form")

    _set(browser, "id_lab-0-value", "0.4")  # fixed: the rest of the form is as it was typed
    submit(browser)
    assert browser.current_url == f"{url}/patients/{ben}/"  # the chart
    # One record: the refused attempt saved nothing.
    [written] = [r for r in _json(browser, f"{url}/api/v1/patients/{ben}/records/") if r["diagnosis"] == marker]
    assert written["lab_results"] == {"eosinophils": {"value": 0.4, "unit": "10^9/L"}}
    assert written["allergies"] == "Penicillin (rash)"
    browser.get(f"{url}/records/{written['id']}/")
    page = wait_for(browser, "main").text
    assert marker in page and "Created (version 1)" in page and "Penicillin (rash)" in page

    # An appointment on a day of its own: booked (confirmed), then moved, then cancelled.
    schedule = "/appointments/?from=2031-03-04&to=2031-03-05"
    browser.get(f"{url}/patients/{ben}/appointments/new/?next={schedule.replace('&', '%26')}")
    _set_datetime(browser, "id_scheduled_at", "2031-03-04T09:30")
    _set(browser, "id_reason", marker)
    submit(browser)
    assert browser.current_url == f"{url}{schedule}"
    row = _row(browser, marker)
    assert "2031-03-04 09:30 UTC" in row.text and "Ben Sample" in row.text and "Confirmed" in row.text
    assert "was booked" in browser.find_element(By.CSS_SELECTOR, ".messages").text
    browser.get(f"{url}/appointments/")
    wait_for(browser, "table")
    screenshot(browser, "schedule")

    browser.get(f"{url}{schedule}")
    _row(browser, marker).find_element(By.LINK_TEXT, "Reschedule").click()
    WebDriverWait(browser, 15).until(expected_conditions.url_contains("/reschedule/"))
    _set_datetime(browser, "id_scheduled_at", "2031-03-05T10:15")
    submit(browser)
    assert browser.current_url == f"{url}{schedule}"
    assert "2031-03-05 10:15 UTC" in _row(browser, marker).text

    cancel = _row(browser, marker).find_element(By.XPATH, ".//button[normalize-space()='Cancel']")
    cancel.click()
    WebDriverWait(browser, 15).until(expected_conditions.alert_is_present()).accept()  # "Cancel this appointment?"
    WebDriverWait(browser, 15).until(expected_conditions.staleness_of(cancel))
    row = _row(browser, marker)
    assert "Cancelled" in row.text and not row.find_elements(By.XPATH, ".//button")
    assert "was cancelled" in browser.find_element(By.CSS_SELECTOR, ".messages").text
