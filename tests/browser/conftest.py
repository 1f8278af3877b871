"""One real headless Chromium for the session, driven through Debian's chromedriver.

The browser trusts exactly the served app's development certificate (its SPKI pin), nothing
else, so a test that reaches a page has passed a real TLS 1.3 handshake and certificate
check. Each test starts with no cookies and no storage.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def spki_pin(cert_path: Path) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)) of a PEM certificate, as Chromium's pin flags want it."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.fixture(scope="session")
def chromium(served_app: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for binary in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(binary):
            pytest.fail(f"{binary} is missing: `make tools` installs Debian's chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
        f"--ignore-certificate-errors-spki-list={spki_pin(served_app.cert)}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser(chromium: Any, served_app: Any) -> Iterator[Any]:
    """The session's Chromium, with no cookies or storage left from an earlier test."""

    def forget() -> None:
        chromium.execute_cdp_cmd("Network.clearBrowserCookies", {})
        chromium.execute_cdp_cmd("Storage.clearDataForOrigin", {"origin": served_app.url, "storageTypes": "all"})

    forget()
    yield chromium
    forget()


def submit(browser: Any) -> None:
    """Click the form's submit button and wait for the next page."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    button = browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]")
    button.click()

    def next_page(driver: Any) -> bool:
        try:
            return bool(expected_conditions.staleness_of(button)(driver))
        except WebDriverException as exc:  # Chromium, mid-navigation: "Node ... does not belong to the document"
            if "does not belong to the document" in str(exc):
                return True
            raise

    WebDriverWait(browser, 15).until(next_page)  # the next page loaded


def sign_in(browser: Any, app: Any, username: str, password: str | None = None, *, code: str | None = None) -> None:
    """Fill in and submit the sign-in form as a person would (keyboard into the fields, click),
    then, when the code step follows, the current code of the account's authenticator
    (computed from its secret, as the app on a phone would; ``code`` types another)."""
    from selenium.webdriver.common.by import By

    from tests.served import totp_code

    browser.get(f"{app.url}/accounts/login/")
    browser.find_element(By.ID, "id_username").send_keys(username)
    browser.find_element(By.ID, "id_password").send_keys(password or app.credentials[username])
    submit(browser)
    if browser.current_url.startswith(f"{app.url}/accounts/login/verify/"):
        token = code if code is not None else totp_code(app.totp_secrets[username], account=username)
        browser.find_element(By.ID, "id_token").send_keys(token)
        submit(browser)


def screenshot(browser: Any, name: str) -> bytes:
    """A PNG of the page as it is now; saved as docs/screenshots/<name>.png when
    NEONPRO_SCREENSHOTS_DIR names a folder (`make screenshots`: the README's pictures, of
    demo data only)."""
    import os

    png: bytes = browser.get_screenshot_as_png()
    folder = os.environ.get("NEONPRO_SCREENSHOTS_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"{name}.png").write_bytes(png)
    return png


def wait_for(browser: Any, css: str, timeout: float = 15) -> Any:
    """The element ``css`` once it is on the page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    present = expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css))
    return WebDriverWait(browser, timeout).until(present)


IDLE_SECONDS, WARN_SECONDS = 16, 8


@pytest.fixture(scope="session")
def idle_app(served_app: Any, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A served app whose sessions end after IDLE_SECONDS without a request (warning
    WARN_SECONDS before), serving the same certificate as ``served_app`` (the browser's pin)."""
    from tests.served import own_served_app

    env = {"NEONPRO_SESSION_IDLE_SECONDS": IDLE_SECONDS, "NEONPRO_SESSION_WARN_SECONDS": WARN_SECONDS}
    with own_served_app(
        "idle", django_db_blocker, tmp_path_factory, extra_env=env, tls_from=served_app.cert.parent
    ) as app:
        yield app
