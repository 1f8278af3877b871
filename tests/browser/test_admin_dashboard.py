"""The administrator's security dashboard and the audit log, in a real browser 1280 px wide."""

from __future__ import annotations

from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.conftest import screenshot, sign_in, wait_for

pytestmark = pytest.mark.django_db


def test_admin_verifies_the_audit_chain_from_the_dashboard(browser: Any, served_app: Any) -> None:
    sign_in(browser, served_app, "admin")  # the admin's sign-in is the site's (password, then code)
    browser.get(f"{served_app.url}/admin/")
    assert "NeonPro Records administration" in browser.find_element(By.ID, "header").text
    browser.find_element(By.ID, "security-dashboard-link").click()
    WebDriverWait(browser, 15).until(expected_conditions.url_to_be(f"{served_app.url}/admin/security/dashboard/"))
    for panel in ("keys", "reencryption", "audit", "break-glass", "denied", "signin"):
        assert browser.find_element(By.ID, f"panel-{panel}").is_displayed()
    assert browser.find_elements(By.CSS_SELECTOR, "#chart-denied svg rect.bar")

    button = browser.find_element(By.XPATH, "//button[normalize-space()='Verify the audit chain']")
    button.click()
    WebDriverWait(browser, 15).until(expected_conditions.staleness_of(button))

    message = wait_for(browser, ".messagelist .success").text
    assert message.startswith("Audit chain intact:") and message.endswith("events verified.")
    assert "intact" in browser.find_element(By.ID, "audit-verification").text
    assert "by admin" in browser.find_element(By.ID, "audit-verification").text
    screenshot(browser, "admin-dashboard")


def test_the_audit_log_scrolls_sideways_at_1280_px_instead_of_being_cut_off(browser: Any, served_app: Any) -> None:
    sign_in(browser, served_app, "admin")
    browser.set_window_size(1280, 900)
    browser.get(f"{served_app.url}/admin/audit/auditevent/")
    wait_for(browser, "#result_list")
    box = browser.execute_script(
        """
        const results = document.querySelector('#changelist-form .results');
        const last = document.querySelector('#result_list thead th:last-child');
        results.scrollLeft = results.scrollWidth;
        const box = results.getBoundingClientRect(), cell = last.getBoundingClientRect();
        return {
            overflowX: getComputedStyle(results).overflowX, wider: results.scrollWidth > results.clientWidth,
            boxRight: box.right, viewport: document.documentElement.clientWidth,
            pageScrolls: document.documentElement.scrollWidth > document.documentElement.clientWidth,
            lastRight: cell.right, lastLeft: cell.left,
        };
        """
    )
    assert box["overflowX"] == "auto" and box["wider"], f"the table is wider than its box, which scrolls: {box}"
    assert box["boxRight"] <= box["viewport"] and not box["pageScrolls"], "the table's box stays within the page"
    assert box["lastLeft"] >= 0 and box["lastRight"] <= box["boxRight"] + 1, "the last column can be reached"
