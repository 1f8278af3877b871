"""Going through the real sign-in pages with Django's test client, CSRF enforced."""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Any

from django.test import Client
from django_otp.oath import totp

from neonpro.accounts import mfa
from neonpro.accounts.mfa_models import TOTP_STEP, TOTP_TOLERANCE, TOTPDevice

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
    """The API's answer to ``/api/v1/me/``: 200 signed in, 401 nobody (the API names its Bearer
    scheme to the anonymous), 403 a session that owes its second factor (``mfa_required``)."""
    return int(client.get("/api/v1/me/", secure=True).status_code)


def now_step() -> int:
    return int(time.time()) // 30


def fresh_code(device: TOTPDevice, *, clock: Any = None) -> str:
    """A code the device has not accepted yet: this step's, or the next step's when this one's
    was used (the server accepts one step ahead; a code works once). Past that (a third
    sign-in of one user within a 30-second step, as with several devices) a person waits for
    their app's next code: pass the test's ``clock`` (a time_machine traveller) and it moves
    on to that step instead of the test sleeping; without one this fails, saying so."""
    device.refresh_from_db()
    ahead = device.last_t + 1 - now_step()
    if ahead > TOTP_TOLERANCE:
        assert clock is not None, "no unused code before the next 30-second step: pass the test's clock"
        # One second into the step where the next unused code is the one ahead (never at the
        # boundary itself, which rounding could put in the step before).
        target = (device.last_t + 1 - TOTP_TOLERANCE) * TOTP_STEP + 1
        clock.shift(dt.timedelta(seconds=target - time.time()))
        ahead = device.last_t + 1 - now_step()
    return code(device, steps_ahead=max(0, ahead))


def sign_in(client: Client, username: str, password: str = PASSWORD) -> bool:
    """The whole sign-in through the pages: password, then a code where one is needed (an
    authenticator is enrolled for a clinician or administrator who has none). True when signed in."""
    from neonpro.accounts.models import User

    user = User.objects.get(username=username)
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    if device is None and mfa.mfa_required(user):
        device = enrol(user)
    answer = sign_in_password(client, username, password)
    if answer.status_code == 302 and answer["Location"].startswith("/accounts/login/verify/"):
        assert device is not None
        answer = submit_code(client, fresh_code(device))
    return bool(answer.status_code == 302 and not answer["Location"].startswith("/accounts/login/"))
