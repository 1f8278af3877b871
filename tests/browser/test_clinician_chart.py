"""A clinician's patient pages in a real browser (Chromium, TLS 1.3, the served app's demo data):
find a patient by SSN, open the chart and reveal the SSN; break the glass for a patient outside
the care team and end it; and sign in and search with the keyboard alone."""

from __future__ import annotations

import re
import secrets
from typing import Any

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.conftest import screenshot, sign_in, submit, wait_for
from tests.served import totp_code

pytestmark = pytest.mark.django_db
REASON = "Collapsed in the waiting room; her care team cannot be reached"
BANNER = re.compile(r"Emergency access — read-only — until \d\d:\d\d UTC \(\d+ minutes? left\)")


def _body(browser: Any) -> str:
    return str(browser.find_element(By.TAG_NAME, "body").text)


def _click_and_wait(browser: Any, element: Any) -> None:
    element.click()
    WebDriverWait(browser, 15).until(expected_conditions.staleness_of(element))


def _demo_patient_id(served_app: Any, username: str) -> str:
    """The id of the demo patient linked to ``username``'s portal account (as an operator reads it)."""
    script = (
        "from neonpro.security.context import system_context\n"
        "from patients.models import Patient\n"
        "with system_context('browser test: a demo patient id'):\n"
        f"    print(Patient.objects.get(user__username='{username}').pk)\n"
    )
    answer = served_app.manage("shell", "-c", script)
    assert answer.returncode == 0, answer.stderr
    return str(answer.stdout.strip().splitlines()[-1])


def test_dr_house_finds_ben_by_ssn_without_dashes_and_reveals_it(browser: Any, served_app: Any) -> None:
    sign_in(browser, served_app, "dr.house")
    _click_and_wait(browser, browser.find_element(By.LINK_TEXT, "My patients"))
    assert browser.current_url == f"{served_app.url}/patients/"
    rows = [row.text for row in browser.find_elements(By.CSS_SELECTOR, "tbody tr")]
    assert any("Ada Demo" in row and "MRN-000101" in row for row in rows)
    assert any("Ben Sample" in row and "1979-11-02" in row and " UTC" in row for row in rows), rows
    screenshot(browser, "patients-list")

    browser.find_element(By.ID, "id_value").send_keys("900120002")  # SSN is the default field
    submit(browser)
    assert browser.current_url == f"{served_app.url}/patients/search/", "results come back on the POST"
    _click_and_wait(browser, browser.find_element(By.LINK_TEXT, "Ben Sample"))

    assert browser.find_element(By.ID, "ssn").text == "***-**-0002"
    assert "Seasonal allergic rhinitis (demo)" in _body(browser) and "Cetirizine 10 mg" in _body(browser)
    assert "Penicillin (rash)" in browser.find_element(By.ID, "allergies-title").find_element(By.XPATH, "..").text
    screenshot(browser, "patient-chart")
    _click_and_wait(browser, browser.find_element(By.ID, "reveal-ssn"))
    assert browser.find_element(By.ID, "ssn").text == "900-12-0002"
    assert "900" not in browser.current_url and browser.current_url.endswith("/reveal-ssn/")


def test_dr_grey_gets_the_404_breaks_the_glass_and_ends_it(browser: Any, served_app: Any) -> None:
    chart = f"/patients/{_demo_patient_id(served_app, 'patient.ada')}/"
    sign_in(browser, served_app, "dr.grey")
    browser.get(f"{served_app.url}{chart}")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Not found" and "Ada" not in _body(browser)

    # Break-glass wants a recent re-authentication: the page it sends to (a fresh sign-in
    # counts as one, so the test goes there itself, as it would after a few minutes).
    browser.get(f"{served_app.url}/accounts/reauth/?next={chart}")
    browser.find_element(By.ID, "id_password").send_keys(served_app.credentials["dr.grey"])
    browser.find_element(By.ID, "id_token").send_keys(totp_code(served_app.totp_secrets["dr.grey"], account="dr.grey"))
    submit(browser)
    assert browser.current_url == f"{served_app.url}{chart}"

    browser.find_element(By.CSS_SELECTOR, "a[data-opens='emergency-dialog']").click()
    is_open = "return document.getElementById('emergency-dialog').open"
    WebDriverWait(browser, 15).until(lambda b: b.execute_script(is_open))
    assert browser.switch_to.active_element.get_attribute("id") == "emergency_reason", "the dialog focuses the reason"
    browser.switch_to.active_element.send_keys(REASON)
    browser.find_element(By.ID, "emergency_minutes").send_keys("15")
    browser.find_element(By.CSS_SELECTOR, "#emergency-dialog button[type=submit]").click()

    banner = wait_for(browser, ".banner.emergency[role=alert]")
    assert BANNER.search(banner.text), banner.text
    assert browser.current_url == f"{served_app.url}{chart}"
    assert "Ada Demo" in _body(browser) and "Book an appointment" not in _body(browser)
    screenshot(browser, "break-glass-banner")

    _click_and_wait(browser, banner.find_element(By.XPATH, ".//button[normalize-space()='End emergency access']"))
    assert browser.current_url == f"{served_app.url}/patients/" and "Emergency access ended." in _body(browser)
    browser.get(f"{served_app.url}{chart}")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Not found"


def _new_clinician(served_app: Any) -> tuple[str, str, str]:
    """A clinician of this test's own (no care team), with an authenticator: (name, password, secret)."""
    username, password = f"dr.keys{secrets.token_hex(3)}", secrets.token_urlsafe(16)
    script = (
        "from neonpro.accounts.models import User; from neonpro.accounts.mfa import enrol_with_secret; "
        f"print(enrol_with_secret(User.objects.create_user(username='{username}', password='{password}', "
        "role='clinician')))"
    )
    answer = served_app.manage("shell", "-c", script)
    assert answer.returncode == 0, answer.stderr
    return username, password, answer.stdout.strip().splitlines()[-1]


def _tab_to(browser: Any, element_id: str, *, limit: int = 12) -> list[str]:
    """Press Tab until ``element_id`` has the focus; every form control passed on the way, and
    the one reached, has a label naming it. Returns what took the focus, in order."""
    seen = []
    for _ in range(limit):
        ActionChains(browser).send_keys(Keys.TAB).perform()
        focused = browser.switch_to.active_element
        seen.append(focused.get_attribute("id") or focused.text)
        if focused.tag_name in ("input", "select", "textarea"):
            label = browser.find_element(By.CSS_SELECTOR, f"label[for='{focused.get_attribute('id')}']")
            assert label.is_displayed() and label.text.strip(), f"{seen[-1]} has no visible label"
        if focused.get_attribute("id") == element_id:
            return seen
    raise AssertionError(f"Tab never reached #{element_id}: {seen}")


def _type(browser: Any, *keys: str) -> None:
    ActionChains(browser).send_keys(*keys).perform()


def _wait_for_url(browser: Any, url: str) -> None:
    WebDriverWait(browser, 15).until(expected_conditions.url_to_be(url))


def test_sign_in_and_search_with_the_keyboard_alone(browser: Any, served_app: Any) -> None:
    username, password, secret = _new_clinician(served_app)
    browser.get(f"{served_app.url}/accounts/login/")

    _tab_to(browser, "id_username")
    _type(browser, username)
    assert _tab_to(browser, "id_password", limit=1) == ["id_password"]
    _type(browser, password, Keys.ENTER)
    _wait_for_url(browser, f"{served_app.url}/accounts/login/verify/")
    _tab_to(browser, "id_token")
    _type(browser, totp_code(secret, account=username), Keys.ENTER)
    _wait_for_url(browser, f"{served_app.url}/patients/")  # where clinicians start

    for _ in range(12):
        ActionChains(browser).send_keys(Keys.TAB).perform()
        if browser.switch_to.active_element.text == "Find a patient":
            break
    else:
        raise AssertionError("Tab never reached the Find a patient link")
    _type(browser, Keys.ENTER)
    _wait_for_url(browser, f"{served_app.url}/patients/search/")
    _tab_to(browser, "id_field")
    _type(browser, "m")  # a focused select: the first option starting with M
    assert browser.switch_to.active_element.get_attribute("value") == "mrn"
    assert _tab_to(browser, "id_value", limit=1) == ["id_value"]
    _type(browser, "mrn-000102", Keys.ENTER)

    status = wait_for(browser, "#results-title + p[role=status]")
    assert status.text == "No patient in your care has that MRN.", "searched, and RLS kept Ben Sample out"
    assert browser.current_url == f"{served_app.url}/patients/search/"
