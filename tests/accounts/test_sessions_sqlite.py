"""The session store on SQLite, the embedded mode of `make run`: sign in through the forms (CSRF
enforced; password, then the authenticator's code), use the session, sign out, replay the
cookie, purge — in a process of its own."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import TEST_MASTER_KEY
from tests.subprocess_django import manage, sqlite_env

SCRIPT = r"""
import datetime as dt, re
import time_machine
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from neonpro.accounts.models import User
from neonpro.accounts.session_models import UserSession
from tests.accounts.signin_helpers import enrol, fresh_code

TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
ORIGIN = "https://localhost"


def form_post(client, page, url, data):
    token = TOKEN.search(client.get(page, secure=True).content.decode()).group(1)
    headers = {"Origin": ORIGIN, "Referer": ORIGIN + page}
    return client.post(url, {"csrfmiddlewaretoken": token, **data}, secure=True, headers=headers)


def sign_in(client):  # the two-step sign-in: the password, then a code not used yet
    credentials = {"username": "dr.sqlite", "password": "correct horse battery staple"}
    pending = form_post(client, "/accounts/login/", "/accounts/login/", credentials)
    assert pending.status_code == 302 and pending["Location"].startswith("/accounts/login/verify/"), pending
    assert client.get("/api/v1/me/", secure=True).status_code == 401  # nobody before the code
    code = {"token": fresh_code(device)}
    signed_in = form_post(client, "/accounts/login/verify/", "/accounts/login/verify/", code)
    assert signed_in.status_code == 302 and signed_in["Location"] == "/", signed_in


user = User.objects.create_user("dr.sqlite", password="correct horse battery staple", role="clinician")
device = enrol(user)
client = Client(enforce_csrf_checks=True, HTTP_HOST="localhost", HTTP_USER_AGENT="sqlite-check/1")
sign_in(client)
cookie = client.cookies["__Host-sessionid"].value
assert client.get("/api/v1/me/", secure=True).status_code == 200
assert client.get("/api/v1/sessions/", secure=True).json()[0]["current"] is True
row = UserSession.objects.get()
assert cookie.encode() not in bytes(row.token_digest) + bytes(row.data)

assert form_post(client, "/notifications/", "/accounts/logout/", {}).status_code == 302
assert not UserSession.objects.exists()
replay = Client(HTTP_HOST="localhost", HTTP_USER_AGENT="sqlite-check/1")
replay.cookies["__Host-sessionid"] = cookie
assert replay.get("/api/v1/me/", secure=True).status_code == 401  # nobody: the session is gone

later = Client(enforce_csrf_checks=True, HTTP_HOST="localhost", HTTP_USER_AGENT="sqlite-check/1")
sign_in(later)
assert later.get("/api/v1/me/", secure=True).status_code == 200
with time_machine.travel(timezone.now() + dt.timedelta(minutes=20)):
    call_command("clearsessions")
assert not UserSession.objects.exists()
print("sessions on sqlite: ok")
"""


def test_sessions_work_on_sqlite(tmp_path: Path) -> None:
    env = sqlite_env(tmp_path, TEST_MASTER_KEY)

    assert "sessions on sqlite: ok" in manage(env, "shell", "-c", SCRIPT)
