"""On a tablet in portrait (768 by 1024 CSS pixels) the pages fit the screen: nothing to scroll
sideways except inside a table's own box, and the inputs are big enough to touch, inside their card."""

from __future__ import annotations

from typing import Any

import pytest
from selenium.webdriver.common.by import By

from tests.browser.conftest import screenshot, sign_in, wait_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def tablet(browser: Any) -> Any:
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": 768, "height": 1024, "deviceScaleFactor": 1, "mobile": True}
    )
    try:
        yield browser
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def _fits(browser: Any) -> bool:
    return bool(browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth"))


def test_the_clinician_pages_fit_a_tablet(tablet: Any, served_app: Any) -> None:
    sign_in(tablet, served_app, "dr.house")
    assert tablet.execute_script("return window.innerWidth") == 768
    wait_for(tablet, "main table")
    assert _fits(tablet)
    screenshot(tablet, "patients-tablet")
    tablet.find_element(By.LINK_TEXT, "Ben Sample").click()
    wait_for(tablet, "dl.facts")
    assert _fits(tablet), "the chart scrolls sideways on a tablet"
    tablet.get(f"{served_app.url}/patients/search/")
    field = wait_for(tablet, "#id_value")
    card = tablet.find_element(By.CSS_SELECTOR, "main .card")
    assert field.size["width"] >= 240 and field.size["height"] >= 32  # big enough for a finger
    assert field.rect["x"] + field.rect["width"] <= card.rect["x"] + card.rect["width"]  # inside the card
    assert _fits(tablet)


def test_the_portal_fits_a_tablet(tablet: Any, served_app: Any) -> None:
    sign_in(tablet, served_app, "patient.ada")
    wait_for(tablet, "main .card")
    assert tablet.current_url == f"{served_app.url}/portal/"
    assert _fits(tablet)
