"""Records and appointments API: care-team writes, read-only break-glass, strict validation."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.utils import timezone

from neonpro.accounts.models import Notification
from neonpro.security.context import system_context
from patients.models import EmergencyAccessGrant
from tests.api.conftest import audit_events
from tests.errors import error_fields

pytestmark = pytest.mark.django_db
REASON = "Patient arrived unconscious; no care-team clinician on site."


def records_url(patient: object) -> str:
    return f"/api/v1/patients/{patient.pk}/records/"  # type: ignore[attr-defined]


def test_care_team_clinician_writes_and_reads_records(api, world) -> None:  # type: ignore[no-untyped-def]
    body = {"diagnosis": "Type 2 diabetes", "medications": "Metformin 500 mg", "lab_results": {"hba1c": 7.9}}
    created = api(world.doctor).post(records_url(world.alice), body)
    assert created.status_code == 201, created.content
    record_id = created.json()["id"]
    assert api(world.doctor).get(f"/api/v1/records/{record_id}/").json()["lab_results"] == {"hba1c": 7.9}
    assert api(world.alice_user).get(records_url(world.alice)).json()[0]["diagnosis"] == "Type 2 diabetes"
    assert api(world.bob_user).get(f"/api/v1/records/{record_id}/").status_code == 404
    event = audit_events(action="record.create")[0]
    assert event.details == {"fields": ["diagnosis", "lab_results", "medications"]}
    assert "diabetes" not in event.canonical().decode().lower()


def test_allergies_are_written_amended_kept_in_history_and_exported(api, world) -> None:  # type: ignore[no-untyped-def]
    created = api(world.doctor).post(records_url(world.alice), {"diagnosis": "Urticaria", "allergies": "Latex"})
    assert created.status_code == 201 and created.json()["allergies"] == "Latex"
    record_id = created.json()["id"]
    amended = api(world.doctor).patch(f"/api/v1/records/{record_id}/", {"allergies": "Latex, penicillin"})
    assert amended.status_code == 200 and amended.json()["allergies"] == "Latex, penicillin"
    with system_context("test: read the history"):
        from records.models import MedicalRecordRevision

        states = MedicalRecordRevision.objects.filter(record_id=record_id).order_by("record_version")
        assert [r.allergies for r in states] == ["Latex", "Latex, penicillin"]
    [exported] = api(world.alice_user).get(f"/api/v1/patients/{world.alice.pk}/export/").json()["records"]
    assert exported["allergies"] == "Latex, penicillin"
    [event] = audit_events(action="record.update")
    assert event.details == {"fields": ["allergies"]} and "penicillin" not in event.canonical().decode()


@pytest.mark.parametrize(
    ("body", "field"),
    [({"record_date": "2024-13-01"}, "record_date"), ({"diagnosis": ["a"]}, "diagnosis"), ({"secret": 1}, "secret")],
)
def test_record_validation(api, world, body, field) -> None:  # type: ignore[no-untyped-def]
    response = api(world.doctor).post(records_url(world.alice), body)
    assert response.status_code == 400
    assert field in error_fields(response)


def test_outsiders_and_patients_cannot_write_records(api, world) -> None:  # type: ignore[no-untyped-def]
    assert api(world.outsider).post(records_url(world.alice), {"diagnosis": "x"}).status_code == 404
    assert api(world.doctor).post(records_url(world.bob), {"diagnosis": "x"}).status_code == 404
    assert api(world.alice_user).post(records_url(world.alice), {"diagnosis": "x"}).status_code == 403


def test_break_glass_is_audited_notifies_admins_and_is_read_only(api, world) -> None:  # type: ignore[no-untyped-def]
    client = api(world.outsider)
    assert client.get(f"/api/v1/patients/{world.bob.pk}/").status_code == 404
    short = client.post(f"/api/v1/patients/{world.bob.pk}/emergency-access/", {"reason": "urgent"})
    assert short.status_code == 400 and "reason" in error_fields(short)
    granted = client.post(f"/api/v1/patients/{world.bob.pk}/emergency-access/", {"reason": REASON, "minutes": 30})
    assert granted.status_code == 201, granted.content
    assert client.get(f"/api/v1/patients/{world.bob.pk}/").status_code == 200
    assert client.get(records_url(world.bob)).status_code == 200
    assert client.patch(f"/api/v1/patients/{world.bob.pk}/", {"phone": "+1 555 000 1111"}).status_code == 403
    assert client.post(records_url(world.bob), {"diagnosis": "x"}).status_code == 403

    [start] = audit_events(action="break_glass.start", outcome="success", actor_id=world.outsider.pk)
    assert start.purpose == "emergency" and start.patient_id == world.bob.pk
    assert REASON[:20] not in start.canonical().decode()
    [read] = audit_events(action="patient.read", outcome="success", actor_id=world.outsider.pk)
    assert read.purpose == "emergency"
    assert Notification.objects.filter(recipient=world.admin, kind="break_glass").count() == 1

    with system_context("expire"):
        EmergencyAccessGrant.objects.update(
            granted_at=timezone.now() - dt.timedelta(hours=2), expires_at=timezone.now() - dt.timedelta(seconds=1)
        )
    assert client.get(f"/api/v1/patients/{world.bob.pk}/").status_code == 404


def test_break_glass_for_an_unknown_patient_is_a_denied_404(api, world) -> None:  # type: ignore[no-untyped-def]
    import uuid

    response = api(world.outsider).post(f"/api/v1/patients/{uuid.uuid4()}/emergency-access/", {"reason": REASON})
    assert response.status_code == 404
    assert [e.outcome for e in audit_events(action="break_glass.start", actor_id=world.outsider.pk)] == ["denied"]


def test_only_clinicians_break_glass(api, world) -> None:  # type: ignore[no-untyped-def]
    url = f"/api/v1/patients/{world.bob.pk}/emergency-access/"
    assert api(world.alice_user).post(url, {"reason": REASON}).status_code == 403
    assert api(world.admin).post(url, {"reason": REASON}).status_code == 403


def test_patient_requests_and_cancels_an_appointment(api, world) -> None:  # type: ignore[no-untyped-def]
    when = (timezone.now() + dt.timedelta(days=3)).replace(microsecond=0).isoformat()
    alice = api(world.alice_user)
    confirmed = alice.post(
        "/api/v1/appointments/",
        {"patient": str(world.alice.pk), "provider": str(world.doctor.pk), "scheduled_at": when, "status": "confirmed"},
    )
    assert confirmed.status_code == 400 and "status" in error_fields(confirmed)
    created = alice.post(
        "/api/v1/appointments/",
        {"patient": str(world.alice.pk), "provider": str(world.doctor.pk), "scheduled_at": when, "reason": "Check-up"},
    )
    assert created.status_code == 201, created.content
    appointment = created.json()
    assert appointment["status"] == "requested"
    for_bob = alice.post(
        "/api/v1/appointments/", {"patient": str(world.bob.pk), "provider": str(world.doctor.pk), "scheduled_at": when}
    )
    assert for_bob.status_code == 404
    assert api(world.bob_user).get(f"/api/v1/appointments/{appointment['id']}/").status_code == 404
    doctor = api(world.doctor)
    assert (
        doctor.patch(f"/api/v1/appointments/{appointment['id']}/", {"status": "confirmed"}).json()["status"]
        == "confirmed"
    )
    assert alice.patch(f"/api/v1/appointments/{appointment['id']}/", {"reason": "x"}).status_code == 400
    assert (
        alice.patch(f"/api/v1/appointments/{appointment['id']}/", {"status": "cancelled"}).json()["status"]
        == "cancelled"
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"scheduled_at": "tomorrow"}, "scheduled_at"),
        ({"duration_minutes": 2}, "duration_minutes"),
        ({"status": "maybe"}, "status"),
        ({"patient": "nope"}, "patient"),
    ],
)
def test_appointment_validation(api, world, body, field) -> None:  # type: ignore[no-untyped-def]
    base = {"patient": str(world.alice.pk), "scheduled_at": timezone.now().isoformat()}
    response = api(world.doctor).post("/api/v1/appointments/", {**base, **body})
    assert response.status_code == 400
    assert field in error_fields(response)


def test_patients_cannot_rewrite_finished_appointments(api, world) -> None:  # type: ignore[no-untyped-def]
    from records.models import Appointment

    with system_context("a past visit"):
        visit = Appointment.objects.create(
            patient=world.alice, provider=world.doctor, scheduled_at=timezone.now(), status="no_show"
        )
    response = api(world.alice_user).patch(f"/api/v1/appointments/{visit.pk}/", {"status": "cancelled"})
    assert response.status_code == 400 and "no longer be cancelled" in error_fields(response)["status"][0]
    from django.db import connection

    from tests.conftest import as_identity

    with as_identity(world.alice_user), connection.cursor() as cursor:
        cursor.execute("UPDATE records_appointment SET status = 'cancelled' WHERE id = %s", [visit.pk])
        assert cursor.rowcount == 0, "the database refuses it too"


def test_refused_requests_are_audited(api, world) -> None:  # type: ignore[no-untyped-def]
    assert api(world.admin).get(f"/api/v1/patients/{world.alice.pk}/").status_code == 403
    assert api(world.doctor).get(f"/api/v1/patients/{world.alice.pk}/export/").status_code == 403
    events = audit_events(action="api.denied")
    assert [e.outcome for e in events] == ["denied", "denied"]
    assert events[0].resource_id == world.alice.pk and events[0].details["view"] == "PatientDetailView"


def test_break_glass_reads_are_audited_as_emergency(api, world) -> None:  # type: ignore[no-untyped-def]
    client = api(world.outsider)
    assert client.post(f"/api/v1/patients/{world.bob.pk}/emergency-access/", {"reason": REASON}).status_code == 201
    assert client.get(records_url(world.bob)).status_code == 200
    assert [e.purpose for e in audit_events(action="record.list")] == ["emergency"]
    assert api(world.doctor).get(records_url(world.alice)).status_code == 200
    assert [e.purpose for e in audit_events(action="record.list")] == ["emergency", "treatment"]


def test_booking_answers_alike_for_every_id_that_is_not_a_care_team_clinician(api, world, user_factory) -> None:  # type: ignore[no-untyped-def]
    when = (timezone.now() + dt.timedelta(days=3)).replace(microsecond=0).isoformat()
    colleague = user_factory("clinician", username="dr.colleague")

    candidates = {
        "unknown": str(uuid.uuid4()),
        "malformed": "not-a-uuid",
        "patient": str(world.bob_user.pk),
        "admin": str(world.admin.pk),
        "clinician elsewhere": str(world.outsider.pk),
        "inactive colleague": str(colleague.pk),
    }
    colleague.is_active = False
    colleague.save()
    answers = {
        name: api(world.alice_user).post(
            "/api/v1/appointments/", {"patient": str(world.alice.pk), "provider": pk, "scheduled_at": when}
        )
        for name, pk in candidates.items()
    }

    assert {name: a.status_code for name, a in answers.items()} == dict.fromkeys(candidates, 400)
    assert {str(error_fields(a)) for a in answers.values()} == {
        "{'provider': [\"Choose a clinician on the patient's care team.\"]}"
    }
    booked = api(world.alice_user).post(
        "/api/v1/appointments/",
        {"patient": str(world.alice.pk), "provider": str(world.doctor.pk), "scheduled_at": when},
    )
    assert booked.status_code == 201
