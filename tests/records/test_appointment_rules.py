"""Confirming is its own use case (only a requested appointment, only its care team), and a
patient's or an agent's request must be for a time to come."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from neonpro.audit.models import AuditEvent
from records import services
from records.models import Appointment
from tests.conftest import as_identity

pytestmark = pytest.mark.django_db


def _booking(world: Any, status: str) -> Appointment:
    from neonpro.security.context import system_context

    with system_context("test booking"):
        return Appointment.objects.create(
            patient=world.alice,
            provider=world.doctor,
            scheduled_at=timezone.now() + dt.timedelta(days=2),
            status=status,
        )


def _identity(user: Any) -> Any:
    from neonpro.security.context import identity_for_user

    return identity_for_user(user)


def test_a_care_team_clinician_confirms_a_request(world: Any) -> None:
    request = _booking(world, Appointment.Status.REQUESTED)
    with as_identity(world.doctor):
        confirmed = services.confirm_appointment(_identity(world.doctor), request.pk)
    assert confirmed.status == Appointment.Status.CONFIRMED
    assert AuditEvent.objects.filter(action="appointment.confirm", outcome="success", resource_id=request.pk).exists()


@pytest.mark.parametrize("status", [Appointment.Status.CANCELLED, Appointment.Status.CONFIRMED])
def test_only_a_request_is_confirmed_and_a_cancelled_one_is_not_revived(world: Any, status: str) -> None:
    booking = _booking(world, status)
    with as_identity(world.doctor), pytest.raises(services.AppointmentStateError, match="Only a requested"):
        services.confirm_appointment(_identity(world.doctor), booking.pk)
    with as_identity(world.doctor):
        booking.refresh_from_db()
    assert booking.status == status
    denied = AuditEvent.objects.get(action="appointment.confirm", outcome="denied", resource_id=booking.pk)
    assert denied.details == {"refused": "status", "status": status}


def test_the_patient_and_an_outsider_do_not_confirm(world: Any) -> None:
    request = _booking(world, Appointment.Status.REQUESTED)
    with as_identity(world.alice_user), pytest.raises(PermissionDenied):
        services.confirm_appointment(_identity(world.alice_user), request.pk)
    with as_identity(world.outsider), pytest.raises(Appointment.DoesNotExist):
        services.confirm_appointment(_identity(world.outsider), request.pk)
    with as_identity(world.doctor):
        request.refresh_from_db()
    assert request.status == Appointment.Status.REQUESTED


def test_a_patient_requests_a_time_to_come_not_a_past_one(world: Any) -> None:
    identity = _identity(world.alice_user)
    past = {"provider": world.doctor.pk, "scheduled_at": timezone.now() - dt.timedelta(hours=1)}
    with as_identity(world.alice_user), pytest.raises(ValidationError) as refused:
        services.create_appointment(identity, world.alice.pk, past)
    assert refused.value.message_dict == {"scheduled_at": ["Choose a time in the future."]}
    with as_identity(world.alice_user):
        assert not Appointment.objects.filter(patient=world.alice).exists()
    future = {"provider": world.doctor.pk, "scheduled_at": timezone.now() + dt.timedelta(days=1)}
    with as_identity(world.alice_user):
        assert services.create_appointment(identity, world.alice.pk, future).status == "requested"


@pytest.mark.parametrize("change", ["cancel", "reschedule"])
def test_an_appointment_that_has_begun_is_not_cancelled_or_moved(world: Any, change: str) -> None:
    booking = _booking(world, Appointment.Status.CONFIRMED)
    with time_machine.travel(booking.scheduled_at + dt.timedelta(minutes=5), tick=False), as_identity(world.doctor):
        identity = _identity(world.doctor)
        with pytest.raises(services.AppointmentStateError, match="has begun or is over"):
            if change == "cancel":
                services.cancel_appointment(identity, booking.pk)
            else:
                services.reschedule_appointment(
                    identity, booking.pk, scheduled_at=timezone.now() + dt.timedelta(days=1)
                )
        booking.refresh_from_db()
    assert booking.status == Appointment.Status.CONFIRMED
    denied = AuditEvent.objects.get(action=f"appointment.{change}", outcome="denied", resource_id=booking.pk)
    assert denied.details == {"refused": "past"}
