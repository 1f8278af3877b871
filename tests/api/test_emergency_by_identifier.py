"""Break-glass by a searchable identifier (``POST /api/v1/emergency-access/``): the value in the
body, the lookup audited like a search, and an identifier that names no single patient
answered exactly like an unknown patient id — a 404 that counts against the ceilings."""

from __future__ import annotations

from typing import Any

import pytest

from neonpro.security.context import system_context
from patients.models import EmergencyAccessGrant
from tests.api.conftest import audit_events
from tests.errors import error_code, error_fields, error_of

pytestmark = pytest.mark.django_db
URL = "/api/v1/emergency-access/"
REASON = "Patient arrived unconscious; no care-team clinician on site."


def granted(world: Any) -> bool:
    """Whether the outsider holds any grant (other tests commit grants of their own personas)."""
    return EmergencyAccessGrant._base_manager.filter(clinician=world.outsider).exists()


def ask(client: Any, identifier: str, value: str, **extra: Any) -> Any:
    return client.post(URL, {"identifier": identifier, "value": value, "reason": REASON, **extra})


@pytest.mark.parametrize(
    ("identifier", "value"),
    [("mrn", "mrn-000002"), ("ssn", "900550002"), ("email", "CANARY2@example.org"), ("phone", "+1 (555) 0002")],
)
def test_an_off_team_clinician_breaks_the_glass_by_identifier(
    api: Any, world: Any, caplog: Any, identifier: str, value: str
) -> None:
    outsider = api(world.outsider)

    granted = ask(outsider, identifier, value, minutes=15)

    assert granted.status_code == 201, granted.content
    body = granted.json()
    assert body["patient"] == str(world.bob.pk)
    assert outsider.get(f"/api/v1/patients/{world.bob.pk}/").status_code == 200
    [search] = audit_events(action="patient.search", actor_id=world.outsider.pk)
    assert search.details == {"field": identifier, "count": 1, "ids": [str(world.bob.pk)], "for": "break_glass"}
    assert search.purpose == "emergency" and search.actor_id == world.outsider.pk
    [start] = audit_events(action="break_glass.start", outcome="success", actor_id=world.outsider.pk)
    assert start.patient_id == world.bob.pk and start.details["minutes"] == 15
    for event in audit_events():
        assert value.lower() not in event.canonical().decode().lower()
    assert value not in caplog.text


@pytest.mark.parametrize(
    ("identifier", "value"), [("mrn", "MRN-999999"), ("ssn", "123-45-6789"), ("email", "nobody@example.org")]
)
def test_an_unknown_identifier_answers_like_an_unknown_patient_id(
    api: Any, world: Any, identifier: str, value: str
) -> None:
    import uuid

    outsider = api(world.outsider)

    by_identifier = ask(outsider, identifier, value)
    by_id = outsider.post(f"/api/v1/patients/{uuid.uuid4()}/emergency-access/", {"reason": REASON})

    assert by_identifier.status_code == by_id.status_code == 404
    assert error_of(by_identifier) == error_of(by_id)
    denied = audit_events(action="break_glass.start", outcome="denied", actor_id=world.outsider.pk)
    assert [e.details["refused"] for e in denied] == ["unknown_patient", "unknown_patient"]
    assert denied[0].details["identifier"] == identifier
    assert audit_events(action="patient.search", actor_id=world.outsider.pk)[0].details["count"] == 0
    assert not granted(world)


def test_an_identifier_shared_by_two_patients_is_not_an_answer(api: Any, world: Any, patient_factory: Any) -> None:
    with system_context("test: a second patient with bob's email (a family address)"):
        patient_factory(email=world.bob.email)

    answer = ask(api(world.outsider), "email", world.bob.email)

    assert answer.status_code == 404  # neither which patient, nor that there are two
    assert audit_events(action="patient.search", actor_id=world.outsider.pk)[0].details["count"] == 2
    assert not granted(world)


def test_probing_identifiers_hits_the_ceiling(api: Any, world: Any, settings: Any) -> None:
    settings.NEONPRO_BREAK_GLASS_PER_HOUR = 2
    outsider = api(world.outsider)

    answers = [ask(outsider, "mrn", f"MRN-99999{n}") for n in range(2)]
    limited = ask(outsider, "mrn", world.bob.mrn)

    assert [a.status_code for a in answers] == [404, 404]
    assert limited.status_code == 429 and error_code(limited) == "break_glass_limit"
    assert int(limited["Retry-After"]) > 0
    assert not granted(world)


def test_grants_do_not_stack_by_identifier_either(api: Any, world: Any) -> None:
    outsider = api(world.outsider)
    assert ask(outsider, "mrn", world.bob.mrn).status_code == 201

    again = ask(outsider, "ssn", world.bob.ssn)

    assert again.status_code == 409 and error_code(again) == "already_granted"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"identifier": "full_name", "value": "Bob Canary", "reason": REASON}, "identifier"),
        ({"identifier": "mrn", "value": "", "reason": REASON}, "value"),
        ({"identifier": "mrn", "reason": REASON}, "value"),
        ({"identifier": "mrn", "value": "MRN-000002", "reason": "urgent"}, "reason"),
        ({"identifier": "mrn", "value": "MRN-000002", "reason": REASON, "minutes": 0}, "minutes"),
        ({"identifier": "mrn", "value": "MRN-000002", "reason": REASON, "patient": "x"}, "patient"),
    ],
)
def test_bad_requests_are_400s_that_grant_nothing(api: Any, world: Any, body: Any, field: str) -> None:
    answer = api(world.outsider).post(URL, body)

    assert answer.status_code == 400 and field in error_fields(answer)
    assert not granted(world)
    assert not audit_events(action="patient.search", actor_id=world.outsider.pk)  # refused before any lookup


@pytest.mark.parametrize("who", ["alice_user", "admin"])
def test_only_clinicians_break_the_glass(api: Any, world: Any, who: str) -> None:
    assert ask(api(getattr(world, who)), "mrn", world.bob.mrn).status_code == 403
    assert not audit_events(action="patient.search", actor_id=getattr(world, who).pk)


def test_the_service_checks_what_the_view_checks(world: Any) -> None:
    from django.core.exceptions import PermissionDenied, ValidationError

    from neonpro.security.context import Identity
    from patients.break_glass import request_emergency_access_by_identifier as by_identifier

    doctor = Identity(user_id=world.doctor.pk, role="clinician")
    with pytest.raises(PermissionDenied):
        by_identifier(Identity(user_id=world.alice_user.pk, role="patient"), identifier="mrn", value="x", reason=REASON)
    with pytest.raises(ValidationError, match="identifier"):
        by_identifier(doctor, identifier="full_name", value="x", reason=REASON)
    for value in ("", "   ", "x" * 255, None):
        with pytest.raises(ValidationError, match="value"):
            by_identifier(doctor, identifier="mrn", value=value, reason=REASON)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="reason"):
        by_identifier(doctor, identifier="mrn", value="MRN-1", reason="short")
