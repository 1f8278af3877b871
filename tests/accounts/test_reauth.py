"""Re-authentication (password and code) before break-glass, key admin actions and second-factor changes."""

from __future__ import annotations

import json
from typing import Any

import pytest
import time_machine
from django.test import Client

from keys.models import DataKey
from neonpro.accounts import mfa
from neonpro.accounts.mfa_models import RecoveryCode, RecoveryCodeSet, TOTPDevice
from neonpro.accounts.signals import credentials_changed
from neonpro.audit.models import AuditEvent
from tests.accounts.signin_helpers import PASSWORD, browser_client, code, enrol, post_form
from tests.conftest import sign_in_as
from tests.errors import error_code, error_fields

pytestmark = pytest.mark.django_db


def _csrf(client: Client) -> str:
    page = client.get("/accounts/mfa/", secure=True).content.decode()
    return page.split('name="csrfmiddlewaretoken" value="')[1].split('"')[0]


def _api_reauth(client: Client, body: dict[str, Any]) -> Any:
    return client.post(
        "/api/v1/reauth/",
        json.dumps(body),
        content_type="application/json",
        secure=True,
        HTTP_X_CSRFTOKEN=_csrf(client),
        HTTP_REFERER="https://testserver/",
    )


def _break_glass(client: Client, patient: Any) -> Any:
    return client.post(
        f"/api/v1/patients/{patient.pk}/emergency-access/",
        json.dumps({"reason": "Unconscious in the emergency department, allergies unknown"}),
        content_type="application/json",
        secure=True,
        HTTP_X_CSRFTOKEN=_csrf(client),
        HTTP_REFERER="https://testserver/",
    )


def test_break_glass_needs_a_recent_reauthentication(world: Any) -> None:
    device = enrol(world.outsider)
    client = sign_in_as(browser_client(), world.outsider, reauthenticated=False)

    refused = _break_glass(client, world.bob)
    assert refused.status_code == 403 and error_code(refused) == "reauth_required"

    wrong = _api_reauth(client, {"password": "not it", "otp": code(device)})
    assert wrong.status_code == 403
    assert AuditEvent.objects.get(action="signin.reauth_failed").details["reason"] == "password"
    bad_code = _api_reauth(client, {"password": PASSWORD, "otp": "12"})
    assert bad_code.status_code == 403
    assert AuditEvent.objects.filter(action="signin.reauth_failed", details__reason="invalid").exists()
    assert _api_reauth(client, {"otp": "1"}).status_code == 400
    misspelt = _api_reauth(client, {"password": PASSWORD, "otp": code(device), "remember": True})
    assert misspelt.status_code == 400 and "remember" in error_fields(misspelt), "unknown fields are refused"
    assert not AuditEvent.objects.filter(action="signin.reauth").exists()

    device.refresh_from_db()
    device.throttling_failure_count = 0
    device.save()
    key_before = client.cookies["__Host-sessionid"].value if "__Host-sessionid" in client.cookies else None
    ok = _api_reauth(client, {"password": PASSWORD, "otp": code(device)})
    assert ok.status_code == 200 and ok.json()["valid_for_seconds"] == 300
    assert client.cookies["__Host-sessionid"].value != key_before, "a new session id"
    assert AuditEvent.objects.filter(action="signin.reauth", resource_id=world.outsider.pk).exists()
    assert _break_glass(client, world.bob).status_code == 201


def test_a_reauthentication_expires(world: Any, settings: Any) -> None:
    with time_machine.travel("2026-01-01 09:00:00+00:00", tick=False) as clock:
        client = sign_in_as(browser_client(), world.outsider)
        clock.shift(settings.NEONPRO_REAUTH_SECONDS + 1)
        assert _break_glass(client, world.bob).status_code == 403


def test_the_reauth_page_for_people(user_factory: Any) -> None:
    user = user_factory("patient", username="pat")
    client = sign_in_as(browser_client(), user, reauthenticated=False)

    page = client.get("/accounts/reauth/?next=/accounts/mfa/", secure=True).content.decode()
    assert "id_password" in page and "id_token" not in page, "no code asked of a password-only patient"
    wrong = post_form(client, "/accounts/reauth/", {"password": "nope", "next": "/accounts/mfa/"})
    assert "not right" in wrong.content.decode()
    ok = post_form(client, "/accounts/reauth/", {"password": PASSWORD, "next": "https://evil.example/"})
    assert ok.status_code == 302 and ok["Location"] == "/accounts/mfa/", "never off-site"


def test_reauthenticating_while_locked_out_says_so(user_factory: Any) -> None:
    from tests.accounts.test_signin_lockout import _fail

    user = user_factory("patient", username="pat")
    client = sign_in_as(browser_client(), user, reauthenticated=False)
    _fail("pat", 5)
    answer = post_form(client, "/accounts/reauth/", {"password": PASSWORD})
    assert answer.status_code == 429


def test_key_admin_actions_need_a_recent_reauthentication(user_factory: Any, patient_factory: Any, system: Any) -> None:
    patient_factory()
    admin = user_factory("admin", username="keyadmin", is_staff=True, is_superuser=True)
    client = sign_in_as(Client(), admin, reauthenticated=False)
    old = DataKey.objects.get(purpose="field", status="active")

    answer = client.post(
        "/admin/keys/datakey/", {"action": "rotate_purpose", "_selected_action": [old.pk]}, secure=True
    )

    assert answer.status_code == 302 and answer["Location"].startswith("/accounts/reauth/?next=")
    old.refresh_from_db()
    assert old.status == "active", "nothing rotated"


def test_changing_the_second_factor_needs_reauthentication_and_ends_other_sessions(user_factory: Any) -> None:
    user = user_factory("clinician", username="doc")
    device = mfa.start_enrolment(user)
    first_codes = mfa.confirm_enrolment(user, device, code(device), session_key=None)
    stale = sign_in_as(browser_client(), user, reauthenticated=False)
    assert stale.get("/accounts/mfa/authenticator/", secure=True)["Location"].startswith("/accounts/reauth/")

    client = sign_in_as(browser_client(), user)
    changes: list[dict[str, Any]] = []
    credentials_changed.connect(lambda **kw: changes.append(kw), weak=False, dispatch_uid="test-mfa-change")
    try:
        settings_page = client.get("/accounts/mfa/", secure=True).content.decode()
        assert "Recovery codes left: 10" in settings_page and "Turn off" not in settings_page
        new_codes = post_form(client, "/accounts/mfa/recovery-codes/", {}, form_url="/accounts/mfa/")
        assert new_codes.status_code == 200 and first_codes[0] not in new_codes.content.decode()
        assert RecoveryCode.objects.filter(device__user=user).count() == 10

        page = client.get("/accounts/mfa/authenticator/", secure=True).content.decode()
        assert "data:image/svg+xml" in page
        replacement = TOTPDevice.objects.get(user=user, confirmed=False)
        done = post_form(client, "/accounts/mfa/authenticator/", {"token": code(replacement)})
        assert done.status_code == 200 and "recovery-codes" in done.content.decode()
        assert list(TOTPDevice.objects.filter(user=user).values_list("pk", flat=True)) == [replacement.pk]

        refused = post_form(client, "/accounts/mfa/remove/", {}, form_url="/accounts/mfa/")
        assert refused.status_code == 409 and TOTPDevice.objects.filter(user=user).exists()
    finally:
        credentials_changed.disconnect(dispatch_uid="test-mfa-change")
    session_key = client.session.session_key
    assert [c["reason"] for c in changes] == ["mfa_change", "mfa_change"]
    assert all(c["user"] == user and c["keep_session_key"] == session_key for c in changes)
    actions = list(AuditEvent.objects.filter(action__startswith="mfa.").values_list("action", flat=True))
    assert actions == ["mfa.enrolled", "mfa.recovery_codes_regenerated", "mfa.replaced"]


def test_a_patient_may_turn_the_second_factor_on_and_off(user_factory: Any) -> None:
    user = user_factory("patient", username="pat")
    client = sign_in_as(browser_client(), user)
    assert "Set up an authenticator app" in client.get("/accounts/mfa/", secure=True).content.decode()
    refused = post_form(client, "/accounts/mfa/recovery-codes/", {}, form_url="/accounts/mfa/")
    assert refused.status_code == 409

    client.get("/accounts/mfa/authenticator/", secure=True)
    device = TOTPDevice.objects.get(user=user, confirmed=False)
    post_form(client, "/accounts/mfa/authenticator/", {"token": code(device)})
    assert mfa.has_second_factor(user)
    client = sign_in_as(browser_client(), user)  # the enrolling session's id changed with the change

    answer = post_form(client, "/accounts/mfa/remove/", {}, form_url="/accounts/mfa/")

    assert answer.status_code == 302 and not mfa.has_second_factor(user)
    assert not RecoveryCodeSet.objects.filter(user=user).exists()
    assert AuditEvent.objects.filter(action="mfa.removed", resource_id=user.pk).exists()
