"""The two-step sign-in against the served app (TLS, PostgreSQL as the app role) with a real HTTP client."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.served import totp_code

pytestmark = pytest.mark.django_db
_TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def _post_form(client: httpx.Client, path: str, data: dict[str, str]) -> httpx.Response:
    page = client.get(path)
    token = _TOKEN.search(page.text)
    assert token, f"{path}: {page.status_code}"
    return client.post(
        path, data={**data, "csrfmiddlewaretoken": token[1]}, headers={"Referer": f"{client.base_url}{path}"}
    )


def test_a_clinician_signs_in_with_password_and_code_over_https(served_app: Any) -> None:
    with httpx.Client(base_url=served_app.url, verify=str(served_app.cert), timeout=20) as client:
        answer = _post_form(
            client, "/accounts/login/", {"username": "dr.grey", "password": served_app.credentials["dr.grey"]}
        )
        assert answer.status_code == 302 and answer.headers["Location"].startswith("/accounts/login/verify/")
        assert client.get("/api/v1/me/").status_code == 401, "nobody is signed in before the code"

        secret = served_app.totp_secrets["dr.grey"]
        done = _post_form(client, "/accounts/login/verify/", {"token": totp_code(secret, account="dr.grey")})
        assert done.status_code == 302 and done.headers["Location"] == "/"
        me = client.get("/api/v1/me/")
        assert me.status_code == 200 and me.json()["role"] == "clinician"

        reauth = client.post(
            "/api/v1/reauth/",
            json={"password": served_app.credentials["dr.grey"], "otp": totp_code(secret, account="dr.grey")},
            headers={"X-CSRFToken": client.cookies["__Host-csrftoken"], "Referer": f"{served_app.url}/"},
        )
        assert reauth.status_code == 200 and reauth.json()["reauthenticated"] is True
