"""Agents at the API, in process: tokens and certificates, scopes per view, 401/403/404, audit.

Every request goes through the whole middleware stack and DRF (Django's test client, HTTPS,
CSRF enforced: agents have none), as the application database role.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client, RequestFactory
from django.utils import timezone

from neonpro.accounts import agent_auth, agent_certificates, agent_tokens, agents
from neonpro.accounts.agent_models import ApiToken
from neonpro.audit.models import AuditEvent
from neonpro.audit.services import AuditUnavailableError
from neonpro.security.context import system_context
from records.models import MedicalRecord, MedicalRecordRevision
from tests.accounts.agentkit import bearer, items, make_agent, make_ca, pem, proxy_headers, token_for
from tests.conftest import sign_in_as

pytestmark = pytest.mark.django_db
REALM = 'Bearer realm="neonpro"'


class AgentClient:
    """An HTTP client presenting ``headers`` (a token, or a proxy's certificate headers)."""

    def __init__(self, headers: dict[str, str], client: Client | None = None) -> None:
        self.client = client or Client(enforce_csrf_checks=True)
        self.headers = headers

    def get(self, url: str, **extra: Any) -> Any:
        return self.client.get(url, secure=True, **self.headers, **extra)

    def post(self, url: str, data: Any, **extra: Any) -> Any:
        return self.client.post(url, data, content_type="application/json", secure=True, **self.headers, **extra)

    def patch(self, url: str, data: Any) -> Any:
        return self.client.patch(url, data, content_type="application/json", secure=True, **self.headers)


@pytest.fixture
def bot(world: Any) -> Any:
    """An agent for alice (explicitly) with every scope."""
    return make_agent("care-bot", patients=[world.alice])


@pytest.fixture
def as_bot(bot: Any) -> AgentClient:
    return AgentClient(bearer(token_for(bot)))


def requests_audited(**details: Any) -> list[AuditEvent]:
    events = AuditEvent.objects.filter(action="agent.request").order_by("id")
    return [e for e in events if all(e.details.get(k) == v for k, v in details.items())]


def test_an_agent_lists_and_reads_only_its_patients(world: Any, bot: Any, as_bot: AgentClient) -> None:
    listed = as_bot.get("/api/v1/patients/")
    assert listed.status_code == 200
    assert [p["id"] for p in items(listed)] == [str(world.alice.pk)]
    assert as_bot.get(f"/api/v1/patients/{world.alice.pk}/").status_code == 200
    assert as_bot.get(f"/api/v1/patients/{world.bob.pk}/").status_code == 404, "another patient: as if missing"
    assert as_bot.get(f"/api/v1/patients/{world.bob.pk}/records/").status_code == 404
    denied = AuditEvent.objects.filter(action="patient.read", outcome="denied").get()
    assert denied.resource_id == world.bob.pk and denied.actor_id == bot.pk and denied.actor_role == "agent"
    me = as_bot.get("/api/v1/me/")
    assert {k: me.json()[k] for k in ("id", "role")} == {"id": str(bot.pk), "role": "agent"}
    found = as_bot.post("/api/v1/patients/search/", {"field": "mrn", "value": world.bob.mrn})
    assert found.status_code == 200 and found.json() == []


def test_every_agent_request_is_audited_with_how_it_authenticated_and_the_scope_used(world: Any, bot: Any) -> None:
    token, raw = agent_tokens.issue_token(bot)
    AgentClient(bearer(raw)).get(f"/api/v1/patients/{world.alice.pk}/records/")

    (event,) = requests_audited(route="patient-records")
    assert (event.actor_id, event.actor_role, event.outcome) == (bot.pk, "agent", "success")
    assert event.details == {
        "auth": "token",
        "token_prefix": token.prefix,
        "scope": "records:read",
        "method": "GET",
        "route": "patient-records",
        "status": 200,
    }
    everything = "".join(e.canonical().decode() for e in AuditEvent.objects.all())
    assert raw not in everything and raw.split("_")[2] not in everything
    assert agent_tokens.check_token(raw).token.last_used_ip == "127.0.0.1"


def test_agents_need_no_csrf_token_and_write_within_their_scopes(world: Any, bot: Any, as_bot: AgentClient) -> None:
    created = as_bot.post(f"/api/v1/patients/{world.alice.pk}/records/", {"diagnosis": "agent summary"})
    assert created.status_code == 201
    with system_context("check"):
        record = MedicalRecord.objects.get(pk=created.json()["id"])
        assert record.provider_id == bot.pk and record.diagnosis == "agent summary"
        assert MedicalRecordRevision.objects.get(record=record).changed_by == bot.pk
    assert as_bot.patch(f"/api/v1/records/{record.pk}/", {"notes": "x"}).status_code == 403, "agents never amend"
    assert as_bot.post(f"/api/v1/patients/{world.bob.pk}/records/", {"diagnosis": "x"}).status_code == 404

    changed = as_bot.patch(f"/api/v1/patients/{world.alice.pk}/", {"phone": "+1 555 0101"})
    assert changed.status_code == 200 and changed.json()["phone"] == "+1 555 0101"
    assert as_bot.patch(f"/api/v1/patients/{world.alice.pk}/", {"full_name": "Renamed"}).status_code == 400

    booking = {"patient": str(world.alice.pk), "provider": str(world.doctor.pk), "scheduled_at": "2030-01-02T10:00Z"}
    booked = as_bot.post("/api/v1/appointments/", booking)
    assert booked.status_code == 201 and booked.json()["status"] == "requested"
    assert as_bot.post("/api/v1/appointments/", {**booking, "status": "confirmed"}).status_code == 400
    unbooked = {k: v for k, v in booking.items() if k != "provider"}
    assert as_bot.post("/api/v1/appointments/", unbooked).status_code == 400
    url = f"/api/v1/appointments/{booked.json()['id']}/"
    assert as_bot.patch(url, {"status": "confirmed"}).status_code == 400, "a clinician confirms"
    assert as_bot.patch(url, {"status": "cancelled"}).status_code == 200
    assert items(as_bot.get(f"/api/v1/appointments/?patient={world.alice.pk}"))[0]["status"] == "cancelled"


def test_an_agent_with_records_scopes_only_works_on_records_without_reading_the_patient(world: Any) -> None:
    lab = make_agent("lab-bot", ("records:read", "records:write"), care_team_of=world.doctor)
    client = AgentClient(bearer(token_for(lab)))

    assert client.get(f"/api/v1/patients/{world.alice.pk}/").status_code == 403, "no patients:read"
    assert client.get("/api/v1/patients/").status_code == 403
    assert client.post(f"/api/v1/patients/{world.alice.pk}/records/", {"lab_results": {"hb": 13.5}}).status_code == 201
    assert [r["lab_results"] for r in items(client.get(f"/api/v1/patients/{world.alice.pk}/records/"))] == [
        {"hb": 13.5}
    ]
    assert client.get("/api/v1/appointments/").status_code == 403
    denied = AuditEvent.objects.filter(action="api.denied").order_by("id")
    assert [e.details["scope"] for e in denied] == ["patients:read", "patients:read", "appointments:read"]
    assert [e.details.get("scope") for e in requests_audited(status=403)] == [None, None, None]


def test_what_no_scope_opens_stays_closed_to_every_agent(world: Any, as_bot: AgentClient) -> None:
    assert as_bot.post(f"/api/v1/patients/{world.alice.pk}/emergency-access/", {"reason": "x" * 30}).status_code == 403
    assert as_bot.get(f"/api/v1/patients/{world.alice.pk}/export/").status_code == 403
    register = {"full_name": "New Person", "date_of_birth": "1990-01-01", "mrn": "MRN-NEW"}
    assert as_bot.post("/api/v1/patients/", register).status_code == 403
    denied = AuditEvent.objects.filter(action="api.denied").order_by("id")
    assert [e.details["scope"] for e in denied] == [None, None, None]


def test_a_token_scoped_below_its_agent_gets_only_its_own_scopes(world: Any, bot: Any) -> None:
    client = AgentClient(bearer(token_for(bot, token_scopes=["records:read"])))

    assert client.get(f"/api/v1/patients/{world.alice.pk}/records/").status_code == 200
    assert client.get(f"/api/v1/patients/{world.alice.pk}/").status_code == 403
    assert client.post(f"/api/v1/patients/{world.alice.pk}/records/", {"diagnosis": "x"}).status_code == 403


@pytest.mark.parametrize("how", ["malformed", "unknown", "revoked", "expired", "disabled", "scheme"])
def test_a_credential_that_does_not_authenticate_is_a_401_naming_bearer(world: Any, bot: Any, how: str) -> None:
    token, raw = agent_tokens.issue_token(bot, expires_days=1)
    header = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    if how == "malformed":
        header = bearer("npa_nope")
    elif how == "unknown":
        header = bearer(f"npa_{token.prefix}_" + "0" * 64)
    elif how == "revoked":
        agent_tokens.revoke_token(token.prefix)
    elif how == "expired":
        past = timezone.now() - dt.timedelta(days=2)
        ApiToken.objects.filter(pk=token.pk).update(created_at=past, expires_at=past + dt.timedelta(days=1))
    elif how == "disabled":
        agents.disable_agent(bot)
        ApiToken.objects.filter(pk=token.pk).update(revoked_at=None)  # refused for the agent, not the token
    else:
        header = {"HTTP_AUTHORIZATION": f"Basic {raw}"}
    # Signed in as a clinician as well (password and code): a refused credential is never topped up by a session.
    client = sign_in_as(Client(enforce_csrf_checks=True), world.doctor)

    answer = AgentClient(header, client).get("/api/v1/patients/")

    assert answer.status_code == 401 and answer["WWW-Authenticate"] == REALM
    (event,) = requests_audited()
    assert event.outcome == "denied" and event.actor_id is None
    assert event.details["reason"] == how and event.details["status"] == 401


def test_unauthenticated_api_calls_are_401_with_www_authenticate_and_pages_ignore_bearer(as_bot: AgentClient) -> None:
    anonymous = Client().get("/api/v1/patients/", secure=True)
    assert anonymous.status_code == 401 and anonymous["WWW-Authenticate"] == REALM
    page = as_bot.get("/")
    assert page.status_code in (200, 302) and not requests_audited(), "no agent credential outside /api/"


def test_a_clinicians_session_is_untouched(world: Any) -> None:
    client = sign_in_as(Client(enforce_csrf_checks=True), world.doctor)
    assert client.get("/api/v1/patients/", secure=True).status_code == 200
    assert client.post("/api/v1/patients/search/", {}, content_type="application/json", secure=True).status_code == 403


def test_a_bearer_request_owes_no_second_factor_and_ignores_an_unverified_session(
    world: Any, bot: Any, as_bot: AgentClient
) -> None:
    import os

    from neonpro.accounts.mfa_models import TOTPDevice

    # Even an agent someone enrolled an authenticator for: a token request has no session to verify.
    TOTPDevice.create_with_key(user=bot, key=os.urandom(20), confirmed=True)
    assert as_bot.get("/api/v1/me/").status_code == 200
    # A clinician's session that skipped the code, beside the agent's token: the token decides.
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.doctor)
    beside = AgentClient(as_bot.headers, client)
    answer = beside.get("/api/v1/me/")
    assert answer.status_code == 200 and answer.json()["id"] == str(bot.pk)
    assert client.get("/api/v1/me/", secure=True).status_code == 403, "without the token: mfa_required"


@pytest.fixture
def certified(world: Any, bot: Any, settings: Any) -> Iterator[tuple[Any, Any]]:
    settings.NEONPRO_TRUSTED_PROXIES = ["127.0.0.0/8"]
    ca = make_ca()
    certificate = ca.issue("care-bot.agents", days=2)
    agent_certificates.register_certificate(bot, pem(certificate))
    yield ca, certificate


def test_a_verified_client_certificate_from_the_trusted_proxy_is_its_agent(
    world: Any, bot: Any, certified: Any
) -> None:
    _, certificate = certified
    client = AgentClient(proxy_headers(certificate))

    answer = client.get("/api/v1/patients/")

    assert answer.status_code == 200 and [p["id"] for p in items(answer)] == [str(world.alice.pk)]
    (event,) = requests_audited()
    assert event.details["auth"] == "certificate" and event.actor_id == bot.pk
    assert event.details["fingerprint"] == agent_certificates.fingerprint_of(certificate)


def test_certificate_headers_are_ignored_from_anyone_but_the_trusted_proxy(certified: Any, settings: Any) -> None:
    _, certificate = certified
    settings.NEONPRO_TRUSTED_PROXIES = ["10.0.0.1"]

    answer = AgentClient(proxy_headers(certificate)).get("/api/v1/patients/")

    assert answer.status_code == 401 and answer["WWW-Authenticate"] == REALM
    assert not requests_audited(), "nothing was presented, as far as the app is concerned"
    assert AuditEvent.objects.filter(action="api.denied").exists()


@pytest.mark.parametrize("how", ["not_verified", "unknown", "revoked", "expired", "malformed"])
def test_a_certificate_that_does_not_authenticate_is_a_401(certified: Any, how: str) -> None:
    ca, certificate = certified
    headers = proxy_headers(certificate)
    if how == "not_verified":
        headers = proxy_headers(certificate, verify="FAILED:certificate has expired")
    elif how == "unknown":
        headers = proxy_headers(ca.issue("someone-else"))
    elif how == "revoked":
        agent_certificates.revoke_certificate(agent_certificates.fingerprint_of(certificate))
    elif how == "expired":
        agent_certificates.AgentCertificate.objects.update(not_after=timezone.now() - dt.timedelta(seconds=1))
    else:
        headers = {**headers, "HTTP_X_SSL_CLIENT_CERT": "-----BEGIN%20CERTIFICATE-----%0Anope"}

    answer = AgentClient(headers).get("/api/v1/patients/")

    assert answer.status_code == 401 and answer["WWW-Authenticate"] == REALM
    (event,) = requests_audited()
    assert event.details["reason"] == how and event.details["auth"] == "certificate"


def test_a_bearer_token_comes_before_a_certificate(world: Any, certified: Any) -> None:
    _, certificate = certified
    other = make_agent("other-bot", ("patients:read",), patients=[world.bob])
    headers = {**proxy_headers(certificate), **bearer(token_for(other))}

    answer = AgentClient(headers).get("/api/v1/patients/")

    assert [p["id"] for p in items(answer)] == [str(world.bob.pk)]


@pytest.mark.parametrize(
    ("remote", "trusted", "expected"),
    [
        ("127.0.0.1", ["127.0.0.1"], True),
        ("10.1.2.3", ["10.0.0.0/8", "192.168.0.1"], True),
        ("::1", ["::1/128"], True),
        ("10.1.2.3", [], False),
        ("10.1.2.3", ["10.1.2.4"], False),
        ("", ["127.0.0.1"], False),
        ("unix:/run/web.sock", ["127.0.0.1"], False),
    ],
)
def test_trusted_proxy_is_an_address_in_the_configured_list(
    settings: Any, remote: str, trusted: list[str], expected: bool
) -> None:
    settings.NEONPRO_TRUSTED_PROXIES = trusted
    request = RequestFactory().get("/api/v1/me/", REMOTE_ADDR=remote)
    assert agent_auth.trusted_proxy(request) is expected


@pytest.mark.parametrize(
    ("server", "trusted", "expected"),
    [
        (("/run/neonpro/web.sock", None), ["unix"], True),
        (("/run/neonpro/web.sock", None), ["127.0.0.1"], False),
        (("127.0.0.1", 8000), ["unix"], False),
        (None, ["unix"], False),
    ],
)
def test_the_unix_socket_is_trusted_only_when_listed(
    settings: Any, server: Any, trusted: list[str], expected: bool
) -> None:
    from django.core.handlers.asgi import ASGIRequest

    settings.NEONPRO_TRUSTED_PROXIES = trusted
    scope = {"type": "http", "method": "GET", "path": "/api/v1/me/", "headers": [], "query_string": b""}
    # uvicorn --uds --proxy-headers: the client is whatever X-Forwarded-For said.
    scope.update(client=("203.0.113.9", 0), **({"server": server} if server else {}))
    assert agent_auth.trusted_proxy(ASGIRequest(scope, io.BytesIO())) is expected


def test_each_agent_and_each_user_has_a_rate_limit_answered_with_retry_after(
    world: Any, bot: Any, settings: Any
) -> None:
    settings.NEONPRO_API_RATE_AGENT = "2/min"
    settings.NEONPRO_API_RATE_USER = "1/min"
    client = AgentClient(bearer(token_for(bot)))
    assert [client.get("/api/v1/me/").status_code for _ in range(3)] == [200, 200, 429]
    limited = client.get("/api/v1/me/")
    assert limited.status_code == 429 and 0 < int(limited["Retry-After"]) <= 60
    other = AgentClient(bearer(token_for(make_agent("other-bot", ("patients:read",), patients=[world.bob]))))
    assert other.get("/api/v1/me/").status_code == 200, "each agent has its own budget"
    doctor = sign_in_as(Client(), world.doctor)
    assert [doctor.get("/api/v1/me/", secure=True).status_code for _ in range(2)] == [200, 429]
    assert requests_audited(status=429)


def test_a_rate_limit_can_be_switched_off(world: Any, bot: Any, settings: Any) -> None:
    settings.NEONPRO_API_RATE_AGENT = "off"
    client = AgentClient(bearer(token_for(bot)))
    assert {client.get("/api/v1/me/").status_code for _ in range(3)} == {200}


def test_a_body_over_the_limit_is_a_413_before_it_is_parsed(world: Any, as_bot: AgentClient, settings: Any) -> None:
    settings.NEONPRO_API_MAX_BODY_BYTES = 200
    url = f"/api/v1/patients/{world.alice.pk}/records/"

    assert as_bot.post(url, {"diagnosis": "x" * 300}).status_code == 413
    assert as_bot.post(url, {"diagnosis": "x" * 100}).status_code == 201
    doctor = sign_in_as(Client(), world.doctor)
    big = doctor.post(url, {"notes": "y" * 300}, content_type="application/json", secure=True)
    assert big.status_code == 413
    with system_context("count"):
        assert MedicalRecord.objects.count() == 1


def test_an_agent_request_that_cannot_be_audited_is_refused(bot: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    client = AgentClient(bearer(token_for(bot)))

    def unavailable(action: str, **kwargs: Any) -> None:
        # What record_event raises when no append is possible (tests/audit/test_attacks.py makes it happen
        # for real; here the test's own transaction already holds the chain lock it would take).
        raise AuditUnavailableError("the chain lock is held by another session")

    monkeypatch.setattr(agent_auth, "record_event", unavailable)
    answer = client.get("/api/v1/me/")

    assert answer.status_code == 503 and answer["Retry-After"] == "30"


def test_has_scope_passes_other_roles_and_asks_agents_for_the_views_scope(world: Any, bot: Any) -> None:
    from rest_framework.request import Request

    from neonpro.security.api import HasScope
    from neonpro.security.context import Identity, acting_as, identity_for_user

    class View:
        required_scopes = {"GET": "records:read"}

    def allowed(identity: Identity, method: str) -> bool:
        with acting_as(identity):
            return HasScope().has_permission(Request(getattr(RequestFactory(), method.lower())("/")), View())

    setattr(bot, "agent_scopes", ("records:read",))  # noqa: B010 - what the token check sets
    reader = identity_for_user(bot)
    assert reader.scopes == ("records.read",)
    assert allowed(reader, "GET") and allowed(reader, "HEAD")
    assert not allowed(reader, "POST"), "the view names no scope for POST"
    setattr(bot, "agent_scopes", ())  # noqa: B010
    assert not allowed(identity_for_user(bot), "GET")
    assert allowed(identity_for_user(world.doctor), "POST"), "clinicians' role rules decide elsewhere"


def test_the_services_refuse_an_agent_what_its_scopes_do_not_name(world: Any) -> None:
    """Behind the views' scope checks, the services check again (a view that forgot is no hole)."""
    from django.core.exceptions import PermissionDenied

    from neonpro.security.context import acting_as, identity_for_user
    from patients.models import AgentAccess, Patient
    from patients.services import update_patient
    from records.services import create_record, update_appointment

    reader = make_agent("reader-bot", ("patients:read", "records:read", "appointments:read"), patients=[world.alice])
    setattr(reader, "agent_scopes", ("patients:read", "records:read", "appointments:read"))  # noqa: B010
    identity = identity_for_user(reader)
    with acting_as(identity):
        alice = Patient.objects.get(pk=world.alice.pk)
        with pytest.raises(PermissionDenied, match="lacks patients:write"):
            update_patient(identity, alice, {"phone": "+1 555 0199"})
        with pytest.raises(Patient.DoesNotExist):  # not a patient it may write for: as if missing
            create_record(identity, alice.pk, {"diagnosis": "x"})
        (access,) = AgentAccess.objects.all()
        assert str(access) == f"Agent access {access.pk}"
    with system_context("an appointment to cancel"):
        from records.models import Appointment

        appointment = Appointment.objects.create(
            patient=world.alice, provider=world.doctor, scheduled_at=timezone.now() + dt.timedelta(days=1)
        )
    with acting_as(identity), pytest.raises(PermissionDenied, match="Only clinicians on the patient's care team"):
        update_appointment(identity, Appointment.objects.get(pk=appointment.pk), {"status": "cancelled"})
