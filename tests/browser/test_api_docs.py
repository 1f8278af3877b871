"""The interactive API docs (/api/docs/) in a real browser, under the site's strict CSP.

Swagger UI must render every operation from our own static files (the sidecar: nothing from a
CDN, which the CSP would refuse anyway), and the page must cause no Content-Security-Policy
violation — neither an inline script or style nor an asset from elsewhere. Violations are
caught twice: by a ``securitypolicyviolation`` listener installed before any page script runs
(Chrome DevTools), and in the browser's console log, where Chromium reports each refusal.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.conftest import sign_in

pytestmark = pytest.mark.django_db

WATCH_CSP = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__csp.push(event.violatedDirective + " " + (event.blockedURI || "inline"));
});
"""


@pytest.fixture
def watched(browser: Any) -> Any:
    script = browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": WATCH_CSP})
    browser.get_log("browser")  # start from an empty console
    yield browser
    browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": script["identifier"]})


def open_docs(browser: Any, app: Any) -> list[Any]:
    browser.get(f"{app.url}/api/docs/")
    WebDriverWait(browser, 30).until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ".opblock")))
    return browser.find_elements(By.CSS_SELECTOR, ".opblock")  # type: ignore[no-any-return]


def violations(browser: Any) -> list[str]:
    reported = list(browser.execute_script("return window.__csp || []"))
    console = [entry["message"] for entry in browser.get_log("browser")]
    console = [message for message in console if "Content Security Policy" in message]
    return reported + console


def test_the_docs_render_every_operation_without_a_csp_violation(watched: Any, served_app: Any) -> None:
    operations = open_docs(watched, served_app)

    assert len(operations) >= 20
    assert "NeonPro Records API" in watched.find_element(By.CSS_SELECTOR, ".swagger-ui .info .title").text
    assert violations(watched) == []
    assets = watched.execute_script("return performance.getEntriesByType('resource').map((e) => e.name)")
    assert assets and {urlsplit(url).netloc for url in assets} == {urlsplit(served_app.url).netloc}


def test_signed_in_a_clinician_tries_an_operation_from_the_docs(watched: Any, served_app: Any) -> None:
    """Try it out on GET /api/v1/me/ with the session of the browser, as a person would."""
    sign_in(watched, served_app, "dr.house")
    open_docs(watched, served_app)
    me = watched.find_element(By.ID, "operations-me-me")
    me.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
    WebDriverWait(watched, 10).until(lambda _: me.find_elements(By.CSS_SELECTOR, ".try-out__btn"))
    me.find_element(By.CSS_SELECTOR, ".try-out__btn").click()
    me.find_element(By.CSS_SELECTOR, ".execute").click()
    WebDriverWait(watched, 15).until(lambda _: me.find_elements(By.CSS_SELECTOR, ".live-responses-table .response"))

    response = me.find_element(By.CSS_SELECTOR, ".live-responses-table .response")
    assert response.find_element(By.CSS_SELECTOR, ".response-col_status").text.strip() == "200"
    assert '"display_name": "dr.house"' in response.text
    assert violations(watched) == []
