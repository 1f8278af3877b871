"""People by name, not only by id: patients' names to the callers who may see them, clinicians'
display names, and a patient's care team (whom to ask for an appointment)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from neonpro.security.context import system_context
from patients.models import CareTeamMembership
from records.models import Appointment, MedicalRecord
from tests.api.conftest import audit_events
from tests.errors import error_fields

pytestmark = pytest.mark.django_db
REASON = "Patient arrived unconscious; no care-team clinician on site."


def named(user: Any, first: str, last: str) -> Any:
    user.first_name, user.last_name = first, last
    user.save(update_fields=["first_name", "last_name"])
    return user


@pytest.fixture
def clinic(world: Any) -> Any:
    named(world.doctor, "Gregory", "House")
    with system_context("test: a record and an appointment of alice's"):
        world.record = MedicalRecord.objects.create(patient=world.alice, provider=world.doctor, diagnosis="Flu")
        world.appointment = Appointment.objects.create(
            patient=world.alice, provider=world.doctor, scheduled_at=timezone.now() + dt.timedelta(days=2)
        )
    return world


@pytest.mark.parametrize("who", ["doctor", "alice_user"])
def test_records_and_appointments_name_the_patient_and_the_clinician(api: Any, clinic: Any, who: str) -> None:
    client = api(getattr(clinic, who))

    listed = client.get(f"/api/v1/patients/{clinic.alice.pk}/records/").json()
    one = client.get(f"/api/v1/records/{clinic.record.pk}/").json()
    appointments = client.get("/api/v1/appointments/").json()
    appointment = client.get(f"/api/v1/appointments/{clinic.appointment.pk}/").json()

    for row in (*listed, one, *appointments, appointment):
        assert (row["patient_name"], row["provider_name"]) == ("Alice Canary", "Gregory House")


def test_a_clinician_without_a_name_is_shown_by_username(api: Any, clinic: Any) -> None:
    named(clinic.doctor, "", "")

    assert api(clinic.doctor).get(f"/api/v1/records/{clinic.record.pk}/").json()["provider_name"] == "dr.care"


def test_a_page_is_named_in_two_queries_whatever_its_length(api: Any, clinic: Any, patient_factory: Any) -> None:
    with system_context("test: more of the doctor's patients and appointments"):
        for n in range(5):
            patient = patient_factory(full_name=f"Patient {n}")
            CareTeamMembership.objects.create(patient=patient, clinician=clinic.doctor)
            Appointment.objects.create(
                patient=patient, provider=clinic.doctor, scheduled_at=timezone.now() + dt.timedelta(days=n + 3)
            )

    with CaptureQueriesContext(connection) as queries:
        rows = api(clinic.doctor).get("/api/v1/appointments/").json()

    assert {row["patient_name"] for row in rows} == {"Alice Canary", *(f"Patient {n}" for n in range(5))}
    patients = [q["sql"] for q in queries.captured_queries if q["sql"].startswith('SELECT "patients_patient"."id"')]
    users = [
        q["sql"] for q in queries.captured_queries if 'FROM "accounts_user" WHERE' in q["sql"] and "IN (" in q["sql"]
    ]
    assert len(patients) == 1 and len(users) == 1
    assert '"patients_patient"."ssn"' not in patients[0]  # only the name is read (and decrypted)


def test_a_break_glass_clinician_sees_the_name_and_an_outsider_nothing(api: Any, clinic: Any) -> None:
    outsider = api(clinic.outsider)
    assert outsider.get(f"/api/v1/records/{clinic.record.pk}/").status_code == 404
    outsider.post(f"/api/v1/patients/{clinic.alice.pk}/emergency-access/", {"reason": REASON})

    assert outsider.get(f"/api/v1/records/{clinic.record.pk}/").json()["patient_name"] == "Alice Canary"


def test_names_are_only_those_the_caller_may_see(clinic: Any) -> None:
    from neonpro.security.context import identity_for_user
    from records.services import names_for
    from tests.conftest import as_identity

    with system_context("test: bob's appointment"):
        bobs = Appointment.objects.create(
            patient=clinic.bob, provider=clinic.admin, scheduled_at=timezone.now() + dt.timedelta(days=1)
        )
    with as_identity(clinic.alice_user):
        assert identity_for_user(clinic.alice_user).patient_id == clinic.alice.pk
        names = names_for([clinic.appointment, bobs])
    assert names.patients == {clinic.alice.pk: "Alice Canary"}  # bob's row is not alice's to name
    assert names.clinicians == {clinic.doctor.pk: "Gregory House"}  # an administrator is not named
    assert names_for([]).patients == {} and names_for([]).clinicians == {}


def test_a_patient_lists_their_care_team_by_name(api: Any, clinic: Any, user_factory: Any, care_team: Any) -> None:
    colleague = named(user_factory("clinician", username="dr.colleague"), "Meredith", "Grey")
    care_team(clinic.alice, colleague)
    former = user_factory("clinician", username="dr.former")
    care_team(clinic.alice, former, starts_on=dt.date(2020, 1, 1), ends_on=dt.date(2021, 1, 1))
    retired = user_factory("clinician", username="dr.retired", is_active=False)
    care_team(clinic.alice, retired)

    answer = api(clinic.alice_user).get(f"/api/v1/patients/{clinic.alice.pk}/clinicians/")

    assert answer.status_code == 200
    assert answer.json() == [
        {"id": str(colleague.pk), "display_name": "Meredith Grey"},
        {"id": str(clinic.doctor.pk), "display_name": "Gregory House"},
    ]
    [event] = audit_events(action="careteam.list", outcome="success", actor_id=clinic.alice_user.pk)
    assert event.patient_id == clinic.alice.pk and event.details["count"] == 2


def test_a_patient_books_with_a_clinician_from_their_care_team_list(api: Any, clinic: Any) -> None:
    alice = api(clinic.alice_user)
    [clinician] = alice.get(f"/api/v1/patients/{clinic.alice.pk}/clinicians/").json()

    booked = alice.post(
        "/api/v1/appointments/",
        {"patient": str(clinic.alice.pk), "provider": clinician["id"], "scheduled_at": "2031-05-01T09:00:00Z"},
    )

    assert booked.status_code == 201 and booked.json()["provider_name"] == "Gregory House"


def test_the_care_team_list_pages_with_a_cursor(api: Any, clinic: Any, user_factory: Any, care_team: Any) -> None:
    for n in range(3):
        care_team(clinic.alice, named(user_factory("clinician"), "Dr", f"Z{n}"))
    client = api(clinic.alice_user)

    first = client.get(f"/api/v1/patients/{clinic.alice.pk}/clinicians/?page_size=2")
    link = first["Link"]
    second = client.get(link.removeprefix("<https://testserver").split(">")[0])

    assert [c["display_name"] for c in first.json() + second.json()] == ["Gregory House", "Dr Z0", "Dr Z1", "Dr Z2"]
    assert "Link" not in second
    bad = client.get(f"/api/v1/patients/{clinic.bob.pk}/clinicians/?cursor=" + link.split("cursor=")[1].rstrip(">"))
    assert bad.status_code == 404  # bob is not alice's to see, cursor or not


@pytest.mark.parametrize("who", ["bob_user", "outsider"])
def test_another_patients_care_team_is_a_404(api: Any, clinic: Any, who: str) -> None:
    answer = api(getattr(clinic, who)).get(f"/api/v1/patients/{clinic.alice.pk}/clinicians/")

    assert answer.status_code == 404
    [denied] = audit_events(action="careteam.list", outcome="denied", actor_id=getattr(clinic, who).pk)
    assert denied.resource_id == clinic.alice.pk


def test_a_clinician_sees_their_colleagues_and_a_cursor_elsewhere_is_refused(api: Any, clinic: Any) -> None:
    client = api(clinic.doctor)

    assert [c["id"] for c in client.get(f"/api/v1/patients/{clinic.alice.pk}/clinicians/").json()] == [
        str(clinic.doctor.pk)
    ]
    bad = client.get(f"/api/v1/patients/{clinic.alice.pk}/clinicians/?cursor=c1.AAAA")
    assert bad.status_code == 400 and "cursor" in error_fields(bad)
    assert client.get(f"/api/v1/patients/{uuid.uuid4()}/clinicians/").status_code == 404
