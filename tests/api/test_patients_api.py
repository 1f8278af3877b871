"""Patient API: every role, every outsider gets 404, every access audited, no PHI in the audit."""

from __future__ import annotations

import uuid

import pytest

from tests.api.conftest import audit_events
from tests.errors import error_fields, error_of

pytestmark = pytest.mark.django_db


def url(patient: object, suffix: str = "") -> str:
    return f"/api/v1/patients/{patient.pk}/{suffix}"  # type: ignore[attr-defined]


def test_patient_reads_own_record_with_masked_ssn(api, world) -> None:  # type: ignore[no-untyped-def]
    response = api(world.alice_user).get(url(world.alice))
    assert response.status_code == 200
    body = response.json()
    assert body["full_name"] == "Alice Canary"
    assert body["ssn"].startswith("***-**-") and world.alice.ssn not in response.content.decode()
    assert response["Cache-Control"] == "no-store"
    [event] = audit_events(action="patient.read", resource_id=world.alice.pk)
    assert (event.actor_id, event.actor_role, event.outcome) == (world.alice_user.pk, "patient", "success")
    assert event.request_id and event.source_ip


@pytest.mark.parametrize("who", ["bob_user", "outsider"])
def test_outsiders_get_404_and_a_denied_audit_event(api, world, who) -> None:  # type: ignore[no-untyped-def]
    response = api(getattr(world, who)).get(url(world.alice))
    assert response.status_code == 404
    assert error_of(response) == {"code": "not_found", "message": "Not found.", "fields": {}}
    [event] = audit_events(action="patient.read", resource_id=world.alice.pk)
    assert event.outcome == "denied"


def test_unknown_and_malformed_ids_look_the_same_as_forbidden_ones(api, world) -> None:  # type: ignore[no-untyped-def]
    assert api(world.doctor).get(f"/api/v1/patients/{uuid.uuid4()}/").status_code == 404
    assert api(world.doctor).get("/api/v1/patients/not-a-uuid/").status_code == 404


def test_clinician_lists_only_care_team_patients(api, world) -> None:  # type: ignore[no-untyped-def]
    response = api(world.doctor).get("/api/v1/patients/")
    assert response.status_code == 200
    assert [p["id"] for p in response.json()] == [str(world.alice.pk)]
    [event] = audit_events(action="patient.list")
    # Issue 16: a list's audit event names the page (count, first and last ids), not every id.
    page = str(world.alice.pk)
    assert event.details == {"count": 1, "first": page, "last": page, "cursor": False, "more": False}


@pytest.mark.parametrize("who", ["admin", None])
def test_admins_and_anonymous_users_have_no_access_to_phi(api, world, who) -> None:  # type: ignore[no-untyped-def]
    user = getattr(world, who) if who else None
    expected = 403 if who else 401  # nobody signed in: 401, with WWW-Authenticate (docs/agents.md)
    assert api(user).get("/api/v1/patients/").status_code == expected
    assert api(user).get(url(world.alice)).status_code == expected


def test_search_by_body_finds_without_logging_the_value(api, world, caplog) -> None:  # type: ignore[no-untyped-def]
    response = api(world.doctor).post("/api/v1/patients/search/", {"field": "ssn", "value": world.alice.ssn})
    assert response.status_code == 200
    assert [p["id"] for p in response.json()] == [str(world.alice.pk)]
    miss = api(world.doctor).post("/api/v1/patients/search/", {"field": "ssn", "value": world.bob.ssn})
    assert miss.json() == [], "bob exists but is not on the care team"
    events = audit_events(action="patient.search")
    assert len(events) == 2
    for event in events:
        assert world.alice.ssn not in event.canonical().decode()
        assert event.details["field"] == "ssn"
    assert world.alice.ssn not in caplog.text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"field": "full_name", "value": "Alice"}, "field"),
        ({"field": "ssn"}, "value"),
        ({"field": "ssn", "value": "x" * 300}, "value"),
    ],
)
def test_search_rejects_bad_input_clearly(api, world, body, field) -> None:  # type: ignore[no-untyped-def]
    response = api(world.doctor).post("/api/v1/patients/search/", body)
    assert response.status_code == 400
    assert field in error_fields(response)


def test_clinician_registers_a_patient_and_joins_the_care_team(api, world) -> None:  # type: ignore[no-untyped-def]
    response = api(world.outsider).post(
        "/api/v1/patients/",
        {"full_name": "New Person", "date_of_birth": "1990-02-03", "mrn": "MRN-NEW-1", "ssn": "123-45-6789"},
    )
    assert response.status_code == 201, response.content
    new_id = response.json()["id"]
    assert api(world.outsider).get(f"/api/v1/patients/{new_id}/").status_code == 200
    assert api(world.doctor).get(f"/api/v1/patients/{new_id}/").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"full_name": "X", "date_of_birth": "1990-02-30", "mrn": "M1"}, "date_of_birth"),
        ({"full_name": "X", "date_of_birth": "1990-02-03", "mrn": "M1", "ssn": "12"}, "ssn"),
        ({"full_name": "X" * 201, "date_of_birth": "1990-02-03", "mrn": "M1"}, "full_name"),
        ({"full_name": "X", "date_of_birth": "1990-02-03"}, "mrn"),
        ({"full_name": "X", "date_of_birth": "1990-02-03", "mrn": "M1", "email": "not-an-email"}, "email"),
    ],
)
def test_registration_validates_and_writes_nothing(api, world, body, field) -> None:  # type: ignore[no-untyped-def]
    response = api(world.doctor).post("/api/v1/patients/", body)
    assert response.status_code == 400
    assert field in error_fields(response)
    assert audit_events(action="patient.create", actor_id=world.doctor.pk) == []


def test_patients_cannot_register_patients(api, world) -> None:  # type: ignore[no-untyped-def]
    body = {"full_name": "X", "date_of_birth": "1990-02-03", "mrn": "M1"}
    assert api(world.alice_user).post("/api/v1/patients/", body).status_code == 403


def test_patient_updates_contact_details_but_not_identity(api, world) -> None:  # type: ignore[no-untyped-def]
    ok = api(world.alice_user).patch(url(world.alice), {"phone": "+1 555 999 0000", "contact_by_sms": True})
    assert ok.status_code == 200, ok.content
    assert ok.json()["phone"] == "+1 555 999 0000"
    refused = api(world.alice_user).patch(url(world.alice), {"full_name": "Someone Else"})
    assert refused.status_code == 400
    assert "full_name" in error_fields(refused)
    assert api(world.alice_user).get(url(world.alice)).json()["full_name"] == "Alice Canary"
    [event] = audit_events(action="patient.update")
    assert event.details == {"fields": ["contact_by_sms", "phone"]}


@pytest.mark.parametrize(
    ("body", "field"),
    [({"email": "nope"}, "email"), ({"date_of_birth": "yesterday"}, "date_of_birth"), ({"colour": "blue"}, "colour")],
)
def test_bad_updates_are_rejected_and_change_nothing(api, world, body, field) -> None:  # type: ignore[no-untyped-def]
    response = api(world.doctor).patch(url(world.alice), body)
    assert response.status_code == 400
    assert field in error_fields(response)
    assert api(world.doctor).get(url(world.alice)).json()["email"] == world.alice.email


def test_outsider_cannot_update(api, world) -> None:  # type: ignore[no-untyped-def]
    assert api(world.outsider).patch(url(world.alice), {"phone": "+1 555 000 0000"}).status_code == 404
    [event] = audit_events(action="patient.update")
    assert event.outcome == "denied"


def test_export_returns_the_patients_own_bundle(api, world) -> None:  # type: ignore[no-untyped-def]
    response = api(world.alice_user).get(url(world.alice, "export/"))
    assert response.status_code == 200
    bundle = response.json()
    assert bundle["patient"]["ssn"] == world.alice.ssn and "records" in bundle and "appointments" in bundle
    assert api(world.bob_user).get(url(world.alice, "export/")).status_code == 404
    assert [e.outcome for e in audit_events(action="patient.export")] == ["success", "denied"]


def test_an_unavailable_key_provider_fails_closed_with_503(api, world, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from keys.exceptions import ProviderError
    from keys.keyring import keyring
    from keys.providers.local import LocalKeyProvider

    def down(*args: object, **kwargs: object) -> bytes:
        raise ProviderError("HSM unreachable", permanent=False)

    client = api(world.alice_user)  # signed in (and audited) while the provider is up
    client.client.raise_request_exception = False  # the answer is what a client gets: the handler's 503
    keyring.clear()
    monkeypatch.setattr(LocalKeyProvider, "unwrap_key", down)
    response = client.get(url(world.alice))
    assert response.status_code == 503
    assert error_of(response) == {
        "code": "service_unavailable",
        "message": "Encryption service unavailable; try again shortly.",
        "fields": {},
    }
    assert world.alice.full_name not in response.content.decode()
    # The audit log is keyed (HMAC under the audit key, behind the same provider): with the
    # provider down nothing can be audited either, so nothing was read — no patient.read.
    assert not audit_events(action="patient.read", actor_id=world.alice_user.pk)
