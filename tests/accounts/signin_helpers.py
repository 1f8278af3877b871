"""Going through the real sign-in pages with Django's test client, CSRF enforced."""

from __future__ import annotations

import re
import time
from typing import Any

from django.test import Client
from django_otp.oath import totp

from neonpro.accounts import mfa
from neonpro.accounts.mfa_models import TOTPDevice

PASSWORD = "correct horse battery staple"  # tests/conftest.py user_factory
_TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def browser_client() -> Client:
    return Client(enforce_csrf_checks=True)


def post_form(client: Client, url: str, data: dict[str, Any], *, form_url: str | None = None) -> Any:
    """Fetch the page with the form first (its CSRF token), then post it, as a browser does."""
    page = client.get(form_url or url, secure=True)
    match = _TOKEN.search(page.content.decode())
    assert match, f"no CSRF token on {form_url or url} ({page.status_code})"
    return client.post(
        url, {**data, "csrfmiddlewaretoken": match[1]}, secure=True, HTTP_REFERER=f"https://testserver{url}"
    )


def enrol(user: Any) -> TOTPDevice:
    mfa.enrol_with_secret(user)
    return TOTPDevice.objects.get(user=user, confirmed=True)


def code(device: TOTPDevice, *, steps_ahead: int = 0) -> str:
    return f"{totp(device.bin_key, step=30, digits=6, drift=steps_ahead):06d}"


def sign_in_password(client: Client, username: str, password: str = PASSWORD, *, next_url: str = "") -> Any:
    data = {"username": username, "password": password}
    if next_url:
        data["next"] = next_url
    return post_form(client, "/accounts/login/", data)


def submit_code(client: Client, token: str, *, url: str = "/accounts/login/verify/") -> Any:
    return post_form(client, url, {"token": token})


def me(client: Client) -> int:
    return int(client.get("/api/v1/me/", secure=True).status_code)


def now_step() -> int:
    return int(time.time()) // 30
