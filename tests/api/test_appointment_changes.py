"""Booking, cancelling and rescheduling appointments: who may, in which states, audited.

Clinicians book (``confirmed``), patients request (``requested``); a patient's reschedule is
a request again, a clinician's is confirmed; break-glass access is read-only; a cancelled,
completed or no-show appointment is a 409 that leaves the row as it was.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from django.utils import timezone

from neonpro.security.context import system_context
from records.models import Appointment
from tests.api.conftest import audit_events
from tests.errors import error_code, error_fields, error_message

pytestmark = pytest.mark.django_db
REASON = "Patient arrived unconscious; no care-team clinician on site."


def later(days: int = 3) -> str:
    return (timezone.now() + dt.timedelta(days=days)).replace(microsecond=0).isoformat()


def book(client: Any, patient: Any, provider: Any, **fields: Any) -> Any:
    body = {"patient": str(patient.pk), "provider": str(provider.pk), "scheduled_at": later(), **fields}
    return client.post("/api/v1/appointments/", body)


def state(appointment_id: str) -> tuple[str, dt.datetime, int]:
    with system_context("test: read the row"):
        row = Appointment.objects.get(pk=appointment_id)
    return row.status, row.scheduled_at, row.duration_minutes


def test_a_clinicians_booking_is_confirmed_and_a_patients_is_requested(api: Any, world: Any) -> None:
    booked = book(api(world.doctor), world.alice, world.doctor)
    requested = book(api(world.alice_user), world.alice, world.doctor)
    tentative = book(api(world.doctor), world.alice, world.doctor, status="requested")

    assert booked.status_code == 201 and booked.json()["status"] == "confirmed"
    assert requested.status_code == 201 and requested.json()["status"] == "requested"
    assert tentative.json()["status"] == "requested"  # a clinician may still say so


@pytest.mark.parametrize("who", ["alice_user", "doctor"])
def test_the_patient_and_their_clinician_cancel(api: Any, world: Any, who: str) -> None:
    appointment = book(api(world.doctor), world.alice, world.doctor).json()

    answer = api(getattr(world, who)).post(f"/api/v1/appointments/{appointment['id']}/cancel/", {})

    assert answer.status_code == 200, answer.content
    assert answer.json()["status"] == "cancelled"
    assert state(appointment["id"])[0] == "cancelled"
    [event] = audit_events(action="appointment.cancel", outcome="success", actor_id=getattr(world, who).pk)
    assert event.resource_id == uuid.UUID(appointment["id"]) and event.details == {"fields": ["status"]}
    assert event.actor_id == getattr(world, who).pk


def test_cancelling_takes_no_body_at_all(api: Any, world: Any) -> None:
    appointment = book(api(world.doctor), world.alice, world.doctor).json()

    answer = api(world.alice_user).client.generic(
        "POST", f"/api/v1/appointments/{appointment['id']}/cancel/", secure=True
    )

    assert answer.status_code == 200 and answer.json()["status"] == "cancelled"


def test_a_cancelled_appointment_cannot_be_cancelled_or_moved_again(api: Any, world: Any) -> None:
    appointment = book(api(world.doctor), world.alice, world.doctor).json()
    url = f"/api/v1/appointments/{appointment['id']}"
    api(world.doctor).post(f"{url}/cancel/", {})
    before = state(appointment["id"])

    again = api(world.alice_user).post(f"{url}/cancel/", {})
    moved = api(world.doctor).post(f"{url}/reschedule/", {"scheduled_at": later(9)})

    assert again.status_code == moved.status_code == 409
    assert error_code(again) == "conflict"
    assert error_message(again) == "A cancelled appointment can no longer be cancelled."
    assert error_message(moved) == "A cancelled appointment can no longer be rescheduled."
    assert state(appointment["id"]) == before
    refused = audit_events(outcome="denied", resource_id=uuid.UUID(appointment["id"]))
    assert [e.action for e in refused] == ["appointment.cancel", "appointment.reschedule"]
    assert refused[0].details == {"refused": "status", "status": "cancelled"}


def test_a_patients_reschedule_is_a_request_again(api: Any, world: Any) -> None:
    appointment = book(api(world.doctor), world.alice, world.doctor).json()
    new_time = later(10)

    answer = api(world.alice_user).post(
        f"/api/v1/appointments/{appointment['id']}/reschedule/", {"scheduled_at": new_time, "duration_minutes": 45}
    )

    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["status"] == "requested" and body["duration_minutes"] == 45
    assert dt.datetime.fromisoformat(body["scheduled_at"]) == dt.datetime.fromisoformat(new_time)
    [event] = audit_events(action="appointment.reschedule", outcome="success", actor_id=world.alice_user.pk)
    assert event.details == {"fields": ["duration_minutes", "scheduled_at", "status"]}


def test_a_clinicians_reschedule_is_confirmed(api: Any, world: Any) -> None:
    appointment = book(api(world.alice_user), world.alice, world.doctor).json()

    answer = api(world.doctor).post(f"/api/v1/appointments/{appointment['id']}/reschedule/", {"scheduled_at": later(5)})

    assert answer.status_code == 200 and answer.json()["status"] == "confirmed"
    assert state(appointment["id"])[2] == 30  # the duration stays when none is given


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "scheduled_at"),
        ({"scheduled_at": "tomorrow"}, "scheduled_at"),
        ({"scheduled_at": "2001-01-01T09:00:00Z"}, "scheduled_at"),  # the past
        ({"scheduled_at": later(), "duration_minutes": 2}, "duration_minutes"),
        ({"scheduled_at": later(), "status": "confirmed"}, "status"),  # unknown here: refused
    ],
)
def test_a_bad_new_time_is_a_400_that_changes_nothing(api: Any, world: Any, body: Any, field: str) -> None:
    appointment = book(api(world.doctor), world.alice, world.doctor).json()
    before = state(appointment["id"])

    answer = api(world.alice_user).post(f"/api/v1/appointments/{appointment['id']}/reschedule/", body)

    assert answer.status_code == 400 and field in error_fields(answer)
    assert state(appointment["id"]) == before


def test_unknown_fields_in_a_cancel_are_refused(api: Any, world: Any) -> None:
    appointment = book(api(world.doctor), world.alice, world.doctor).json()

    answer = api(world.alice_user).post(f"/api/v1/appointments/{appointment['id']}/cancel/", {"status": "no_show"})

    assert answer.status_code == 400 and error_fields(answer) == {"status": ["Unknown field."]}
    assert state(appointment["id"])[0] == "confirmed"


@pytest.mark.parametrize("action", ["cancel", "reschedule"])
def test_other_patients_and_outsiders_get_404_and_a_denied_event(api: Any, world: Any, action: str) -> None:
    appointment = book(api(world.doctor), world.alice, world.doctor).json()
    url = f"/api/v1/appointments/{appointment['id']}/{action}/"
    body = {"scheduled_at": later()} if action == "reschedule" else {}

    for who in (world.bob_user, world.outsider):
        assert api(who).post(url, body).status_code == 404
    assert api(world.doctor).post(f"/api/v1/appointments/{uuid.uuid4()}/{action}/", body).status_code == 404
    actors = [world.bob_user.pk, world.outsider.pk, world.doctor.pk]
    assert len(audit_events(action=f"appointment.{action}", outcome="denied", actor_id__in=actors)) == 3
    assert state(appointment["id"])[0] == "confirmed"


@pytest.mark.parametrize("action", ["cancel", "reschedule"])
def test_break_glass_access_is_read_only_for_appointments(api: Any, world: Any, action: str) -> None:
    appointment = book(api(world.doctor), world.alice, world.doctor).json()
    outsider = api(world.outsider)
    assert outsider.post(f"/api/v1/patients/{world.alice.pk}/emergency-access/", {"reason": REASON}).status_code == 201
    body = {"scheduled_at": later()} if action == "reschedule" else {}

    answer = outsider.post(f"/api/v1/appointments/{appointment['id']}/{action}/", body)

    assert answer.status_code == 403
    assert state(appointment["id"])[0] == "confirmed"
    assert audit_events(action="api.denied", actor_id=world.outsider.pk)


def test_administrators_do_not_change_appointments(api: Any, world: Any) -> None:
    from neonpro.security.context import Identity
    from records.services import cancel_appointment

    appointment = book(api(world.doctor), world.alice, world.doctor).json()
    assert api(world.admin).post(f"/api/v1/appointments/{appointment['id']}/cancel/", {}).status_code == 403
    with system_context("test: an agent-like caller past the view"), pytest.raises(Exception, match="Only the patient"):
        cancel_appointment(Identity(user_id=world.admin.pk, role="admin"), appointment["id"])
