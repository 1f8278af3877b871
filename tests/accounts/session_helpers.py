"""Signing in as a person does (the real login view, CSRF enforced) and reading the outcome."""

from __future__ import annotations

import re
from typing import Any

from django.test import Client

from tests.errors import error_code

PASSWORD = "correct horse battery staple"  # user_factory's password
COOKIE = "__Host-sessionid"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0"
ORIGIN = "https://testserver"
_TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def browser_client(*, agent: str = FIREFOX, ip: str = "192.0.2.10") -> Client:
    return Client(enforce_csrf_checks=True, HTTP_USER_AGENT=agent, REMOTE_ADDR=ip)


def same_origin(page: str) -> dict[str, str]:
    """What a browser sends with a form posted from ``page`` (HTTPS: Django's CSRF check wants them)."""
    return {"Origin": ORIGIN, "Referer": f"{ORIGIN}{page}"}


def form_token(client: Client, url: str) -> str:
    """The CSRF token of the form on page ``url`` (the cookie is HttpOnly, as for a browser)."""
    page = client.get(url, secure=True)
    match = _TOKEN.search(page.content.decode())
    assert match, f"no form with a CSRF token on {url} ({page.status_code})"
    return match.group(1)


def sign_in(user: Any, client: Client | None = None, *, clock: Any = None, **kwargs: Any) -> Client:
    """POST the sign-in form (after loading it, for its CSRF token) as ``user``, then the code of
    their authenticator where one is needed (enrolled first for a role that must have one).
    A code works once: a test signing one user in more than twice (several devices) passes its
    time_machine ``clock``, which moves to the next 30-second step when the codes run out
    (``signin_helpers.fresh_code``)."""
    from neonpro.accounts import mfa
    from neonpro.accounts.mfa_models import TOTPDevice
    from tests.accounts.signin_helpers import enrol, fresh_code

    client = client or browser_client(**kwargs)
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    if device is None and mfa.mfa_required(user):
        device = enrol(user)
    token = form_token(client, "/accounts/login/")
    answer = client.post(
        "/accounts/login/",
        {"username": user.username, "password": PASSWORD, "csrfmiddlewaretoken": token},
        secure=True,
        headers=same_origin("/accounts/login/"),
    )
    assert answer.status_code == 302, answer.content.decode()[:500]
    if answer["Location"].startswith("/accounts/login/verify/"):
        assert device is not None
        token = form_token(client, "/accounts/login/verify/")
        answer = client.post(
            "/accounts/login/verify/",
            {"token": fresh_code(device, clock=clock), "csrfmiddlewaretoken": token},
            secure=True,
            headers=same_origin("/accounts/login/verify/"),
        )
        assert answer.status_code == 302 and not answer["Location"].startswith("/accounts/login/"), answer
    return client


def post_form(client: Client, url: str, *, page: str = "/accounts/sessions/", **data: Any) -> Any:
    """Submit a form of ``page`` to ``url`` as the browser would (with the page's CSRF token)."""
    token = form_token(client, page)
    return client.post(url, {"csrfmiddlewaretoken": token, **data}, secure=True, headers=same_origin(page))


def cookie_of(client: Client) -> str:
    return client.cookies[COOKIE].value


def is_signed_in(client: Client) -> bool:
    """Whether ``GET /api/v1/me/`` knows the client; an unknown session must be 'not authenticated'."""
    answer = client.get("/api/v1/me/", secure=True)
    if answer.status_code == 200:
        return True
    assert_not_authenticated(answer)
    return False


def assert_not_authenticated(answer: Any) -> None:
    """401 or 403 saying the caller is not authenticated (either error body shape)."""
    assert answer.status_code in (401, 403), answer.status_code
    body = answer.json()
    if "error" in body:
        assert error_code(answer) == "not_authenticated"
    else:
        assert body["detail"] == "Authentication credentials were not provided."


def with_cookie(token: str, **kwargs: Any) -> Client:
    """A new client presenting ``token`` as its session cookie (a replay, or a forgery)."""
    client = browser_client(**kwargs)
    client.cookies[COOKIE] = token
    return client


# -- the served app (``served_app``: manage.py serve over TLS) ---------------------------------
def served_client(app: Any, *, agent: str = "NeonPro session tests/1.0") -> Any:
    import ssl

    import httpx

    trust = ssl.create_default_context(cafile=str(app.cert))
    return httpx.Client(base_url=app.url, verify=trust, trust_env=False, headers={"User-Agent": agent}, timeout=15)


def served_sign_in(app: Any, username: str, **kwargs: Any) -> tuple[Any, Any]:
    """(client, the response that signed in) after posting the real forms over HTTPS: the
    password, then, where the code step follows, the current code of the account's
    authenticator (``tests.served.totp_code``: never one the server has accepted already)."""
    from tests.served import totp_code

    client = served_client(app, **kwargs)
    answer = _served_post_form(client, app, "/accounts/login/", username=username, password=app.credentials[username])
    assert answer.status_code == 302, answer.text[:300]
    if answer.headers["Location"].startswith("/accounts/login/verify/"):
        token = totp_code(app.totp_secrets[username], account=username)
        answer = _served_post_form(client, app, "/accounts/login/verify/", token=token)
        assert answer.status_code == 302, answer.text[:300]
    assert not answer.headers["Location"].startswith("/accounts/login/"), answer.headers["Location"]
    return client, answer


def _served_post_form(client: Any, app: Any, path: str, **data: str) -> Any:
    page = client.get(path)
    match = _TOKEN.search(page.text)
    assert match, f"{path}: {page.status_code}"
    return client.post(
        path,
        data={**data, "csrfmiddlewaretoken": match.group(1)},
        headers={"Origin": app.url, "Referer": f"{app.url}{path}"},
    )
