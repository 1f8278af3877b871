"""Login, logout and failed login each write one audit event; a failed login never stores
the username or password that was tried."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.test import Client

from neonpro.audit.models import AuditEvent
from tests.audit.conftest import audit_rows_as_text, last_event_id
from tests.conftest import sign_in_as

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"
LOGOUT = "/accounts/logout/"
PASSWORD = "correct horse battery staple"  # what user_factory sets
USERNAME = "quokka.login"


def _events_after(start: int) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(id__gt=start).order_by("id"))


@pytest.fixture
def account(user_factory: Any) -> Any:
    return user_factory("clinician", username=USERNAME)


def test_a_successful_login_is_audited(client: Client, account: Any) -> None:
    from tests.accounts.signin_helpers import code, enrol

    device = enrol(account)  # a clinician: password, then a code
    start = last_event_id()
    client.post(LOGIN, {"username": USERNAME, "password": PASSWORD}, secure=True)
    response = client.post("/accounts/login/verify/", {"token": code(device)}, secure=True)
    assert response.status_code == 302
    (event,) = [e for e in _events_after(start) if e.action.startswith("auth.")]
    assert (event.action, event.outcome) == ("auth.login", "success")
    assert event.actor_id == account.pk and event.actor_role == "clinician"
    assert (event.resource_type, event.resource_id) == ("accounts.user", account.pk)
    assert event.request_id == uuid.UUID(response["X-Request-ID"])
    assert event.source_ip == "127.0.0.1"


def test_a_logout_is_audited(client: Client, account: Any) -> None:
    sign_in_as(client, account)
    start = last_event_id()
    response = client.post(LOGOUT, secure=True)
    assert response.status_code == 302
    (event,) = [e for e in _events_after(start) if e.action.startswith("auth.")]
    assert (event.action, event.outcome) == ("auth.logout", "success")
    assert event.actor_id == account.pk and event.resource_id == account.pk
    assert event.request_id == uuid.UUID(response["X-Request-ID"])


@pytest.mark.parametrize(
    ("username", "password"),
    [
        (USERNAME, "Wrong-Quokka-Password-1987"),
        ("Quokka Password Typed As Username 1987", "Another-Quokka-Secret"),
    ],
    ids=["wrong-password", "unknown-username"],
)
def test_a_failed_login_is_audited_without_username_or_password(
    client: Client, account: Any, username: str, password: str
) -> None:
    start = last_event_id()
    response = client.post(LOGIN, {"username": username, "password": password}, secure=True)
    assert response.status_code == 200  # the form again, with an error
    assert not response.wsgi_request.user.is_authenticated
    # (the first fingerprint may also create the blind-index key, which is audited too)
    (event,) = [e for e in _events_after(start) if e.action.startswith("auth.")]
    assert (event.action, event.outcome) == ("auth.login_failed", "denied")
    assert event.actor_id is None and event.resource_id is None and event.patient_id is None
    assert set(event.details) == {"username_fingerprint"}
    assert event.request_id == uuid.UUID(response["X-Request-ID"])

    (row,) = [text for pk, _, text in audit_rows_as_text(start) if pk == event.pk]
    for secret in (username, password, "quokka", USERNAME, PASSWORD):
        assert secret.lower() not in row.lower()


def test_the_username_fingerprint_is_stable_and_distinguishes_usernames(client: Client) -> None:
    start = last_event_id()
    for username in ("quokka.one", "quokka.one", "quokka.two"):
        client.post(LOGIN, {"username": username, "password": "nope-nope-nope"}, secure=True)
    first, again, other = (
        e.details["username_fingerprint"] for e in _events_after(start) if e.action == "auth.login_failed"
    )
    assert first == again != other
