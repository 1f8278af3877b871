"""The clinician's record and appointment pages (records/views.py) through Django's test client.

The services decide (rights, states, audit); these tests check what each page shows for each
answer: errors next to their fields with nothing saved, refusals as messages, invisible rows
as the one 404, optimistic concurrency on amendments, and the audit events the services write.
"""

from __future__ import annotations

import datetime as dt
import html
import re
import uuid
from typing import Any

import pytest
from django.db.models.signals import post_save
from django.test import Client
from django.utils import timezone

from neonpro.security.context import identity_for_user, system_context
from patients.break_glass import request_emergency_access
from records import services
from records.models import Appointment, MedicalRecord, MedicalRecordRevision
from tests.api.conftest import audit_events
from tests.conftest import as_identity, sign_in_as

pytestmark = pytest.mark.django_db
REASON = "Patient arrived unconscious; no care-team clinician on site."
DEMO_LABS = {"eosinophils": {"value": 0.4, "unit": "10^9/L"}}


# -- helpers -----------------------------------------------------------------------------------


def signed_in(user: Any) -> Client:
    return sign_in_as(Client(), user)


def get(client: Client, url: str, **params: Any) -> Any:
    return client.get(url, params, secure=True)


def post(client: Client, url: str, data: dict[str, Any] | None = None) -> Any:
    return client.post(url, data or {}, secure=True)


def page(response: Any) -> str:
    return html.unescape(response.content.decode())


def field_errors(response: Any, field_id: str) -> list[str]:
    """The errors shown in the field block of the input ``field_id`` (a block marked invalid)."""
    blocks = re.findall(r'<div class="field invalid">(.*?)</div>', response.content.decode(), flags=re.S)
    block = next((b for b in blocks if f'for="{field_id}"' in b), "")
    return [html.unescape(e) for e in re.findall(r"<li>(.*?)</li>", block)]


def notices(client: Client) -> str:
    """The messages the next page shows (the schedule: a page of this app that always renders)."""
    return " ".join(re.findall(r'<p class="notice[^"]*">(.*?)</p>', page(get(client, "/appointments/"))))


def count(model: Any) -> int:
    with system_context("test: count rows"):
        return int(model.objects.count())


def fresh(model: Any, pk: Any) -> Any:
    with system_context("test: read the row"):
        return model.objects.get(pk=pk)


def grant_emergency(clinician: Any, patient: Any) -> None:
    with as_identity(clinician):
        request_emergency_access(identity_for_user(clinician), patient_id=patient.pk, reason=REASON)


def write_record(clinician: Any, patient: Any, **data: Any) -> MedicalRecord:
    with as_identity(clinician):
        return services.create_record(identity_for_user(clinician), patient.pk, data)


def book(clinician: Any, patient: Any, *, days: int = 3, **data: Any) -> Appointment:
    when = (timezone.now() + dt.timedelta(days=days)).replace(second=0, microsecond=0)
    with as_identity(clinician):
        return services.create_appointment(identity_for_user(clinician), patient.pk, {"scheduled_at": when, **data})


def request_as_patient(patient_user: Any, patient: Any, provider: Any) -> Appointment:
    when = (timezone.now() + dt.timedelta(days=5)).replace(second=0, microsecond=0)
    with as_identity(patient_user):
        return services.create_appointment(
            identity_for_user(patient_user), patient.pk, {"scheduled_at": when, "provider": provider.pk}
        )


def record_form(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "record_date": "2030-06-01",
        "diagnosis": "Seasonal allergic rhinitis",
        "treatment_plan": "Antihistamine as needed",
        "medications": "Cetirizine 10 mg",
        "allergies": "Penicillin (rash)",
        "notes": "Line one\r\nline two",
        "lab-TOTAL_FORMS": "5",
        "lab-INITIAL_FORMS": "0",
        "lab-MIN_NUM_FORMS": "0",
        "lab-MAX_NUM_FORMS": "50",
    }
    for i in range(5):
        data.update({f"lab-{i}-name": "", f"lab-{i}-value": "", f"lab-{i}-unit": ""})
    data.update({"lab-0-name": "eosinophils", "lab-0-value": "0.4", "lab-0-unit": "10^9/L"})
    data.update({"lab-1-name": "crp", "lab-1-value": "5", "lab-1-unit": "mg/L"})
    data.update(overrides)
    return data


def edit_form(record: MedicalRecord, **overrides: Any) -> dict[str, Any]:
    rows = [{"name": n, "value": r["value"], "unit": r["unit"]} for n, r in (record.lab_results or {}).items()]
    data: dict[str, Any] = {
        "version": str(record.row_version),
        "record_date": record.record_date.isoformat(),
        "diagnosis": record.diagnosis,
        "treatment_plan": record.treatment_plan,
        "medications": record.medications,
        "allergies": record.allergies or "",
        "notes": record.notes,
        "lab-TOTAL_FORMS": str(len(rows) + 2),
        "lab-INITIAL_FORMS": str(len(rows)),
        "lab-MIN_NUM_FORMS": "0",
        "lab-MAX_NUM_FORMS": "50",
    }
    for i in range(len(rows) + 2):
        row = rows[i] if i < len(rows) else {"name": "", "value": "", "unit": ""}
        data.update({f"lab-{i}-{key}": str(value) for key, value in row.items()})
    data.update(overrides)
    return data


@pytest.fixture
def doctor(world: Any) -> Client:
    return signed_in(world.doctor)


@pytest.fixture
def record(world: Any) -> MedicalRecord:
    return write_record(world.doctor, world.alice, diagnosis="Asthma", medications="Salbutamol", lab_results=DEMO_LABS)


# -- who may open the pages --------------------------------------------------------------------


def _urls(world: Any, record: MedicalRecord, appointment: Appointment) -> list[tuple[str, str]]:
    return [
        ("get", f"/patients/{world.alice.pk}/records/new/"),
        ("get", f"/records/{record.pk}/"),
        ("get", f"/records/{record.pk}/edit/"),
        ("get", f"/patients/{world.alice.pk}/appointments/new/"),
        ("get", "/appointments/"),
        ("post", f"/appointments/{appointment.pk}/confirm/"),
        ("get", f"/appointments/{appointment.pk}/reschedule/"),
        ("post", f"/appointments/{appointment.pk}/cancel/"),
    ]


def test_patients_and_administrators_get_the_403_page_and_nothing_changes(world: Any, record: MedicalRecord) -> None:
    appointment = book(world.doctor, world.alice)
    for user in (world.alice_user, world.admin):
        client = signed_in(user)
        for method, url in _urls(world, record, appointment):
            response = get(client, url) if method == "get" else post(client, url)
            assert response.status_code == 403, (user.username, url)
    assert fresh(Appointment, appointment.pk).status == "confirmed"


def test_signed_out_visitors_go_to_the_sign_in_page(world: Any, record: MedicalRecord) -> None:
    appointment = book(world.doctor, world.alice)
    for method, url in _urls(world, record, appointment):
        response = get(Client(), url) if method == "get" else post(Client(), url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/"), url


def test_rows_the_clinician_may_not_see_are_the_one_404(world: Any, record: MedicalRecord) -> None:
    appointment = book(world.doctor, world.alice)
    outsider = signed_in(world.outsider)
    for method, url in _urls(world, record, appointment):
        if url == "/appointments/":
            continue
        response = get(outsider, url) if method == "get" else post(outsider, url)
        assert response.status_code == 404, url
    doctor = signed_in(world.doctor)
    for url in (
        f"/patients/{world.bob.pk}/records/new/",
        f"/records/{uuid.uuid4()}/",
        f"/records/{uuid.uuid4()}/edit/",
    ):
        assert get(doctor, url).status_code == 404, url
    assert post(doctor, f"/appointments/{uuid.uuid4()}/cancel/").status_code == 404
    assert audit_events(action="patient.read", outcome="denied", actor_id=world.doctor.pk)
    assert fresh(Appointment, appointment.pk).status == "confirmed"


# -- a new record ------------------------------------------------------------------------------


def test_the_new_record_form_names_the_patient_and_offers_lab_rows(world: Any, doctor: Client) -> None:
    response = get(doctor, f"/patients/{world.alice.pk}/records/new/")

    text = page(response)
    assert response.status_code == 200 and "Alice Canary" in text
    assert f'value="{timezone.localdate().isoformat()}"' in text  # today, by default
    for i in range(5):
        for name in ("name", "value", "unit"):
            assert f'<label for="id_lab-{i}-{name}">' in text
    assert 'for="id_allergies"' in text and "Emergency access" not in text


def test_a_clinician_writes_a_record_with_lab_results(world: Any, doctor: Client) -> None:
    before = count(MedicalRecord)

    response = post(doctor, f"/patients/{world.alice.pk}/records/new/", record_form())

    assert response.status_code == 302 and response["Location"] == f"/patients/{world.alice.pk}/"
    assert count(MedicalRecord) == before + 1
    [event] = audit_events(action="record.create", actor_id=world.doctor.pk)
    with system_context("test: read the record"):
        written = MedicalRecord.objects.get(pk=event.resource_id)
        assert written.lab_results == {**DEMO_LABS, "crp": {"value": 5, "unit": "mg/L"}}
        assert (written.allergies, written.notes) == ("Penicillin (rash)", "Line one\nline two")
        assert written.record_date == dt.date(2030, 6, 1) and written.provider_id == world.doctor.pk
        assert MedicalRecordRevision.objects.filter(record_id=written.pk).count() == 1
    assert "allergies" in event.details["fields"] and "Penicillin" not in event.canonical().decode()
    assert "The record was saved." in notices(doctor)


def test_empty_text_fields_are_left_out_of_a_new_record(world: Any, doctor: Client) -> None:
    data = record_form(
        treatment_plan="", medications="", allergies="", notes="", **{"lab-0-name": "", "lab-0-value": ""}
    )
    data.update({"lab-0-unit": "", "lab-1-name": "", "lab-1-value": "", "lab-1-unit": ""})

    assert post(doctor, f"/patients/{world.alice.pk}/records/new/", data).status_code == 302

    [event] = audit_events(action="record.create")
    assert event.details == {"fields": ["diagnosis", "record_date"]}
    assert fresh(MedicalRecord, event.resource_id).lab_results is None


@pytest.mark.parametrize(
    ("overrides", "field_id", "message"),
    [
        ({"lab-1-value": "five"}, "id_lab-1-value", "Enter a number."),
        ({"lab-1-value": "nan"}, "id_lab-1-value", "Enter a number."),
        ({"lab-1-value": ""}, "id_lab-1-value", "Enter the value as a number."),
        ({"lab-2-value": "3", "lab-2-unit": "g/L"}, "id_lab-2-name", "Name the test."),
        (
            {"lab-2-name": "CRP", "lab-2-value": "1"},
            "id_lab-2-name",
            "This test is already listed above: one row per test.",
        ),
        ({"record_date": "2030-13-01"}, "id_record_date", "Enter a valid date."),
        ({"diagnosis": "x" * 20001}, "id_diagnosis", "Ensure this value has at most 20000 characters (it has 20001)."),
    ],
)
def test_a_bad_value_is_shown_next_to_its_field_and_nothing_is_saved(
    world: Any, doctor: Client, overrides: dict[str, str], field_id: str, message: str
) -> None:
    before = (count(MedicalRecord), count(MedicalRecordRevision))

    response = post(doctor, f"/patients/{world.alice.pk}/records/new/", record_form(**overrides))

    assert response.status_code == 200
    assert message in field_errors(response, field_id)
    assert (count(MedicalRecord), count(MedicalRecordRevision)) == before
    assert not audit_events(action="record.create")
    assert "Cetirizine 10 mg</textarea>" in page(response)  # what was typed is kept


def test_too_many_lab_rows_are_refused(world: Any, doctor: Client) -> None:
    data = record_form(**{"lab-TOTAL_FORMS": "51"})

    response = post(doctor, f"/patients/{world.alice.pk}/records/new/", data)

    assert response.status_code == 200 and "Please submit at most 50 forms." in page(response)
    assert count(MedicalRecord) == 0


def test_an_emergency_access_clinician_reads_the_form_page_but_cannot_write(world: Any) -> None:
    grant_emergency(world.outsider, world.alice)
    outsider = signed_in(world.outsider)
    url = f"/patients/{world.alice.pk}/records/new/"

    shown = page(get(outsider, url))
    assert "Emergency access is read-only" in shown and '<form method="post">' not in shown
    assert 'class="banner emergency"' in shown

    refused = post(outsider, url, record_form())
    assert refused.status_code == 403
    assert "Only clinicians on the patient's care team can change clinical records." in page(refused)
    assert count(MedicalRecord) == 0
    assert not audit_events(action="record.create")


# -- one record and its history ------------------------------------------------------------------


def test_a_record_shows_its_fields_and_who_changed_which_fields_when(
    world: Any, doctor: Client, record: MedicalRecord
) -> None:
    amended = post(doctor, f"/records/{record.pk}/edit/", edit_form(record, diagnosis="Chronic asthma"))
    assert amended.status_code == 302 and amended["Location"] == f"/records/{record.pk}/"

    response = get(doctor, f"/records/{record.pk}/")

    text = page(response)
    assert response.status_code == 200 and "Chronic asthma" in text and "Alice Canary" in text
    assert "eosinophils" in text and "10^9/L" in text and "Salbutamol" in text
    assert "Amended</strong> (version 2)" in text and "Created</strong> (version 1)" in text
    assert "by dr.care" in text and "Fields: Diagnosis" in text
    assert "Fields: Diagnosis, Lab results, Medications" in text
    assert "Asthma<" not in text.replace("Chronic asthma", "")  # old values are not shown
    assert text.index("Amended</strong>") < text.index("Created</strong>")  # newest first
    assert " UTC</time>" in text
    assert audit_events(action="record.read", outcome="success", actor_id=world.doctor.pk)
    [history] = audit_events(action="record.history", actor_id=world.doctor.pk)
    assert history.details == {"count": 2} and history.purpose == "treatment"


def _legacy_record(world: Any) -> MedicalRecord:
    """A record as written before history and allergies existed: no revision, allergies NULL,
    lab results in a shape the form does not write (the API takes any JSON)."""
    from django.db import connection

    with system_context("test: a record from before history and allergies"):
        legacy = MedicalRecord.objects.create(
            patient=world.alice, provider=world.doctor, diagnosis="Old", lab_results=[{"hba1c": 7.9}]
        )
        with connection.cursor() as cursor:  # allergies is not among the sealed columns
            cursor.execute("UPDATE records_medicalrecord SET allergies = NULL WHERE id = %s", [legacy.pk])
    return fresh(MedicalRecord, legacy.pk)


def test_a_record_from_before_history_and_allergies_and_one_by_the_system(world: Any, doctor: Client) -> None:
    legacy = _legacy_record(world)
    assert legacy.allergies is None

    response = get(doctor, f"/records/{legacy.pk}/")

    text = page(response)
    assert "No saved states yet" in text and '"hba1c": 7.9' in text
    assert "<dt>Allergies</dt><dd>—</dd>" in text
    with system_context("test: a maintenance job amends the record") as system:
        services.update_record(system, fresh(MedicalRecord, legacy.pk), {"notes": "Checked"})
    text = page(get(doctor, f"/records/{legacy.pk}/"))
    assert "State before the first recorded amendment</strong> (version 1)" in text and "by System" in text
    assert "Fields: Notes" in text


# -- amending a record ---------------------------------------------------------------------------


def test_the_amendment_form_is_filled_in_with_the_record_and_its_version(
    world: Any, doctor: Client, record: MedicalRecord
) -> None:
    text = page(get(doctor, f"/records/{record.pk}/edit/"))

    assert f'<input type="hidden" name="version" value="{record.row_version}"' in text
    assert 'name="lab-0-name" value="eosinophils"' in text and 'name="lab-0-value" value="0.4"' in text
    assert "Salbutamol</textarea>" in text and 'name="lab-TOTAL_FORMS" value="5"' in text


def test_an_amendment_saves_only_the_changed_fields_and_keeps_the_state_before(
    world: Any, doctor: Client, record: MedicalRecord
) -> None:
    data = edit_form(record, allergies="Latex", **{"lab-0-value": "0.6", "lab-1-name": "crp", "lab-1-value": "2"})

    response = post(doctor, f"/records/{record.pk}/edit/", data)

    assert response.status_code == 302 and response["Location"] == f"/records/{record.pk}/"
    [event] = audit_events(action="record.update", actor_id=world.doctor.pk)
    assert event.details == {"fields": ["allergies", "lab_results"]}
    amended = fresh(MedicalRecord, record.pk)
    assert amended.allergies == "Latex" and amended.diagnosis == "Asthma"
    assert amended.lab_results == {"eosinophils": {"value": 0.6, "unit": "10^9/L"}, "crp": {"value": 2, "unit": ""}}
    with system_context("test: read the history"):
        history = list(MedicalRecordRevision.objects.filter(record_id=record.pk).order_by("record_version"))
    assert [(r.action, r.changed_fields) for r in history] == [
        ("create", ["diagnosis", "lab_results", "medications"]),
        ("update", ["allergies", "lab_results"]),
    ]
    assert history[0].lab_results == DEMO_LABS  # the state before is kept
    assert "The record was updated" in notices(doctor)


def test_an_amendment_that_changes_nothing_saves_nothing(world: Any, doctor: Client, record: MedicalRecord) -> None:
    response = post(doctor, f"/records/{record.pk}/edit/", edit_form(record))

    assert response.status_code == 302
    assert not audit_events(action="record.update")
    assert fresh(MedicalRecord, record.pk).row_version == record.row_version
    assert "Nothing was changed." in notices(doctor)


def test_an_amendment_of_a_record_changed_meanwhile_is_refused(
    world: Any, doctor: Client, record: MedicalRecord
) -> None:
    opened = edit_form(record, diagnosis="Mine")
    with as_identity(world.doctor):  # a colleague saves first
        services.update_record(identity_for_user(world.doctor), fresh(MedicalRecord, record.pk), {"notes": "Theirs"})

    response = post(doctor, f"/records/{record.pk}/edit/", opened)

    assert response.status_code == 409
    assert "was changed by someone else since you opened it" in page(response)
    assert f'href="/records/{record.pk}/edit/">Reload the record' in page(response)
    current = fresh(MedicalRecord, record.pk)
    assert (current.diagnosis, current.notes) == ("Asthma", "Theirs")
    assert len(audit_events(action="record.update")) == 1


def test_a_save_that_lands_during_the_amendment_is_a_conflict_too(world: Any, doctor: Client) -> None:
    legacy = _legacy_record(world)  # no history yet: the amendment first saves its baseline state

    def colleague_saves_meanwhile(sender: Any, instance: MedicalRecordRevision, **kwargs: Any) -> None:
        other = MedicalRecord.objects.get(pk=instance.record_id)
        other.notes = "Saved meanwhile"
        other.save()

    post_save.connect(colleague_saves_meanwhile, sender=MedicalRecordRevision)
    try:
        response = post(doctor, f"/records/{legacy.pk}/edit/", _legacy_edit(legacy, diagnosis="Newer"))
    finally:
        post_save.disconnect(colleague_saves_meanwhile, sender=MedicalRecordRevision)

    assert response.status_code == 409 and "was changed by someone else" in page(response)
    assert fresh(MedicalRecord, legacy.pk).diagnosis == "Old"
    assert count(MedicalRecordRevision) == 0


def _legacy_edit(record: MedicalRecord, **overrides: Any) -> dict[str, Any]:
    """The amendment form of a record whose lab results it cannot edit (no lab rows)."""
    data = {
        "version": str(record.row_version),
        "record_date": record.record_date.isoformat(),
        "diagnosis": record.diagnosis,
        "treatment_plan": "",
        "medications": "",
        "allergies": "",
        "notes": "",
    }
    return {**data, **overrides}


def test_lab_results_in_another_shape_stay_as_they_are(world: Any, doctor: Client) -> None:
    legacy = _legacy_record(world)
    assert "cannot be edited here" in page(get(doctor, f"/records/{legacy.pk}/edit/"))

    response = post(doctor, f"/records/{legacy.pk}/edit/", _legacy_edit(legacy, diagnosis="Newer"))

    assert response.status_code == 302
    amended = fresh(MedicalRecord, legacy.pk)
    assert amended.lab_results == [{"hba1c": 7.9}] and amended.diagnosis == "Newer"
    [event] = audit_events(action="record.update")
    assert event.details == {"fields": ["diagnosis"]}  # allergies: NULL and empty are the same
    with system_context("test: read the history"):
        actions = list(MedicalRecordRevision.objects.filter(record_id=legacy.pk).values_list("action", flat=True))
    assert sorted(actions) == ["baseline", "update"]


def test_a_bad_amendment_is_shown_next_to_its_field(world: Any, doctor: Client, record: MedicalRecord) -> None:
    response = post(doctor, f"/records/{record.pk}/edit/", edit_form(record, **{"lab-0-value": "0,4"}))

    assert response.status_code == 200 and "Enter a number." in field_errors(response, "id_lab-0-value")
    assert fresh(MedicalRecord, record.pk).row_version == record.row_version
    assert not audit_events(action="record.update")


def test_an_emergency_access_clinician_cannot_amend(world: Any, record: MedicalRecord) -> None:
    grant_emergency(world.outsider, world.alice)
    outsider = signed_in(world.outsider)
    shown = page(get(outsider, f"/records/{record.pk}/"))
    assert "Asthma" in shown and "/edit/" not in shown and 'class="banner emergency"' in shown
    assert "Emergency access is read-only" in page(get(outsider, f"/records/{record.pk}/edit/"))

    refused = post(outsider, f"/records/{record.pk}/edit/", edit_form(record, diagnosis="Changed"))

    assert refused.status_code == 403 and "Only clinicians on the patient's care team" in page(refused)
    assert fresh(MedicalRecord, record.pk).diagnosis == "Asthma"
    assert not audit_events(action="record.update")


# -- appointments ---------------------------------------------------------------------------------

SLOT = {"scheduled_at": "2031-03-04T09:30", "duration_minutes": "45", "reason": "Follow-up", "notes": ""}
SLOT_AT = dt.datetime(2031, 3, 4, 9, 30, tzinfo=dt.UTC)


def test_a_clinicians_booking_is_confirmed_at_the_utc_time_typed(world: Any, doctor: Client) -> None:
    form = page(get(doctor, f"/patients/{world.alice.pk}/appointments/new/"))
    assert "Alice Canary" in form and 'type="datetime-local"' in form and 'value="30"' in form

    response = post(doctor, f"/patients/{world.alice.pk}/appointments/new/", SLOT)

    assert response.status_code == 302 and response["Location"] == f"/patients/{world.alice.pk}/"
    [event] = audit_events(action="appointment.create", actor_id=world.doctor.pk)
    booked = fresh(Appointment, event.resource_id)
    assert (booked.status, booked.scheduled_at, booked.duration_minutes) == ("confirmed", SLOT_AT, 45)
    assert booked.provider_id == world.doctor.pk and booked.reason == "Follow-up"
    assert "The appointment on 2031-03-04 09:30 UTC was booked." in notices(doctor)


@pytest.mark.parametrize(
    ("target", "lands"),
    [
        ("/appointments/?from=2031-03-01", "/appointments/?from=2031-03-01"),
        ("https://evil.example/", None),
        ("//evil.example/", None),
        ("javascript:alert(1)", None),
    ],
)
def test_after_booking_the_page_goes_back_only_to_a_path_of_this_site(
    world: Any, doctor: Client, target: str, lands: str | None
) -> None:
    response = post(doctor, f"/patients/{world.alice.pk}/appointments/new/", {**SLOT, "next": target})

    assert response["Location"] == (lands or f"/patients/{world.alice.pk}/")


@pytest.mark.parametrize(
    ("overrides", "field_id", "message"),
    [
        ({"scheduled_at": "tomorrow"}, "id_scheduled_at", "Enter a valid date/time."),
        ({"scheduled_at": ""}, "id_scheduled_at", "This field is required."),
        ({"duration_minutes": "3"}, "id_duration_minutes", "Ensure this value is greater than or equal to 5."),
        ({"reason": "x" * 2001}, "id_reason", "Ensure this value has at most 2000 characters (it has 2001)."),
    ],
)
def test_a_bad_booking_is_shown_next_to_its_field_and_nothing_is_booked(
    world: Any, doctor: Client, overrides: dict[str, str], field_id: str, message: str
) -> None:
    response = post(doctor, f"/patients/{world.alice.pk}/appointments/new/", {**SLOT, **overrides, "next": "/x/"})

    assert response.status_code == 200 and message in field_errors(response, field_id)
    assert 'name="next" value="/x/"' in page(response)
    assert count(Appointment) == 0


def test_an_emergency_access_clinician_cannot_book(world: Any) -> None:
    grant_emergency(world.outsider, world.alice)
    outsider = signed_in(world.outsider)
    assert "Emergency access is read-only" in page(get(outsider, f"/patients/{world.alice.pk}/appointments/new/"))

    refused = post(outsider, f"/patients/{world.alice.pk}/appointments/new/", SLOT)

    assert refused.status_code == 403 and "Only clinicians on the patient's care team" in page(refused)
    assert count(Appointment) == 0


def test_the_schedule_lists_the_clinicians_own_upcoming_appointments_with_names(
    world: Any, doctor: Client, care_team: Any
) -> None:
    soon = book(world.doctor, world.alice, days=2, reason="Soon")
    requested = request_as_patient(world.alice_user, world.alice, world.doctor)
    past = book(world.doctor, world.alice, days=-3, reason="Past")
    care_team(world.alice, world.outsider)
    theirs = book(world.outsider, world.alice, days=2, reason="Theirs")

    text = page(get(doctor, "/appointments/"))

    assert f"appointment-{soon.pk}" in text and f"appointment-{requested.pk}" in text
    assert f"appointment-{past.pk}" not in text and f"appointment-{theirs.pk}" not in text
    assert "Alice Canary" in text and f"{soon.scheduled_at:%Y-%m-%d %H:%M} UTC" in text
    assert text.index(f"appointment-{soon.pk}") < text.index(f"appointment-{requested.pk}")
    assert text.count(">Confirm</button>") == 1 and text.count(">Cancel</button>") == 2
    [listed] = audit_events(action="appointment.list", actor_id=world.doctor.pk)
    assert listed.details["count"] == 2 and listed.details["dates"] is True

    earlier = page(get(doctor, "/appointments/", **{"from": (timezone.localdate() - dt.timedelta(days=7)).isoformat()}))
    assert f"appointment-{past.pk}" in earlier and ">Cancel</button>" in earlier


def test_the_schedule_pages_on(world: Any, doctor: Client) -> None:
    first, second = book(world.doctor, world.alice, days=2), book(world.doctor, world.alice, days=4)

    one = page(get(doctor, "/appointments/", page_size="1"))
    assert f"appointment-{first.pk}" in one and f"appointment-{second.pk}" not in one
    [more] = re.findall(r'<a href="(/appointments/\?[^"]+)">Later appointments</a>', one)

    two = page(get(doctor, more))
    assert f"appointment-{second.pk}" in two and f"appointment-{first.pk}" not in two
    assert "Later appointments" not in two


@pytest.mark.parametrize(
    ("params", "field_id", "message"),
    [
        ({"from": "04/03/2031"}, "id_from", "Enter a date as YYYY-MM-DD."),
        ({"from": "2031-03-04", "to": "2031-03-01"}, "id_to", "`to` must be on or after `from`."),
    ],
)
def test_bad_schedule_days_are_shown_next_to_their_field(
    world: Any, doctor: Client, params: dict[str, str], field_id: str, message: str
) -> None:
    response = get(doctor, "/appointments/", **params)

    assert response.status_code == 200
    assert any(message in error for error in field_errors(response, field_id))


def test_a_cursor_not_issued_for_the_schedule_is_refused_at_the_top(world: Any, doctor: Client) -> None:
    text = page(get(doctor, "/appointments/", cursor="c1.forged"))

    assert "This cursor is not valid for this list" in text and "errorlist nonfield" in text


def test_a_clinician_confirms_a_requested_appointment(world: Any, doctor: Client) -> None:
    requested = request_as_patient(world.alice_user, world.alice, world.doctor)

    response = post(doctor, f"/appointments/{requested.pk}/confirm/", {"next": "/appointments/?from=2031-01-01"})

    assert response.status_code == 302 and response["Location"] == "/appointments/?from=2031-01-01"
    assert fresh(Appointment, requested.pk).status == "confirmed"
    [event] = audit_events(action="appointment.confirm", actor_id=world.doctor.pk)
    assert event.details == {"fields": ["status"]}
    assert "is confirmed." in notices(doctor)
    assert get(doctor, f"/appointments/{requested.pk}/confirm/").status_code == 405


def test_only_a_requested_appointment_is_confirmed(world: Any, doctor: Client) -> None:
    booked = book(world.doctor, world.alice)
    with as_identity(world.doctor):
        services.cancel_appointment(identity_for_user(world.doctor), booked.pk)

    response = post(doctor, f"/appointments/{booked.pk}/confirm/")

    assert response["Location"] == "/appointments/"
    assert fresh(Appointment, booked.pk).status == "cancelled"
    assert "Only a requested appointment can be confirmed; this one is cancelled." in notices(doctor)
    assert not audit_events(action="appointment.update")


def test_an_emergency_access_clinician_cannot_confirm_or_cancel(world: Any) -> None:
    requested = request_as_patient(world.alice_user, world.alice, world.doctor)
    grant_emergency(world.outsider, world.alice)
    outsider = signed_in(world.outsider)

    post(outsider, f"/appointments/{requested.pk}/confirm/")
    assert "Only clinicians on the patient's care team" in notices(outsider)
    post(outsider, f"/appointments/{requested.pk}/cancel/")
    assert "Only clinicians on the patient's care team" in notices(outsider)

    assert fresh(Appointment, requested.pk).status == "requested"
    refused = post(outsider, f"/appointments/{requested.pk}/reschedule/", SLOT)
    assert refused.status_code == 403 and fresh(Appointment, requested.pk).scheduled_at == requested.scheduled_at
    assert "Emergency access is read-only" in page(refused)


def test_a_clinician_reschedules_to_a_utc_time(world: Any, doctor: Client) -> None:
    booked = book(world.doctor, world.alice)
    form = page(get(doctor, f"/appointments/{booked.pk}/reschedule/", next="/appointments/?page_size=5"))
    assert '<a href="/appointments/?page_size=5">Back</a>' in form
    assert (
        f'value="{booked.scheduled_at:%Y-%m-%dT%H:%M}"' in form
        and 'name="next" value="/appointments/?page_size=5"' in form
    )

    response = post(
        doctor, f"/appointments/{booked.pk}/reschedule/", {**SLOT, "duration_minutes": "20", "next": "/appointments/"}
    )

    assert response.status_code == 302 and response["Location"] == "/appointments/"
    moved = fresh(Appointment, booked.pk)
    assert (moved.scheduled_at, moved.duration_minutes, moved.status) == (SLOT_AT, 20, "confirmed")
    [event] = audit_events(action="appointment.reschedule", outcome="success")
    assert event.details == {"fields": ["duration_minutes", "scheduled_at", "status"]}
    assert "The appointment was moved to 2031-03-04 09:30 UTC." in notices(doctor)


def test_a_time_in_the_past_is_refused_next_to_the_field(world: Any, doctor: Client) -> None:
    booked = book(world.doctor, world.alice)

    response = post(
        doctor, f"/appointments/{booked.pk}/reschedule/", {"scheduled_at": "2020-01-01T10:00", "duration_minutes": "30"}
    )

    assert response.status_code == 200 and "Choose a time in the future." in field_errors(response, "id_scheduled_at")
    assert fresh(Appointment, booked.pk).scheduled_at == booked.scheduled_at


def test_a_cancelled_appointment_is_not_moved_or_cancelled_again(world: Any, doctor: Client) -> None:
    booked = book(world.doctor, world.alice)

    post(doctor, f"/appointments/{booked.pk}/cancel/")
    assert fresh(Appointment, booked.pk).status == "cancelled"
    [cancelled] = audit_events(action="appointment.cancel", outcome="success")
    assert cancelled.details == {"fields": ["status"]} and "was cancelled." in notices(doctor)

    again = post(doctor, f"/appointments/{booked.pk}/cancel/", {"next": f"/patients/{world.alice.pk}/"})
    assert again["Location"] == f"/patients/{world.alice.pk}/"
    assert "A cancelled appointment can no longer be cancelled." in notices(doctor)
    assert "can no longer be moved" in page(get(doctor, f"/appointments/{booked.pk}/reschedule/"))
    moved = post(doctor, f"/appointments/{booked.pk}/reschedule/", SLOT)
    assert moved.status_code == 409 and "A cancelled appointment can no longer be rescheduled." in page(moved)
    denied = audit_events(action__in=["appointment.cancel", "appointment.reschedule"], outcome="denied")
    assert [e.details["refused"] for e in denied] == ["status", "status"]
    assert fresh(Appointment, booked.pk).scheduled_at == booked.scheduled_at
