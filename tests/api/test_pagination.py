"""Lists that cost what they return (issue 16): keyset pages through the HTTP API, as the
application role with row-level security in force.

Every list walks completely (no row twice, none missed) even while rows are inserted; pages
have a default and a maximum size; a bad cursor is a JSON 400; the audit event of a list
names the page, not every id; a patient never sees another's rows on any page.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from neonpro.security.context import system_context
from neonpro.security.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from patients.models import CareTeamMembership, Patient
from records.models import Appointment, MedicalRecord
from tests.api.conftest import audit_events
from tests.errors import error_fields

pytestmark = pytest.mark.django_db
REASON = "Patient arrived unconscious; no care-team clinician on site."
LINK = re.compile(r'^<([^>]+)>; rel="next"$')
_serial = itertools.count(1)


def next_url(response: Any) -> str | None:
    link = response.headers.get("Link")
    if link is None:
        return None
    match = LINK.match(link)
    assert match, link
    parts = urlsplit(match.group(1))
    assert parts.scheme == "https"
    return f"{parts.path}?{parts.query}"


def walk(client: Any, url: str, *, between: Any = None) -> list[list[str]]:
    """Follow ``next`` links to the end; the ids of each page. ``between(n)`` runs after page n."""
    pages: list[list[str]] = []
    next_page: str | None = url
    while next_page is not None:
        response = client.get(next_page)
        assert response.status_code == 200, response.content
        pages.append([row["id"] for row in response.json()])
        next_page = next_url(response)
        if between is not None:
            between(len(pages))
        assert len(pages) < 1000, "the walk does not end"
    return pages


def seed_patients(clinician: Any, n: int, *, on_team: bool = True) -> list[Patient]:
    """``n`` patients (bulk, as the system), on ``clinician``'s care team; every tenth shares
    one creation time with nine others, so the order's tie-break on id is exercised."""
    with system_context("test: seed a care team"):
        patients = Patient.objects.bulk_create(
            [
                Patient(
                    full_name=f"Bulk Person {i}", date_of_birth=dt.date(1970, 1, 1), mrn=f"MRN-B{next(_serial):05d}"
                )
                for i in range(n)
            ]
        )
        base = timezone.now() - dt.timedelta(days=1)
        for i, patient in enumerate(patients):
            Patient._base_manager.filter(pk=patient.pk).update(created_at=base + dt.timedelta(seconds=i // 10))
        if on_team:
            CareTeamMembership.objects.bulk_create(
                [CareTeamMembership(patient=patient, clinician=clinician) for patient in patients]
            )
    return patients


def seed_records(patient: Any, provider: Any, n: int, *, start: int = 0) -> list[MedicalRecord]:
    """``n`` records over ``n // 20`` days: twenty on each date."""
    with system_context("test: seed a timeline"):
        return MedicalRecord.objects.bulk_create(
            [
                MedicalRecord(
                    patient=patient,
                    provider=provider,
                    record_date=dt.date(2020, 1, 1) + dt.timedelta(days=(start + i) // 20),
                    diagnosis=f"Finding {i}",
                )
                for i in range(n)
            ]
        )


def seed_appointments(patient: Any, provider: Any, n: int) -> list[Appointment]:
    base = timezone.now() + dt.timedelta(days=1)
    with system_context("test: seed a schedule"):
        return Appointment.objects.bulk_create(
            [
                Appointment(patient=patient, provider=provider, scheduled_at=base + dt.timedelta(hours=i // 5))
                for i in range(n)
            ]
        )


def ids(rows: list[Any]) -> list[str]:
    return [str(row.pk) for row in rows]


def flat(pages: list[list[str]]) -> list[str]:
    return [row for page in pages for row in page]


def test_a_thousand_patient_care_team_is_listed_whole_newest_first(api, world) -> None:  # type: ignore[no-untyped-def]
    seeded = seed_patients(world.doctor, 1000)
    with system_context("test: the expected order"):
        expected = ids(
            list(Patient._base_manager.filter(care_team__clinician=world.doctor).order_by("-created_at", "-id"))
        )
    pages = walk(api(world.doctor), f"/api/v1/patients/?page_size={MAX_PAGE_SIZE}")
    assert flat(pages) == expected, "every patient of the team, once, in the agreed order"
    assert len(expected) == 1001 and set(ids(seeded)) <= set(expected)
    assert [len(page) for page in pages] == [200, 200, 200, 200, 200, 1]


def test_pages_have_a_default_and_a_maximum_size(api, world) -> None:  # type: ignore[no-untyped-def]
    seed_patients(world.doctor, MAX_PAGE_SIZE + 10)
    client = api(world.doctor)
    first = client.get("/api/v1/patients/")
    assert first.status_code == 200 and len(first.json()) == DEFAULT_PAGE_SIZE
    assert next_url(first) is not None
    biggest = client.get("/api/v1/patients/?page_size=100000")
    assert biggest.status_code == 200 and len(biggest.json()) == MAX_PAGE_SIZE
    assert len(client.get("/api/v1/patients/?page_size=7").json()) == 7


def test_the_last_page_has_no_next_link(api, world) -> None:  # type: ignore[no-untyped-def]
    response = api(world.doctor).get("/api/v1/patients/")
    assert [row["id"] for row in response.json()] == [str(world.alice.pk)]
    assert "Link" not in response.headers


def test_a_walk_misses_nothing_and_repeats_nothing_while_rows_are_inserted(api, world) -> None:  # type: ignore[no-untyped-def]
    original = ids(seed_records(world.alice, world.doctor, 1000))
    inserted: list[str] = []

    def insert(page: int) -> None:
        # Rows land before, at and after the walk's position (on its very dates: ties).
        if page in (2, 5, 9):
            inserted.extend(ids(seed_records(world.alice, world.doctor, 60, start=page * 97)))

    pages = walk(api(world.doctor), f"/api/v1/patients/{world.alice.pk}/records/", between=insert)
    seen = flat(pages)
    assert len(seen) == len(set(seen)), "no record twice"
    assert set(original) <= set(seen), "no record that was there all along is missed"
    assert set(seen) <= set(original) | set(inserted)
    assert all(len(page) == DEFAULT_PAGE_SIZE for page in pages[:-1])


def test_a_timeline_comes_newest_first_and_its_audit_event_names_the_page(api, world) -> None:  # type: ignore[no-untyped-def]
    seed_records(world.alice, world.doctor, 1000)
    with system_context("test: the expected order"):
        expected = ids(list(MedicalRecord.objects.filter(patient=world.alice).order_by("-record_date", "-id")))
    pages = walk(api(world.doctor), f"/api/v1/patients/{world.alice.pk}/records/?page_size=200")
    assert flat(pages) == expected
    events = audit_events(action="record.list")
    assert len(events) == len(pages) == 5
    first, second = events[0], events[1]
    assert first.details == {"count": 200, "first": expected[0], "last": expected[199], "cursor": False, "more": True}
    assert second.details == {
        "count": 200,
        "first": expected[200],
        "last": expected[399],
        "cursor": True,
        "more": True,
    }
    assert events[-1].details["more"] is False
    assert first.patient_id == world.alice.pk and first.purpose == "treatment"
    assert max(len(event.canonical()) for event in events) < 700, "a page's event is small (was ~21 KB)"


def test_a_page_is_one_keyset_query_without_offset_or_count(api, world) -> None:  # type: ignore[no-untyped-def]
    seed_records(world.alice, world.doctor, 120)
    client = api(world.doctor)
    second = next_url(client.get(f"/api/v1/patients/{world.alice.pk}/records/"))
    assert second is not None
    with CaptureQueriesContext(connection) as queries:
        assert client.get(second).status_code == 200
    listing = [q["sql"] for q in queries.captured_queries if 'FROM "records_medicalrecord"' in q["sql"]]
    assert len(listing) == 1, listing
    assert "OFFSET" not in listing[0] and "COUNT(" not in listing[0].upper()
    assert 'ORDER BY "records_medicalrecord"."record_date" DESC, "records_medicalrecord"."id" DESC' in listing[0]
    assert "LIMIT 51" in listing[0]


def test_appointments_walk_earliest_first_per_patient_and_per_provider(api, world, user_factory, care_team) -> None:  # type: ignore[no-untyped-def]
    colleague = user_factory("clinician", username="dr.colleague")
    care_team(world.alice, colleague)
    mine = seed_appointments(world.alice, world.doctor, 300)
    theirs = seed_appointments(world.alice, colleague, 40)
    with system_context("test: the expected order"):
        everything = ids(list(Appointment.objects.filter(patient=world.alice).order_by("scheduled_at", "id")))
        my_schedule = ids(list(Appointment.objects.filter(provider=world.doctor).order_by("scheduled_at", "id")))
    client = api(world.doctor)
    assert flat(walk(client, "/api/v1/appointments/?page_size=64")) == everything
    assert flat(walk(client, f"/api/v1/appointments/?patient={world.alice.pk}&page_size=64")) == everything
    assert flat(walk(client, f"/api/v1/appointments/?provider={world.doctor.pk}")) == my_schedule
    assert set(my_schedule) == set(ids(mine)) and not set(my_schedule) & set(ids(theirs))
    [first_page] = [e for e in audit_events(action="appointment.list") if e.details["provider"]][:1]
    assert first_page.details["count"] == DEFAULT_PAGE_SIZE and first_page.details["first"] == my_schedule[0]
    per_patient = [e for e in audit_events(action="appointment.list") if e.patient_id == world.alice.pk]
    assert per_patient and all(e.purpose == "treatment" for e in per_patient)


def test_appointment_filters_are_validated_and_scoped(api, world) -> None:  # type: ignore[no-untyped-def]
    client = api(world.doctor)
    bad = client.get("/api/v1/appointments/?provider=not-a-uuid")
    assert bad.status_code == 400 and "provider" in error_fields(bad)
    assert client.get(f"/api/v1/appointments/?patient={world.bob.pk}").status_code == 404
    assert client.get(f"/api/v1/appointments/?patient={uuid.uuid4()}").status_code == 404


def test_a_patient_never_sees_another_patients_rows_on_any_page(api, world) -> None:  # type: ignore[no-untyped-def]
    with system_context("test: bob on the doctor's team"):
        CareTeamMembership.objects.create(patient=world.bob, clinician=world.doctor)
    alices = set(ids(seed_appointments(world.alice, world.doctor, 130)))
    seed_appointments(world.bob, world.doctor, 130)
    alice_records = set(ids(seed_records(world.alice, world.doctor, 130)))
    seed_records(world.bob, world.doctor, 130)
    client = api(world.alice_user)
    assert set(flat(walk(client, "/api/v1/appointments/?page_size=20"))) == alices
    assert set(flat(walk(client, f"/api/v1/appointments/?provider={world.doctor.pk}"))) == alices
    assert set(flat(walk(client, f"/api/v1/patients/{world.alice.pk}/records/?page_size=20"))) == alice_records
    assert flat(walk(client, "/api/v1/patients/")) == [str(world.alice.pk)]
    assert client.get(f"/api/v1/patients/{world.bob.pk}/records/").status_code == 404
    assert client.get(f"/api/v1/appointments/?patient={world.bob.pk}").status_code == 404


def test_a_clinician_lists_the_patients_of_their_break_glass_grants(api, world) -> None:  # type: ignore[no-untyped-def]
    seed_patients(world.outsider, 60, on_team=True)
    client = api(world.outsider)
    assert str(world.bob.pk) not in flat(walk(client, "/api/v1/patients/"))
    granted = client.post(f"/api/v1/patients/{world.bob.pk}/emergency-access/", {"reason": REASON})
    assert granted.status_code == 201, granted.content
    listed = flat(walk(client, "/api/v1/patients/?page_size=25"))
    assert str(world.bob.pk) in listed and len(listed) == len(set(listed)) == 61
    assert str(world.alice.pk) not in listed, "not on this clinician's team, no grant"
    ended = client.post(f"/api/v1/emergency-access/{granted.json()['grant']}/end/", {})
    assert ended.status_code == 200
    assert str(world.bob.pk) not in flat(walk(client, "/api/v1/patients/"))


def test_a_patient_on_the_team_and_under_a_grant_is_listed_once(api, world) -> None:  # type: ignore[no-untyped-def]
    from patients.models import EmergencyAccessGrant

    with system_context("test: a grant for a care-team patient"):
        EmergencyAccessGrant.objects.create(
            clinician=world.doctor,
            patient=world.alice,
            reason=REASON,
            expires_at=timezone.now() + dt.timedelta(hours=1),
        )
    assert flat(walk(api(world.doctor), "/api/v1/patients/")) == [str(world.alice.pk)]


def _cursor_of(response: Any) -> str:
    url = next_url(response)
    assert url is not None
    return dict(part.split("=", 1) for part in urlsplit(url).query.split("&"))["cursor"]


def test_bad_cursors_get_a_json_400(api, world, user_factory, care_team) -> None:  # type: ignore[no-untyped-def]
    seed_records(world.alice, world.doctor, 60)
    seed_records(world.bob, world.doctor, 60)
    care_team(world.bob, world.doctor)
    colleague = user_factory("clinician", username="dr.colleague")
    care_team(world.alice, colleague)
    doctor = api(world.doctor)
    alice_url = f"/api/v1/patients/{world.alice.pk}/records/"
    cursor = _cursor_of(doctor.get(alice_url))
    assert doctor.get(f"{alice_url}?cursor={cursor}").status_code == 200
    flipped = cursor[:-3] + ("A" if cursor[-3] != "A" else "B") + cursor[-2:]
    refused = {
        "tampered": doctor.get(f"{alice_url}?cursor={flipped}"),
        "truncated": doctor.get(f"{alice_url}?cursor={cursor[:40]}"),
        "garbage": doctor.get(f"{alice_url}?cursor=not-a-cursor"),
        "bad base64": doctor.get(f"{alice_url}?cursor=c1.%21%21%21"),
        "empty token": doctor.get(f"{alice_url}?cursor=c1."),
        "too long": doctor.get(f"{alice_url}?cursor=c1.{'A' * 600}"),
        "another timeline": doctor.get(f"/api/v1/patients/{world.bob.pk}/records/?cursor={cursor}"),
        "another list": doctor.get(f"/api/v1/appointments/?cursor={cursor}"),
        "another user": api(colleague).get(f"{alice_url}?cursor={cursor}"),
    }
    for case, response in refused.items():
        assert response.status_code == 400, case
        assert response["Content-Type"] == "application/json", case
        assert error_fields(response) == {
            "cursor": ["This cursor is not valid for this list; start again from the first page."]
        }


@pytest.mark.parametrize("size", ["0", "-1", "ten", "1.5", "9999999", "٣"])
def test_bad_page_sizes_get_a_json_400(api, world, size) -> None:  # type: ignore[no-untyped-def]
    response = api(world.doctor).get(f"/api/v1/patients/?page_size={size}")
    assert response.status_code == 400
    assert list(error_fields(response)) == ["page_size"]


def test_a_cursor_reveals_no_dates_or_ids(api, world) -> None:  # type: ignore[no-untyped-def]
    import base64

    records = seed_records(world.alice, world.doctor, 60)
    cursor = _cursor_of(api(world.doctor).get(f"/api/v1/patients/{world.alice.pk}/records/"))
    body = cursor.removeprefix("c1.")
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    for record in records:
        assert str(record.pk).encode() not in raw and record.pk.bytes not in raw
    assert b"2020-" not in raw and b"2021-" not in raw


@pytest.mark.parametrize("values", [["2020-01-01"], ["not-a-date", str(uuid.uuid4())], {"a": 1}])
def test_a_cursor_of_ours_with_another_shape_is_a_400(api, world, values) -> None:  # type: ignore[no-untyped-def]
    """What an older release's cursor would be: sealed right, but not this order's position."""
    import base64
    import json

    from keys import crypto
    from neonpro.security.context import identity_for_user
    from neonpro.security.pagination import CURSOR_PREFIX, CURSOR_PURPOSE, _context

    context = _context(f"records:{world.alice.pk}", identity_for_user(world.doctor))
    with system_context("test: seal a cursor"):
        token = crypto.encrypt(json.dumps(values).encode(), context=context, purpose=CURSOR_PURPOSE)
    cursor = CURSOR_PREFIX + base64.urlsafe_b64encode(token).decode().rstrip("=")
    response = api(world.doctor).get(f"/api/v1/patients/{world.alice.pk}/records/?cursor={cursor}")
    assert response.status_code == 400 and list(error_fields(response)) == ["cursor"]
