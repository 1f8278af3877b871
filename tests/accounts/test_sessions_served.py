"""The session cookie as the served app sets it over real HTTPS (``manage.py serve``, TLS 1.3),
CSRF on the forms, and a cookie replayed after signing out."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.accounts.session_helpers import COOKIE, served_client, served_sign_in

# The served app runs on a clone of the test database, which pytest-django creates only for
# database tests.
pytestmark = pytest.mark.django_db


def _attributes(header: str) -> tuple[str, dict[str, str]]:
    first, *rest = [part.strip() for part in header.split(";")]
    attributes = {}
    for part in rest:
        name, _, value = part.partition("=")
        attributes[name.lower()] = value
    return first.partition("=")[2], attributes


def _not_authenticated(answer: Any) -> bool:
    body = answer.json()
    detail = body["error"]["code"] if "error" in body else body["detail"]
    return answer.status_code in (401, 403) and detail in (
        "not_authenticated",
        "Authentication credentials were not provided.",
    )


# Each test signs in a demo account of its own: an account's codes run out after two sign-ins
# in a 30-second step, and the next would wait for the clock (tests.served.totp_code).
def test_the_session_cookie_is_host_only_secure_httponly_samesite_and_ends_with_the_browser(served_app: Any) -> None:
    client, answer = served_sign_in(served_app, "patient.ada")

    assert answer.request.url.path == "/accounts/login/verify/"  # the cookie of the completed sign-in
    (header,) = [h for h in answer.headers.get_list("set-cookie") if h.startswith(f"{COOKIE}=")]
    value, attributes = _attributes(header)
    assert re.fullmatch(r"[a-z0-9]{32}", value)
    assert "secure" in attributes and "httponly" in attributes
    assert attributes["samesite"] == "Lax" and attributes["path"] == "/"
    assert "domain" not in attributes  # __Host-: bound to this host only
    assert "max-age" not in attributes and "expires" not in attributes  # gone when the browser closes
    assert client.get("/api/v1/me/").status_code == 200


def test_a_cookie_replayed_after_signing_out_is_not_authenticated(served_app: Any) -> None:
    client, _ = served_sign_in(served_app, "admin")
    stolen = client.cookies[COOKIE]
    home = client.get("/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', home.text)
    assert token
    origin = {"Origin": served_app.url, "Referer": f"{served_app.url}/"}

    refused = client.post("/accounts/logout/", headers=origin)  # no CSRF token
    assert refused.status_code == 403 and client.get("/api/v1/me/").status_code == 200
    signed_out = client.post("/accounts/logout/", data={"csrfmiddlewaretoken": token.group(1)}, headers=origin)
    assert signed_out.status_code == 302

    replay = served_client(served_app)
    answer = replay.get("/api/v1/me/", headers={"Cookie": f"{COOKIE}={stolen}"})
    assert _not_authenticated(answer), answer.text
