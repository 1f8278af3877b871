"""Bad input, every kind, on every write: the error body, a 4xx (never a 500), nothing
half-written, and refusals of access audited.

Unknown fields are refused (400 naming them; DRF would ignore them silently). Injection
strings are data: stored and returned verbatim (JSON-escaped), never executed, never a 500.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from neonpro.security.context import system_context
from patients.models import CareTeamMembership, EmergencyAccessGrant, Patient
from records.models import Appointment, MedicalRecord, MedicalRecordRevision
from tests.api.conftest import audit_events
from tests.conftest import sign_in_as
from tests.errors import error_code, error_fields, error_of

pytestmark = pytest.mark.django_db
REASON = "Patient arrived unconscious; no care-team clinician on site."
JSON = "application/json"
INJECTIONS = [
    "'; DROP TABLE patients_patient; --",
    '" OR 1=1 --',
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "{{7*7}} ${7*7} #{7*7} <%= 7*7 %>",
    "$(rm -rf /) `id` | cat /etc/passwd",
    "../../../../etc/passwd",
    "%00 NUL \\0 \\x00",
    "line one\r\nX-Injected: header\r\n\r\n",
    "\u202etxt.exe \u200b zero-width",
    '{"$gt": ""}',
    "🩺 Ünïcödé 病歷",
]


def counts() -> dict[str, int]:
    with system_context("test: count every table a write could touch"):
        models = (Patient, CareTeamMembership, EmergencyAccessGrant, MedicalRecord, MedicalRecordRevision, Appointment)
        return {model.__name__: model._base_manager.count() for model in models}


def writes(world: Any) -> list[tuple[str, str]]:
    """Every write of the API, as (method, url) for the doctor of alice's care team."""
    appointment = appointment_of(world)
    record = record_of(world)
    return [
        ("POST", "/api/v1/patients/"),
        ("PATCH", f"/api/v1/patients/{world.alice.pk}/"),
        ("POST", "/api/v1/patients/search/"),
        ("POST", f"/api/v1/patients/{world.bob.pk}/emergency-access/"),
        ("POST", "/api/v1/emergency-access/"),
        ("POST", f"/api/v1/patients/{world.alice.pk}/records/"),
        ("PATCH", f"/api/v1/records/{record.pk}/"),
        ("POST", "/api/v1/appointments/"),
        ("PATCH", f"/api/v1/appointments/{appointment.pk}/"),
        ("POST", f"/api/v1/appointments/{appointment.pk}/cancel/"),
        ("POST", f"/api/v1/appointments/{appointment.pk}/reschedule/"),
    ]


def appointment_of(world: Any) -> Appointment:
    if not hasattr(world, "appointment"):
        with system_context("test: an appointment of alice's"):
            world.appointment = Appointment.objects.create(
                patient=world.alice, provider=world.doctor, scheduled_at=timezone.now() + dt.timedelta(days=4)
            )
    return world.appointment  # type: ignore[no-any-return]


def record_of(world: Any) -> MedicalRecord:
    if not hasattr(world, "record"):
        with system_context("test: a record of alice's"):
            world.record = MedicalRecord.objects.create(patient=world.alice, provider=world.doctor, diagnosis="Flu")
    return world.record  # type: ignore[no-any-return]


def send(client: Client, method: str, url: str, body: bytes | str, content_type: str) -> Any:
    return client.generic(method, url, body, content_type=content_type, secure=True)


@pytest.fixture
def doctor(world: Any) -> Client:
    return sign_in_as(Client(), world.doctor)


@pytest.mark.parametrize(
    "body",
    ['{"diagnosis": ', "{'single': 'quotes'}", '{"a": 1,}', "nope", "\xff\xfe", '{"a": NaN}', "[" * 100 + "]" * 100],
    ids=["truncated", "single-quotes", "trailing-comma", "not-json", "not-utf8", "nan", "too-deep"],
)
def test_malformed_json_is_a_400_on_every_write(world: Any, doctor: Client, body: str) -> None:
    routes = writes(world)
    before = counts()
    for method, url in routes:
        answer = send(doctor, method, url, body.encode("latin-1"), "application/json")
        assert answer.status_code == 400, (method, url, answer.content)
        assert error_code(answer) in ("parse_error", "invalid"), (method, url)
    assert counts() == before


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml"],
)
def test_other_content_types_are_a_415_on_every_write(world: Any, doctor: Client, content_type: str) -> None:
    routes = writes(world)
    before = counts()
    for method, url in routes:
        answer = send(doctor, method, url, b"diagnosis=x", content_type)
        assert answer.status_code == 415, (method, url, content_type)
        assert error_code(answer) == "unsupported_media_type"
    assert counts() == before


def test_an_oversized_body_is_refused_before_it_is_parsed(world: Any, doctor: Client) -> None:
    huge = json.dumps({"diagnosis": "x" * (3 * 1024 * 1024)})  # past DATA_UPLOAD_MAX_MEMORY_SIZE
    routes = writes(world)
    before = counts()
    for method, url in routes:
        answer = send(doctor, method, url, huge, "application/json")
        assert answer.status_code == 413, (method, url, answer.status_code)
        assert error_of(answer) == {
            "code": "too_large",
            "message": "The request body is too large: at most 2621440 bytes.",
            "fields": {},
        }
    assert counts() == before


def test_a_field_longer_than_allowed_is_a_400_naming_it(world: Any, doctor: Client) -> None:
    answer = send(
        doctor,
        "POST",
        f"/api/v1/patients/{world.alice.pk}/records/",
        json.dumps({"notes": "x" * 20001}),
        "application/json",
    )
    assert answer.status_code == 400 and "notes" in error_fields(answer)


UNKNOWN = {
    "POST /api/v1/patients/": {"full_name": "X", "date_of_birth": "1990-01-01", "mrn": "MRN-U1"},
    "PATCH /api/v1/patients/{alice}/": {"phone": "+1 555 0100"},
    "POST /api/v1/patients/search/": {"field": "mrn", "value": "MRN-000001"},
    "POST /api/v1/patients/{alice}/records/": {"diagnosis": "x"},
    "POST /api/v1/appointments/": {"patient": "{alice}", "scheduled_at": "2031-01-01T09:00:00Z"},
    "POST /api/v1/emergency-access/": {"identifier": "mrn", "value": "MRN-000002", "reason": REASON},
    "POST /api/v1/patients/{bob}/emergency-access/": {"reason": REASON},
}


@pytest.mark.parametrize("route", list(UNKNOWN))
def test_unknown_fields_are_refused_by_name_and_nothing_is_written(world: Any, doctor: Client, route: str) -> None:
    method, url = route.split(" ")
    url = url.format(alice=world.alice.pk, bob=world.bob.pk)
    body = {key: value.format(alice=world.alice.pk) for key, value in UNKNOWN[route].items()}
    before = counts()

    answer = send(doctor, method, url, json.dumps({**body, "is_admin": True, "provider_id": "x"}), "application/json")

    assert answer.status_code == 400, answer.content
    assert error_fields(answer) == {"is_admin": ["Unknown field."], "provider_id": ["Unknown field."]}
    assert counts() == before


def test_unknown_fields_are_named_together_with_the_other_errors(world: Any, doctor: Client) -> None:
    answer = send(
        doctor, "POST", "/api/v1/patients/", json.dumps({"full_name": "", "colour": "red"}), "application/json"
    )

    fields = error_fields(answer)
    assert fields["colour"] == ["Unknown field."]
    assert {"full_name", "date_of_birth", "mrn"} <= set(fields)


@pytest.mark.parametrize("text", INJECTIONS)
def test_injection_strings_are_stored_and_returned_verbatim(world: Any, doctor: Client, text: str) -> None:
    # Text fields trim surrounding whitespace (DRF's CharField): what is stored is the rest, verbatim.
    clean = text.strip()
    patient = send(
        doctor,
        "POST",
        "/api/v1/patients/",
        json.dumps(
            {
                "full_name": clean[:200],
                "date_of_birth": "1990-01-01",
                "mrn": f"MRN-{uuid.uuid4().hex[:8]}",
                "address": clean,
            }
        ),
        "application/json",
    )
    assert patient.status_code == 201, patient.content
    pid = patient.json()["id"]
    record = send(
        doctor,
        "POST",
        f"/api/v1/patients/{pid}/records/",
        json.dumps(
            {k: clean for k in ("diagnosis", "treatment_plan", "medications", "notes")}
            | {"lab_results": {clean: clean}}
        ),
        "application/json",
    )
    appointment = send(
        doctor,
        "POST",
        "/api/v1/appointments/",
        json.dumps({"patient": pid, "scheduled_at": "2031-01-01T09:00:00Z", "reason": clean, "notes": clean}),
        "application/json",
    )
    search = send(
        doctor, "POST", "/api/v1/patients/search/", json.dumps({"field": "mrn", "value": clean}), "application/json"
    )

    assert record.status_code == appointment.status_code == 201, (record.content, appointment.content)
    assert search.status_code == 200 and search.json() == []
    read = doctor.get(f"/api/v1/patients/{pid}/", secure=True).json()
    assert (read["full_name"], read["address"]) == (clean[:200], clean)
    stored = doctor.get(f"/api/v1/records/{record.json()['id']}/", secure=True).json()
    assert stored["diagnosis"] == stored["notes"] == clean and stored["lab_results"] == {clean: clean}
    assert doctor.get(f"/api/v1/appointments/{appointment.json()['id']}/", secure=True).json()["reason"] == clean
    assert patient["Content-Type"] == "application/json"  # with nosniff: never rendered as a page
    with system_context("test: the tables are all still there"):
        assert Patient.objects.filter(pk=pid).exists()


def test_a_nul_character_is_a_400_naming_the_field(world: Any, doctor: Client) -> None:
    before = counts()

    answer = send(doctor, "POST", f"/api/v1/patients/{world.alice.pk}/records/", json.dumps({"notes": "a\x00b"}), JSON)

    assert answer.status_code == 400 and error_fields(answer) == {"notes": ["Null characters are not allowed."]}
    assert counts() == before


@pytest.mark.parametrize("text", ["\r\nX-Injected: 1", "'; DROP TABLE x; --", "<script>x</script>"])
def test_injection_in_a_query_parameter_is_a_400_or_ignored_never_a_500(world: Any, doctor: Client, text: str) -> None:
    from urllib.parse import quote

    for query in (
        f"page_size={quote(text)}",
        f"cursor={quote(text)}",
        f"from={quote(text)}",
        f"provider={quote(text)}",
    ):
        answer = doctor.get(f"/api/v1/appointments/?{query}", secure=True)
        assert answer.status_code == 400, query
        error_of(answer)
        assert "X-Injected" not in answer


@pytest.mark.parametrize(
    "path",
    [
        "patients/{bad}/",
        "patients/{bad}/records/",
        "records/{bad}/",
        "appointments/{bad}/",
        "appointments/{bad}/cancel/",
    ],
)
@pytest.mark.parametrize("bad", ["not-a-uuid", "1", "00000000-0000-0000-0000-00000000000g", "%27%20OR%201%3D1"])
def test_invalid_uuids_in_a_url_are_the_404_of_a_missing_row(doctor: Client, world: Any, path: str, bad: str) -> None:
    answer = doctor.get(f"/api/v1/{path.format(bad=bad)}", secure=True)

    assert answer.status_code == 404
    assert error_of(answer) == {"code": "not_found", "message": "Not found.", "fields": {}}


@pytest.mark.parametrize("field", ["patient", "provider"])
def test_invalid_uuids_in_a_body_are_a_400_naming_the_field(world: Any, doctor: Client, field: str) -> None:
    body = {"patient": str(world.alice.pk), "scheduled_at": "2031-01-01T09:00:00Z", field: "not-a-uuid"}
    before = counts()

    answer = send(doctor, "POST", "/api/v1/appointments/", json.dumps(body), "application/json")

    assert answer.status_code == 400 and field in error_fields(answer)
    assert counts() == before


def test_another_patients_ids_are_exactly_the_404_of_missing_ones(api: Any, world: Any) -> None:
    with system_context("test: bob's record and appointment"):
        record = MedicalRecord.objects.create(patient=world.bob, provider=world.outsider, diagnosis="Private")
        appointment = Appointment.objects.create(
            patient=world.bob, provider=world.outsider, scheduled_at=timezone.now() + dt.timedelta(days=1)
        )
    alice = api(world.alice_user)
    before = counts()
    probes = [
        ("get", "/api/v1/patients/{}/", world.bob.pk),
        ("get", "/api/v1/patients/{}/records/", world.bob.pk),
        ("get", "/api/v1/patients/{}/clinicians/", world.bob.pk),
        ("get", "/api/v1/patients/{}/export/", world.bob.pk),
        ("get", "/api/v1/records/{}/", record.pk),
        ("patch", "/api/v1/records/{}/", record.pk),
        ("get", "/api/v1/appointments/{}/", appointment.pk),
        ("patch", "/api/v1/appointments/{}/", appointment.pk),
        ("post", "/api/v1/appointments/{}/cancel/", appointment.pk),
        ("post", "/api/v1/appointments/{}/reschedule/", appointment.pk),
    ]
    bodies = {"patch": {"status": "cancelled"}, "post": {"scheduled_at": "2031-01-01T09:00:00Z"}}
    for method, template, other in probes:
        call = getattr(alice, method)
        body = {} if template.endswith("cancel/") else bodies.get(method)
        args = (template.format(other),) if method == "get" else (template.format(other), body)
        theirs = call(*args)
        missing_args = (template.format(uuid.uuid4()), *args[1:])
        missing = call(*missing_args)
        assert theirs.status_code == missing.status_code == 404, template
        assert error_of(theirs) == error_of(missing), template
    assert counts() == before
    denied = audit_events(outcome="denied", actor_id=world.alice_user.pk)
    assert {e.resource_id for e in denied} >= {world.bob.pk, record.pk, appointment.pk}
    assert "Private" not in "".join(e.canonical().decode() for e in audit_events())


def test_a_refused_write_is_audited_and_leaves_nothing(api: Any, world: Any) -> None:
    before = counts()

    answer = api(world.alice_user).post(f"/api/v1/patients/{world.alice.pk}/records/", {"diagnosis": "self-diagnosed"})

    assert answer.status_code == 403 and error_code(answer) == "permission_denied"
    assert counts() == before
    [event] = audit_events(action="api.denied", actor_id=world.alice_user.pk)
    assert event.details == {"view": "PatientRecordsView", "method": "POST"}


def test_a_write_without_csrf_is_refused_with_the_error_body(world: Any) -> None:
    client = sign_in_as(Client(enforce_csrf_checks=True), world.doctor)
    before = counts()

    answer = client.post(
        f"/api/v1/patients/{world.alice.pk}/records/", {"diagnosis": "x"}, content_type="application/json", secure=True
    )

    assert answer.status_code == 403
    error_of(answer)
    assert counts() == before


def test_bad_bodies_over_the_wire_get_the_error_body(api_app: Any) -> None:
    """What the ASGI server and Django's request parsing refuse before a view runs, as a client
    over TLS sees it: an oversized body, a body that is not JSON, the wrong content type."""
    from tests.api.live import signed_in

    session = signed_in(api_app, "dr.house")
    url = f"{api_app.url}/api/v1/patients/search/"
    answers = {
        "oversized": session.post(
            url,
            data=b'{"value": "' + b"x" * (3 * 1024 * 1024) + b'"}',
            timeout=60,
            headers={"Content-Type": "application/json"},
        ),
        "malformed": session.post(url, data=b'{"field": ', headers={"Content-Type": "application/json"}, timeout=30),
        "form": session.post(url, data={"field": "mrn", "value": "x"}, timeout=30),
    }
    assert answers["malformed"].status_code == 400 and answers["form"].status_code == 415
    assert answers["oversized"].status_code == 413 and error_code(answers["oversized"]) == "too_large"
    for answer in answers.values():
        error_of(answer)
        assert answer.headers["Cache-Control"] == "no-store"


def test_a_change_of_nothing_is_a_400(world: Any, doctor: Client) -> None:
    answer = send(doctor, "PATCH", f"/api/v1/patients/{world.alice.pk}/", "{}", JSON)

    assert answer.status_code == 400 and error_of(answer)["message"] == "Nothing to change."
