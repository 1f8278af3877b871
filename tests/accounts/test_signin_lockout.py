"""Lock-out per account and per address (django-axes), with keyed usernames, a clear message,
an audit trail and an administrator's unlock."""

from __future__ import annotations

import json
from typing import Any

import pytest
from axes.models import AccessAttempt, AccessLog
from django.core.management import call_command
from django.core.management.base import CommandError

from neonpro.accounts import lockout
from neonpro.accounts.lockout import keyed_username
from neonpro.audit.models import AuditEvent
from tests.accounts.signin_helpers import browser_client, code, enrol, me, sign_in_password, submit_code

pytestmark = pytest.mark.django_db


def _fail(username: str, times: int, *, ip: str = "127.0.0.1") -> Any:
    answer = None
    for _ in range(times):
        client = browser_client()
        client.defaults["REMOTE_ADDR"] = ip
        answer = sign_in_password(client, username, password="wrong wrong wrong")
    return answer


def test_five_wrong_passwords_lock_the_account_with_a_clear_message(user_factory: Any) -> None:
    user_factory("patient", username="pat")
    assert _fail("pat", 4).status_code == 200

    locked = _fail("pat", 1)

    assert locked.status_code == 429 and int(locked["Retry-After"]) == 15 * 60
    assert "Too many failed sign-in attempts" in locked.content.decode()
    right = browser_client()
    refused = sign_in_password(right, "pat")  # even the right password, while locked
    assert refused.status_code == 429 and me(right) == 401
    attempts = list(AccessAttempt.objects.values_list("username", flat=True))
    assert attempts and set(attempts) == {keyed_username("pat")}, "axes keeps only the keyed username"
    assert "pat" not in json.dumps(list(AccessAttempt.objects.values("post_data", "get_data")))
    events = AuditEvent.objects.filter(action="signin.locked_out")
    assert events.exists() and events.first().details == {"username_hash": keyed_username("pat")}


def test_one_address_is_locked_after_its_own_limit(user_factory: Any, settings: Any) -> None:
    settings.NEONPRO_SIGNIN_IP_FAILURE_LIMIT = 6
    user_factory("patient", username="victim")
    for n in range(3):
        _fail(f"guess{n}", 2, ip="203.0.113.9")  # 6 failures, never 5 on one account
    client = browser_client()
    client.defaults["REMOTE_ADDR"] = "203.0.113.9"

    assert sign_in_password(client, "victim").status_code == 429
    other = browser_client()
    other.defaults["REMOTE_ADDR"] = "198.51.100.7"
    assert sign_in_password(other, "victim").status_code == 302, "another address is not locked"


def test_a_success_clears_only_the_accounts_own_failures(user_factory: Any) -> None:
    user_factory("patient", username="pat")
    _fail("pat", 3)
    _fail("other", 2)
    assert sign_in_password(browser_client(), "pat").status_code == 302
    assert set(AccessAttempt.objects.values_list("username", flat=True)) == {keyed_username("other")}
    assert not AccessLog.objects.exists(), "no access log with names in clear"


def test_wrong_codes_count_toward_the_lock_out(user_factory: Any) -> None:
    user = user_factory("clinician", username="doc")
    device = enrol(user)
    client = browser_client()
    sign_in_password(client, "doc")
    _fail("doc", 4)
    wrong = "000000" if code(device) != "000000" else "111111"

    assert submit_code(client, wrong).status_code == 429
    assert submit_code(client, code(device)).status_code == 429, "locked: not even the right code"
    assert me(client) == 401
    assert AuditEvent.objects.filter(action="signin.mfa_failed", details__reason="locked").exists()


def test_an_administrator_unlocks_an_account_by_name(user_factory: Any) -> None:
    user_factory("patient", username="pat")
    _fail("pat", 5)

    call_command("signin", "unlock", "--username", "Pat", "--operator", "ops", "--reason", "support")

    assert not AccessAttempt.objects.exists()
    assert sign_in_password(browser_client(), "pat").status_code == 302
    event = AuditEvent.objects.get(action="signin.unlocked")
    assert event.details["username_hash"] == keyed_username("pat") and event.details["attempts"] == 1
    assert event.details["operator"] == "ops"


def test_an_address_is_unlocked_too(db: None) -> None:
    _fail("someone", 2, ip="203.0.113.5")
    assert lockout.unlock(ip_address="203.0.113.5") == 1
    assert AuditEvent.objects.get(action="signin.unlocked").details == {"address": True, "attempts": 1}


def test_unlock_needs_a_target(db: None) -> None:
    with pytest.raises(CommandError, match="name what to unlock"):
        call_command("signin", "unlock")
    with pytest.raises(ValueError, match="name an account"):
        lockout.unlock()


def test_the_user_admin_has_an_unlock_action(user_factory: Any) -> None:
    from tests.conftest import sign_in_as

    admin = user_factory("admin", username="boss", is_staff=True, is_superuser=True)
    locked = user_factory("clinician", username="doc")
    _fail("doc", 5)
    client = sign_in_as(browser_client(), admin)
    page = client.get("/admin/accounts/user/", secure=True)
    token = page.content.decode().split('name="csrfmiddlewaretoken" value="')[1].split('"')[0]

    answer = client.post(
        "/admin/accounts/user/",
        {"action": "unlock_sign_in", "_selected_action": [locked.pk], "csrfmiddlewaretoken": token},
        secure=True,
        HTTP_REFERER="https://testserver/admin/accounts/user/",
    )

    assert answer.status_code == 302
    assert not AccessAttempt.objects.filter(username=keyed_username("doc")).exists()


def test_locked_out_api_posts_get_json(user_factory: Any, rf: Any) -> None:
    request = rf.post("/api/v1/reauth/", data="{}", content_type="application/json")
    answer = lockout.lockout_response(request)
    assert answer.status_code == 429 and json.loads(answer.content)["error"]["code"] == "locked_out"


def test_no_username_typed_is_no_keyed_username(rf: Any) -> None:
    assert lockout.keyed_username_of(rf.post("/accounts/login/", {}), None) is None
    assert lockout.keyed_username_of(None, {"username": "x"}) == keyed_username("x")
    assert lockout.keyed_username_of(rf.post("/accounts/login/", {"username": "X "}), None) == keyed_username("x")


def test_an_attempt_without_a_username_counts_for_the_address_only(rf: Any) -> None:
    from axes.handlers.proxy import AxesProxyHandler

    request = rf.post("/accounts/login/", {})
    AxesProxyHandler.update_request(request)
    handler = lockout.LockoutHandler()
    assert handler.get_failures(request, {}) == 0
    assert handler.reset_user_attempts(request, {}) == 0
