"""The patient portal (patients/portal.py) through the Django test client, on PostgreSQL with
row-level security, as the application role.

Two patients with accounts (Alice, Bob): each sees their own record only, whatever id is
posted; other roles get the 403 page; an account with no linked record gets a clear page.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from typing import Any

import pytest
import time_machine
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from neonpro.security.context import system_context
from patients import portal
from patients.models import Patient
from records.models import Appointment, MedicalRecord
from tests.api.conftest import audit_events
from tests.conftest import sign_in_as

pytestmark = pytest.mark.django_db

PAGES = ["portal:home", "portal:contact", "portal:appointment-new", "portal:export"]
CONTACT = {"email": "alice.new@example.org", "phone": "+1 555 7777", "address": "1 New Road", "contact_by_sms": "on"}


def client_for(user: Any) -> Client:
    client = Client()
    sign_in_as(client, user)
    return client


def get(client: Client, name: str, *args: Any, **query: str) -> Any:
    return client.get(reverse(name, args=args), query, secure=True)


def post(client: Client, name: str, *args: Any, data: dict[str, Any] | None = None) -> Any:
    return client.post(reverse(name, args=args), data or {}, secure=True)


def text_of(response: Any) -> str:
    return response.content.decode()


def without_tokens(response: Any) -> str:
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", text_of(response))


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def redirected_home(client: Client, answer: Any) -> Any:
    """The home page the answer sent the patient to (with the messages left for it)."""
    assert (answer.status_code, answer["Location"]) == (302, reverse("portal:home"))
    return get(client, "portal:home")


def later(days: int = 3) -> dt.datetime:
    return (timezone.now() + dt.timedelta(days=days)).replace(second=0, microsecond=0)


def add_record(patient: Any, provider: Any, **fields: Any) -> MedicalRecord:
    fields.setdefault("record_date", timezone.localdate() - dt.timedelta(days=10))
    fields.setdefault("diagnosis", f"Diagnosis of {patient.full_name}")
    with system_context("test: a record"):
        return MedicalRecord.objects.create(patient=patient, provider=provider, **fields)


def add_appointment(patient: Any, provider: Any, **fields: Any) -> Appointment:
    fields.setdefault("scheduled_at", later())
    fields.setdefault("status", Appointment.Status.CONFIRMED)
    with system_context("test: an appointment"):
        return Appointment.objects.create(patient=patient, provider=provider, **fields)


def row_of(model: Any, pk: Any) -> Any:
    with system_context("test: read the row"):
        return model._base_manager.get(pk=pk)


@pytest.fixture
def people(world: Any, care_team: Any) -> Any:
    """The world, with a named clinician for Alice and Bob's own clinician (the outsider)."""
    world.doctor.first_name, world.doctor.last_name = "Gregory", "Care"
    world.doctor.save(update_fields=["first_name", "last_name"])
    care_team(world.bob, world.outsider)
    return world


# -- Who may open the portal -------------------------------------------------------------


@pytest.mark.parametrize("role", ["clinician", "admin", "agent"])
def test_other_roles_get_the_403_page_on_every_portal_page(user_factory: Any, role: str) -> None:
    client = client_for(user_factory(role))

    answers = [get(client, name) for name in PAGES]
    answers.append(post(client, "portal:appointment-cancel", uuid.uuid4()))
    answers.append(post(client, "portal:export"))

    assert [a.status_code for a in answers] == [403] * len(answers)
    assert all("Not allowed" in text_of(a) for a in answers)


def test_a_visitor_who_is_not_signed_in_is_sent_to_sign_in() -> None:
    answer = Client().get(reverse("portal:home"), secure=True)

    assert answer.status_code == 302 and answer["Location"].startswith(reverse("login"))


def test_a_patient_account_with_no_linked_record_gets_a_clear_page(user_factory: Any) -> None:
    client = client_for(user_factory("patient"))

    answers = [get(client, name) for name in PAGES]
    answers += [post(client, "portal:export"), post(client, "portal:contact", data=CONTACT)]
    answers.append(post(client, "portal:appointment-cancel", uuid.uuid4()))

    for answer in answers:
        assert answer.status_code == 200
        assert "No patient record is linked to this account" in text_of(answer)
    assert audit_events(action="patient.export") == []


def test_the_wrong_method_is_refused(people: Any) -> None:
    client = client_for(people.alice_user)

    assert post(client, "portal:home").status_code == 405
    assert get(client, "portal:appointment-cancel", uuid.uuid4()).status_code == 405


# -- Home: own details, records and appointments -----------------------------------------


def test_home_shows_the_patients_own_details_records_and_appointments(people: Any) -> None:
    record = add_record(
        people.alice,
        people.doctor,
        treatment_plan="Rest and fluids",
        medications="Paracetamol 500 mg",
        lab_results={"crp": {"value": 3, "unit": "mg/L"}},
        notes="Better by Friday.",
    )
    open_one = add_appointment(people.alice, people.doctor, reason="Check-up")
    asked = add_appointment(people.alice, people.doctor, status=Appointment.Status.REQUESTED, scheduled_at=later(4))
    done = add_appointment(people.alice, people.doctor, status=Appointment.Status.COMPLETED, scheduled_at=later(5))
    add_record(people.bob, people.outsider, diagnosis="Bob secret diagnosis")
    add_appointment(people.bob, people.outsider, reason="Bob secret reason")

    answer = get(client_for(people.alice_user), "portal:home")

    page = text_of(answer)
    assert answer.status_code == 200
    assert "Alice Canary" in page and people.alice.mrn in page and "***-**-" + people.alice.ssn[-4:] in page
    assert people.alice.ssn not in page  # masked: never the full SSN
    assert all(value in page for value in ("Rest and fluids", "Paracetamol 500 mg", "crp: 3 mg/L", "Better by Friday."))
    assert f'id="record-{record.pk}"' in page and "Gregory Care" in page and "Check-up" in page
    for appointment, cancellable in ((open_one, True), (asked, True), (done, False)):
        row = re.search(rf'<tr id="appointment-{appointment.pk}">.*?</tr>', page, re.S)
        assert row is not None
        assert (reverse("portal:appointment-cancel", args=[appointment.pk]) in row.group(0)) is cancellable
    bob = ("Bob Canary", people.bob.mrn, people.bob.email, "Bob secret", "***-**-" + people.bob.ssn[-4:])
    for other in bob:
        assert other not in page
    for action in ("patient.read", "record.list", "appointment.list"):
        [event] = audit_events(action=action, actor_id=people.alice_user.pk)
        assert (event.outcome, event.patient_id) == ("success", people.alice.pk)


def consents_on(page: str) -> list[tuple[str, str]]:
    block = re.search(r'<dl class="facts" id="consents">(.*?)</dl>', page, re.S)
    assert block is not None
    return re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", block.group(1))


@pytest.mark.parametrize(("by_email", "by_sms"), [(False, False), (True, False), (False, True)])
def test_home_shows_the_consents_as_they_are(people: Any, by_email: bool, by_sms: bool) -> None:
    with system_context("test: consents"):
        Patient.objects.filter(pk=people.alice.pk).update(contact_by_email=by_email, contact_by_sms=by_sms)

    page = text_of(get(client_for(people.alice_user), "portal:home"))

    yes_no = {True: "Yes", False: "No"}
    assert consents_on(page) == [("By email", yes_no[by_email]), ("By text message", yes_no[by_sms])]


def test_home_shows_upcoming_appointments_and_earlier_ones_on_request(people: Any) -> None:
    soon = add_appointment(people.alice, people.doctor, reason="Coming up")
    before = add_appointment(
        people.alice, people.doctor, reason="Long ago", scheduled_at=timezone.now() - dt.timedelta(days=20)
    )
    client = client_for(people.alice_user)

    upcoming, earlier = text_of(get(client, "portal:home")), text_of(get(client, "portal:home", past="1"))

    assert f"appointment-{soon.pk}" in upcoming and f"appointment-{before.pk}" not in upcoming
    assert f"appointment-{before.pk}" in earlier and f"appointment-{soon.pk}" not in earlier
    assert "Earlier appointments" in earlier and "No upcoming appointments" not in upcoming


def test_home_with_nothing_yet_says_so(people: Any) -> None:
    client = client_for(people.alice_user)

    upcoming, earlier = text_of(get(client, "portal:home")), text_of(get(client, "portal:home", past="1"))

    assert "There are no medical records yet." in upcoming and "No upcoming appointments." in upcoming
    assert "No earlier appointments." in earlier


def test_long_lists_continue_on_a_next_page(people: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(portal, "PAGE_SIZE", 1)
    newer = add_record(people.alice, people.doctor, record_date=timezone.localdate() - dt.timedelta(days=1))
    older = add_record(people.alice, people.doctor, record_date=timezone.localdate() - dt.timedelta(days=9))
    first_visit = add_appointment(people.alice, people.doctor, scheduled_at=later(2))
    second_visit = add_appointment(people.alice, people.doctor, scheduled_at=later(6))
    client = client_for(people.alice_user)

    first = get(client, "portal:home")
    records_next = get(client, "portal:home", records=first.context["records_next"])
    appointments_next = get(client, "portal:home", appointments=first.context["appointments_next"])

    assert f"record-{newer.pk}" in text_of(first) and f"record-{older.pk}" not in text_of(first)
    assert "Older records" in text_of(first) and "More appointments" in text_of(first)
    assert f"record-{older.pk}" in text_of(records_next) and f"record-{newer.pk}" not in text_of(records_next)
    assert f"appointment-{second_visit.pk}" in text_of(appointments_next)
    assert f"appointment-{first_visit.pk}" not in text_of(appointments_next)


def test_a_cursor_that_is_not_the_patients_own_starts_again_from_the_first_page(
    people: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(portal, "PAGE_SIZE", 1)
    for days in (1, 2):
        add_record(people.bob, people.outsider, record_date=timezone.localdate() - dt.timedelta(days=days))
    bobs_cursor = get(client_for(people.bob_user), "portal:home").context["records_next"]
    client = client_for(people.alice_user)

    for cursor in (bobs_cursor, "c1.tampered", "x" * 600):
        answer = redirected_home(client, get(client, "portal:home", records=cursor))

        assert portal.STALE_LINK in messages_of(answer)
        assert "Bob Canary" not in text_of(answer)


@pytest.mark.parametrize(
    ("results", "lines"),
    [
        (None, []),
        ({}, []),
        ({"crp": {"value": 3, "unit": "mg/L"}, "ph": {"value": 7.4}}, [("crp", "3 mg/L"), ("ph", "7.4")]),
        (
            {"note": "normal", "panel": [1, 2], "other": {"value": 1, "ref": "<5"}},
            [
                ("note", "normal"),
                ("panel", "[1, 2]"),
                ("other", '{"value": 1, "ref": "<5"}'),
            ],
        ),
        (["ok", 1], [("", '["ok", 1]')]),
    ],
)
def test_lab_results_read_as_lines(results: Any, lines: list[tuple[str, str]]) -> None:
    assert portal._lab_lines(results) == lines


# -- Contact details and consents ----------------------------------------------------------


def test_the_contact_page_shows_the_current_details(people: Any) -> None:
    answer = get(client_for(people.alice_user), "portal:contact")

    page = text_of(answer)
    assert answer.status_code == 200
    assert f'value="{people.alice.email}"' in page and 'for="id_phone"' in page and 'for="id_contact_by_sms"' in page
    assert "full_name" not in page  # identity is the clinic's to correct
    [event] = audit_events(action="patient.read", actor_id=people.alice_user.pk)
    assert event.patient_id == people.alice.pk


def test_a_patient_updates_their_contact_details_and_consents(people: Any) -> None:
    answer = post(client_for(people.alice_user), "portal:contact", data={**CONTACT, "full_name": "Mallory"})

    assert answer.status_code == 302 and answer["Location"] == reverse("portal:home")
    saved = row_of(Patient, people.alice.pk)
    assert (saved.email, saved.phone, saved.address) == ("alice.new@example.org", "+1 555 7777", "1 New Road")
    assert (saved.contact_by_email, saved.contact_by_sms, saved.full_name) == (False, True, "Alice Canary")
    [event] = audit_events(action="patient.update", outcome="success")
    assert event.details == {"fields": ["address", "contact_by_sms", "email", "phone"]}
    assert "alice.new" not in json.dumps(event.details)


def test_an_emptied_field_is_cleared(people: Any) -> None:
    current = {"email": "", "phone": people.alice.phone, "address": people.alice.address}

    post(client_for(people.alice_user), "portal:contact", data=current)

    assert row_of(Patient, people.alice.pk).email is None
    [event] = audit_events(action="patient.update", outcome="success")
    assert event.details == {"fields": ["email"]}


def test_saving_unchanged_details_changes_nothing(people: Any) -> None:
    current = {"email": people.alice.email, "phone": people.alice.phone, "address": people.alice.address}

    answer = post(client_for(people.alice_user), "portal:contact", data=current)

    assert answer.status_code == 302
    assert audit_events(action="patient.update") == []


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("email", "not-an-email", "Enter a valid email address."),  # the model's validators, via the service
        ("phone", "call me", "Enter a phone number"),
        ("address", "1 New\x00Road", "Null characters are not allowed."),  # the form's own check
    ],
)
def test_an_invalid_value_is_shown_next_to_its_field_and_nothing_is_saved(
    people: Any, field: str, value: str, message: str
) -> None:
    data = {**CONTACT, field: value}

    answer = post(client_for(people.alice_user), "portal:contact", data=data)

    page = text_of(answer)
    assert answer.status_code == 200
    field_html = re.search(rf'<div class="field invalid">\s*<label for="id_{field}">.*?</div>', page, re.S)
    assert field_html is not None and message in field_html.group(0) and 'class="errorlist"' in field_html.group(0)
    assert page.count('class="field invalid"') == 1
    saved = row_of(Patient, people.alice.pk)
    assert (saved.email, saved.phone, saved.address) == (people.alice.email, people.alice.phone, people.alice.address)
    assert audit_events(action="patient.update", outcome="success") == []


# -- Requesting an appointment -----------------------------------------------------------


def test_the_request_page_offers_the_care_team_only(people: Any) -> None:
    answer = get(client_for(people.alice_user), "portal:appointment-new")

    page = text_of(answer)
    assert answer.status_code == 200
    assert f'<option value="{people.doctor.pk}">Gregory Care</option>' in page
    assert str(people.outsider.pk) not in page and "dr.outside" not in page
    assert 'type="datetime-local"' in page and 'for="id_scheduled_at"' in page
    [event] = audit_events(action="careteam.list", actor_id=people.alice_user.pk)
    assert event.patient_id == people.alice.pk


def test_a_patient_requests_an_appointment(people: Any) -> None:
    when = later(5)
    data = {"provider": str(people.doctor.pk), "scheduled_at": when.strftime("%Y-%m-%dT%H:%M"), "reason": "Cough"}

    answer = post(client_for(people.alice_user), "portal:appointment-new", data=data)

    assert answer.status_code == 302 and answer["Location"] == reverse("portal:home")
    [event] = audit_events(action="appointment.create", outcome="success")
    made = row_of(Appointment, event.resource_id)
    assert (made.patient_id, made.provider_id, made.status) == (people.alice.pk, people.doctor.pk, "requested")
    assert (made.scheduled_at, made.reason, made.duration_minutes) == (when, "Cough", 30)


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"scheduled_at": "2031-01-01T10:00"}, "provider", "Choose a clinician."),
        ({"provider": "outsider", "scheduled_at": "2031-01-01T10:00"}, "provider", "Choose a clinician on the patient"),
        ({"provider": "doctor"}, "scheduled_at", "Choose a date and time."),
        ({"provider": "doctor", "scheduled_at": "next week"}, "scheduled_at", "Enter a date and time."),
        ({"provider": "doctor", "scheduled_at": "2001-01-01T10:00"}, "scheduled_at", "Choose a time in the future."),
    ],
)
def test_a_bad_request_is_refused_next_to_its_field(
    people: Any, data: dict[str, str], field: str, message: str
) -> None:
    if "provider" in data:
        data = {**data, "provider": str(getattr(people, data["provider"]).pk)}

    answer = post(client_for(people.alice_user), "portal:appointment-new", data=data)

    page = text_of(answer)
    assert answer.status_code == 200
    field_html = re.search(rf'<div class="field invalid">\s*<label for="id_{field}">.*?</div>', page, re.S)
    assert field_html is not None and message in field_html.group(0)
    assert audit_events(action="appointment.create") == []


def test_a_clinician_who_left_the_care_team_meanwhile_is_refused_by_the_service(
    people: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page was loaded while the outsider was still listed (a stale list): the service's
    own check refuses, and its message lands next to the clinician field."""
    from neonpro.security.pagination import Page
    from patients import services

    monkeypatch.setattr(services, "list_care_team", lambda *a, **k: Page([people.outsider], None, False))
    data = {"provider": str(people.outsider.pk), "scheduled_at": later().strftime("%Y-%m-%dT%H:%M")}

    answer = post(client_for(people.alice_user), "portal:appointment-new", data=data)

    field_html = re.search(r'<div class="field invalid">\s*<label for="id_provider">.*?</div>', text_of(answer), re.S)
    assert field_html is not None and "Choose a clinician on the patient&#x27;s care team." in field_html.group(0)
    with system_context("test: count"):
        assert not Appointment.objects.filter(patient_id=people.alice.pk).exists()


def test_a_patient_with_no_care_team_is_told_to_call(user_factory: Any, patient_factory: Any) -> None:
    user = user_factory("patient")
    patient_factory(user=user)

    answer = get(client_for(user), "portal:appointment-new")

    assert 'id="no-care-team"' in text_of(answer) and "<select" not in text_of(answer)


# -- Cancelling ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["requested", "confirmed"])
def test_a_patient_cancels_their_own_open_appointment(people: Any, status: str) -> None:
    appointment = add_appointment(people.alice, people.doctor, status=status)

    client = client_for(people.alice_user)

    answer = redirected_home(client, post(client, "portal:appointment-cancel", appointment.pk))

    assert "The appointment is cancelled." in messages_of(answer)
    assert row_of(Appointment, appointment.pk).status == "cancelled"
    [event] = audit_events(action="appointment.cancel", outcome="success")
    assert (event.resource_id, event.actor_id) == (appointment.pk, people.alice_user.pk)


@pytest.mark.parametrize("status", ["cancelled", "completed", "no_show"])
def test_a_closed_appointment_cannot_be_cancelled_and_the_page_says_why(people: Any, status: str) -> None:
    appointment = add_appointment(people.alice, people.doctor, status=status)

    client = client_for(people.alice_user)

    answer = redirected_home(client, post(client, "portal:appointment-cancel", appointment.pk))

    label = Appointment.Status(status).label.lower()
    assert f"A {label} appointment can no longer be cancelled." in messages_of(answer)
    assert row_of(Appointment, appointment.pk).status == status
    [event] = audit_events(action="appointment.cancel")
    assert event.outcome == "denied"


def test_cancelling_another_patients_appointment_is_the_404_page_and_changes_nothing(people: Any) -> None:
    bobs = add_appointment(people.bob, people.outsider, status=Appointment.Status.REQUESTED)
    client = client_for(people.alice_user)

    answers = [post(client, "portal:appointment-cancel", pk) for pk in (bobs.pk, uuid.uuid4())]

    assert [a.status_code for a in answers] == [404, 404]
    assert without_tokens(answers[0]) == without_tokens(answers[1])  # the page of an id that does not exist
    assert "Bob" not in text_of(answers[0])
    assert row_of(Appointment, bobs.pk).status == "requested"
    events = audit_events(action="appointment.cancel")
    assert [e.outcome for e in events] == ["denied", "denied"] and events[0].resource_id == bobs.pk


# -- Export ----------------------------------------------------------------------------------


def test_the_export_page_offers_a_download_button_and_exports_nothing(people: Any) -> None:
    answer = get(client_for(people.alice_user), "portal:export")

    page = text_of(answer)
    assert answer.status_code == 200 and "Content-Disposition" not in answer
    assert f'<form method="post" action="{reverse("portal:export")}">' in page and "csrfmiddlewaretoken" in page
    assert audit_events(action="patient.export") == []


def test_the_export_downloads_the_patients_own_bundle(people: Any) -> None:
    add_record(people.alice, people.doctor, diagnosis="Alice's diagnosis")
    add_appointment(people.alice, people.doctor)
    add_record(people.bob, people.outsider, diagnosis="Bob's diagnosis")

    with time_machine.travel("2031-02-03 10:00:00Z", tick=False):
        answer = post(client_for(people.alice_user), "portal:export")

    assert answer.status_code == 200 and answer["Content-Type"] == "application/json"
    assert answer["Content-Disposition"] == 'attachment; filename="neonpro-export-2031-02-03.json"'
    assert answer["Cache-Control"] == "no-store"
    bundle = json.loads(answer.content)
    assert bundle["patient"]["mrn"] == people.alice.mrn and bundle["patient"]["ssn"] == people.alice.ssn
    assert [r["diagnosis"] for r in bundle["records"]] == ["Alice's diagnosis"] and len(bundle["appointments"]) == 1
    body = answer.content.decode()
    assert people.bob.mrn not in body and "Bob" not in body
    [event] = audit_events(action="patient.export")
    assert (event.outcome, event.patient_id, event.actor_id) == ("success", people.alice.pk, people.alice_user.pk)


def test_the_download_asks_who_is_there_after_the_reauthentication_window(people: Any) -> None:
    client = Client()
    sign_in_as(client, people.alice_user, reauthenticated=False)

    answer = post(client, "portal:export")

    assert answer.status_code == 302 and answer["Location"] == "/accounts/reauth/?next=%2Fportal%2Fexport%2F"
    assert "Content-Disposition" not in answer and audit_events(action="patient.export") == []
