"""The two-step sign-in through the real views, CSRF enforced: password, then code (or
enrolment), and nothing signed in between; every event audited without a name in clear."""

from __future__ import annotations

from typing import Any

import pytest
import time_machine
from django.db import connection
from django_otp import DEVICE_ID_SESSION_KEY

from neonpro.accounts import mfa
from neonpro.accounts.lockout import keyed_username
from neonpro.accounts.mfa_models import RecoveryCode, TOTPDevice
from neonpro.accounts.signals import credentials_changed
from neonpro.audit.models import AuditEvent
from tests.accounts.signin_helpers import (
    browser_client,
    code,
    enrol,
    me,
    post_form,
    sign_in_password,
    submit_code,
)

pytestmark = pytest.mark.django_db


def _events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def test_a_post_without_the_csrf_token_is_refused(user_factory: Any) -> None:
    user_factory("patient", username="pat")
    client = browser_client()
    answer = client.post("/accounts/login/", {"username": "pat", "password": "x"}, secure=True)
    assert answer.status_code == 403


def test_a_patient_without_a_second_factor_signs_in_with_the_password(user_factory: Any) -> None:
    user = user_factory("patient", username="pat")
    client = browser_client()

    answer = sign_in_password(client, "pat")

    assert answer.status_code == 302 and answer["Location"] == "/"
    assert me(client) == 200
    [event] = _events("auth.login")
    assert event.actor_id == user.pk and event.details == {"second_factor": "none"}
    assert event.source_ip == "127.0.0.1"


def test_a_clinician_is_not_signed_in_until_the_code_is_right(user_factory: Any) -> None:
    user = user_factory("clinician", username="doc")
    device = enrol(user)
    client = browser_client()

    answer = sign_in_password(client, "doc", next_url="/accounts/mfa/")
    assert answer.status_code == 302 and answer["Location"].startswith("/accounts/login/verify/")
    assert me(client) == 401, "the API sees nobody between password and code"
    assert client.get("/", secure=True)["Location"].startswith("/accounts/login/")
    assert not _events("auth.login")

    wrong = submit_code(client, "000000" if code(device) != "000000" else "111111")
    assert wrong.status_code == 200 and "not right" in wrong.content.decode()
    assert me(client) == 401
    [failed] = _events("signin.mfa_failed")
    assert failed.outcome == "denied" and failed.details["reason"] == "invalid"
    assert failed.details["username_hash"] == keyed_username("doc") and "doc" not in str(failed.details)

    device.refresh_from_db()
    device.throttling_failure_count = 0  # the throttle is its own test
    device.save()
    answer = submit_code(client, code(device), url="/accounts/login/verify/?next=/accounts/mfa/")
    assert answer.status_code == 302 and answer["Location"] == "/accounts/mfa/"
    assert me(client) == 200
    assert client.session[DEVICE_ID_SESSION_KEY] == device.persistent_id
    [success] = _events("auth.login")
    assert success.actor_id == user.pk and success.details == {"second_factor": "totpdevice"}


def test_a_code_works_once(user_factory: Any) -> None:
    user = user_factory("clinician", username="doc")
    device = enrol(user)
    token = code(device)
    first = browser_client()
    sign_in_password(first, "doc")
    assert submit_code(first, token).status_code == 302

    second = browser_client()
    sign_in_password(second, "doc")
    answer = submit_code(second, token)

    assert "used already" in answer.content.decode()
    assert me(second) == 401
    assert _events("signin.mfa_failed")[-1].details["reason"] == "replayed"


def test_wrong_codes_in_a_row_are_throttled(user_factory: Any) -> None:
    user = user_factory("clinician", username="doc")
    device = enrol(user)
    client = browser_client()
    sign_in_password(client, "doc")
    wrong = "000000" if code(device) != "000000" else "111111"

    submit_code(client, wrong)
    answer = submit_code(client, code(device))  # right, but too soon after a wrong one

    assert "Too many wrong codes" in answer.content.decode()
    assert me(client) == 401
    assert [e.details["reason"] for e in _events("signin.mfa_failed")] == ["invalid", "throttled"]


def test_a_recovery_code_signs_in_once(user_factory: Any) -> None:
    user = user_factory("clinician", username="doc")
    device = mfa.start_enrolment(user)
    codes = mfa.confirm_enrolment(user, device, code(device), session_key=None)
    assert len(codes) == 10 and len(set(codes)) == 10
    stored = RecoveryCode.objects.filter(device__user=user)
    assert all(codes[0].replace("-", "").encode() not in bytes(row.digest) for row in stored)

    client = browser_client()
    sign_in_password(client, "doc")
    assert submit_code(client, codes[0].lower()).status_code == 302
    assert _events("auth.login")[-1].details == {"second_factor": "recoverycodeset"}

    again = browser_client()
    sign_in_password(again, "doc")
    answer = submit_code(again, codes[0])
    assert "used already" in answer.content.decode()
    assert _events("signin.mfa_failed")[-1].details["reason"] == "used_recovery_code"


def test_an_unknown_recovery_code_is_invalid(user_factory: Any) -> None:
    user = user_factory("clinician", username="doc")
    device = mfa.start_enrolment(user)
    mfa.confirm_enrolment(user, device, code(device), session_key=None)
    client = browser_client()
    sign_in_password(client, "doc")

    answer = submit_code(client, "AAAAA-BBBBB")

    assert "not right" in answer.content.decode()
    assert _events("signin.mfa_failed")[-1].details["reason"] == "invalid"


def test_a_patient_with_only_an_authenticator_gets_no_device_for_a_word(user_factory: Any) -> None:
    user = user_factory("patient", username="pat")
    enrol(user)  # by choice; no recovery codes made by the operator path
    client = browser_client()
    assert sign_in_password(client, "pat")["Location"].startswith("/accounts/login/verify/")

    answer = submit_code(client, "ABCDE-FGHIJ")

    assert "not right" in answer.content.decode()
    assert _events("signin.mfa_failed")[-1].details["reason"] == "no_device"


def test_first_sign_in_of_a_clinician_enrols_an_authenticator(user_factory: Any) -> None:
    user = user_factory("clinician", username="newdoc")
    changes: list[dict[str, Any]] = []
    credentials_changed.connect(lambda **kw: changes.append(kw), weak=False, dispatch_uid="test-enrol")
    try:
        client = browser_client()
        answer = sign_in_password(client, "newdoc")
        assert answer["Location"].startswith("/accounts/login/enrol/")
        assert me(client) == 401

        page = client.get("/accounts/login/enrol/", secure=True).content.decode()
        assert 'src="data:image/svg+xml' in page and 'id="totp-secret"' in page
        assert client.get("/accounts/login/enrol/", secure=True).content.decode().count("data:image") == 1
        device = TOTPDevice.objects.get(user=user, confirmed=False)
        assert mfa.secret_text(device) in page
        with connection.cursor() as cursor:
            cursor.execute("SELECT key FROM accounts_totpsecret WHERE device_id = %s", [device.pk])
            stored = bytes(cursor.fetchone()[0])
        assert device.secret.key.encode() not in stored and device.bin_key not in stored, "the secret is encrypted"

        wrong = post_form(client, "/accounts/login/enrol/", {"token": "12345x"})
        assert "not right" in wrong.content.decode()
        assert _events("signin.mfa_failed")[-1].details["reason"] == "enrolment_code"

        device.refresh_from_db()
        device.throttling_failure_count = 0
        device.save()
        done = post_form(client, "/accounts/login/enrol/", {"token": code(device)})
        assert done.status_code == 200 and done.content.decode().count("<li><code>") == 10
        assert me(client) == 200
    finally:
        credentials_changed.disconnect(dispatch_uid="test-enrol")
    device.refresh_from_db()
    assert device.confirmed
    assert [e.action for e in AuditEvent.objects.filter(action__startswith="mfa.")] == ["mfa.enrolled"]
    assert changes and changes[0]["user"] == user and changes[0]["reason"] == "mfa_change"


def test_the_steps_after_the_password_expire(user_factory: Any, settings: Any) -> None:
    user = user_factory("clinician", username="doc")
    device = enrol(user)
    client = browser_client()
    with time_machine.travel(0, tick=False) as clock:
        clock.move_to("2026-01-01 09:00:00+00:00")
        sign_in_password(client, "doc")
        clock.shift(settings.NEONPRO_SIGNIN_STEP_SECONDS + 1)
        answer = client.get("/accounts/login/verify/", secure=True)
        assert answer.status_code == 302 and answer["Location"].startswith("/accounts/login/")
        assert client.get("/accounts/login/enrol/", secure=True).status_code == 302
    assert device.pk


def test_agents_do_not_sign_in_here(user_factory: Any) -> None:
    user_factory("agent", username="robot")
    client = browser_client()

    answer = sign_in_password(client, "robot")

    assert answer.status_code == 200 and "Agent accounts do not sign in here" in answer.content.decode()
    assert me(client) == 401


def test_a_wrong_password_is_audited_without_the_username(user_factory: Any) -> None:
    user_factory("clinician", username="doc")
    client = browser_client()

    answer = sign_in_password(client, "Doc ", password="not it at all")

    assert "password didn&#x27;t match" in answer.content.decode()
    [event] = _events("auth.login_failed")
    assert set(event.details) == {"username_fingerprint"} and "doc" not in str(event.details)
    assert event.outcome == "denied" and event.source_ip == "127.0.0.1"
    assert not _events("signin.mfa_failed")


def test_signing_out_is_audited(user_factory: Any) -> None:
    user = user_factory("patient", username="pat")
    client = browser_client()
    sign_in_password(client, "pat")
    page = client.get("/notifications/", secure=True)
    token = page.content.decode().split('name="csrfmiddlewaretoken" value="')[1].split('"')[0]

    client.post("/accounts/logout/", {"csrfmiddlewaretoken": token}, secure=True, HTTP_REFERER="https://testserver/")

    assert me(client) == 401
    [event] = _events("auth.logout")
    assert event.actor_id == user.pk


def test_a_logout_without_a_session_records_nothing(rf: Any) -> None:
    from django.contrib.auth.signals import user_logged_out

    user_logged_out.send(sender=None, request=rf.post("/accounts/logout/"), user=None)
    assert not _events("auth.logout")


def test_a_session_that_skipped_the_code_is_sent_to_it(user_factory: Any) -> None:
    user = user_factory("clinician", username="doc")
    client = browser_client()
    client.force_login(user)  # a session made without the second factor (a tool, a role change)

    api = client.get("/api/v1/me/", secure=True)
    assert api.status_code == 403
    page = client.get("/accounts/mfa/", secure=True)
    assert page.status_code == 302 and page["Location"] == "/accounts/login/enrol/?next=%2Faccounts%2Fmfa%2F"
    assert me(client) == 401

    enrol(user)
    client.force_login(user)
    assert client.get("/", secure=True)["Location"].startswith("/accounts/login/verify/")


def test_static_files_are_not_held_up(user_factory: Any) -> None:
    client = browser_client()
    client.force_login(user_factory("clinician", username="doc"))
    assert client.get("/static/neonpro/site.css", secure=True).status_code in (200, 404)
    assert me(client) == 403


def test_the_admin_needs_the_second_factor(user_factory: Any) -> None:
    from tests.conftest import sign_in_as

    admin = user_factory("admin", username="boss", is_staff=True, is_superuser=True)
    anonymous = browser_client()
    answer = anonymous.get("/admin/login/?next=/admin/keys/", secure=True)
    assert answer.status_code == 302 and answer["Location"] == "/accounts/login/?next=/admin/keys/"

    verified = sign_in_as(browser_client(), admin)
    assert verified.get("/admin/", secure=True).status_code == 200

    staff_patient = user_factory("patient", username="odd", is_staff=True)
    unverified = browser_client()
    unverified.force_login(staff_patient)  # needs no second factor, so has none: no admin
    assert unverified.get("/admin/", secure=True)["Location"].startswith("/admin/login/")
    assert unverified.get("/admin/login/", secure=True).status_code == 403


def test_the_login_page_of_a_signed_in_person_leads_on(user_factory: Any) -> None:
    user_factory("patient", username="pat")
    client = browser_client()
    sign_in_password(client, "pat")
    assert client.get("/accounts/login/", secure=True).status_code == 302
