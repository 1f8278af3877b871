"""Date ranges on lists: ``?from=&to=`` (ISO days, both included) on a record's date and an
appointment's day, kept through every page, one keyset query each, a clear 400 otherwise."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from neonpro.security.context import system_context
from neonpro.security.filters import BAD_DATE, BAD_RANGE, DateRange, date_range
from records.models import Appointment, MedicalRecord
from tests.api.conftest import audit_events
from tests.api.test_pagination import walk
from tests.errors import error_fields

pytestmark = pytest.mark.django_db
DAYS = [dt.date(2024, 1, d) for d in (1, 2, 3, 10, 20, 31)]


@pytest.fixture
def dated(world: Any) -> Any:
    zone = timezone.get_current_timezone()
    with system_context("test: dated rows"):
        world.records = {
            day: MedicalRecord.objects.create(patient=world.alice, provider=world.doctor, record_date=day)
            for day in DAYS
        }
        world.appointments = {
            day: Appointment.objects.create(
                patient=world.alice,
                provider=world.doctor,
                # the first and the last minute of the day: both belong to it
                scheduled_at=dt.datetime.combine(day, dt.time(0, 0) if day.day % 2 else dt.time(23, 59), tzinfo=zone),
            )
            for day in DAYS
        }
    return world


def ids_of(rows: dict[dt.date, Any], *days: dt.date) -> list[str]:
    return [str(rows[day].pk) for day in days]


def flat(pages: list[list[str]]) -> list[str]:
    return [row for page in pages for row in page]


@pytest.mark.parametrize(
    ("query", "days"),
    [
        ("from=2024-01-02&to=2024-01-10", DAYS[1:4]),
        ("from=2024-01-10", DAYS[3:]),
        ("to=2024-01-02", DAYS[:2]),
        ("from=2024-01-03&to=2024-01-03", DAYS[2:3]),
        ("from=2024-02-01", []),
        ("from=&to=", DAYS),  # empty is no bound
    ],
)
def test_records_and_appointments_within_a_range(api: Any, dated: Any, query: str, days: list[dt.date]) -> None:
    client = api(dated.doctor)

    records = flat(walk(client, f"/api/v1/patients/{dated.alice.pk}/records/?{query}&page_size=2"))
    appointments = flat(walk(client, f"/api/v1/appointments/?{query}&page_size=2"))

    assert records == ids_of(dated.records, *reversed(days))  # newest first
    assert appointments == ids_of(dated.appointments, *days)  # earliest first


def test_the_range_is_audited_with_the_page(api: Any, dated: Any) -> None:
    api(dated.doctor).get(f"/api/v1/patients/{dated.alice.pk}/records/?from=2024-01-02&to=2024-01-10")
    api(dated.doctor).get("/api/v1/appointments/?from=2024-01-02")

    [records] = audit_events(action="record.list", actor_id=dated.doctor.pk)
    [appointments] = audit_events(action="appointment.list", actor_id=dated.doctor.pk)
    assert records.details["dates"] is True and appointments.details["dates"] is True
    assert "2024-01" not in records.canonical().decode() + appointments.canonical().decode()  # no dates of care


def test_a_filtered_page_is_still_one_keyset_query(api: Any, dated: Any) -> None:
    client = api(dated.doctor)
    first = client.get(f"/api/v1/patients/{dated.alice.pk}/records/?from=2024-01-02&to=2024-01-20&page_size=1")
    second = first["Link"].removeprefix("<https://testserver").split(">")[0]
    assert "from=2024-01-02" in second and "to=2024-01-20" in second  # the range is kept

    with CaptureQueriesContext(connection) as queries:
        assert client.get(second).status_code == 200
    [listing] = [q["sql"] for q in queries.captured_queries if 'FROM "records_medicalrecord"' in q["sql"]]
    assert '"records_medicalrecord"."record_date" >= ' in listing
    assert '"records_medicalrecord"."record_date" <= ' in listing
    assert "OFFSET" not in listing and "LIMIT 2" in listing


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("from=2024-13-01", "from", BAD_DATE),
        ("to=2024-02-30", "to", BAD_DATE),
        ("from=yesterday", "from", BAD_DATE),
        ("from=20240101", "from", BAD_DATE),
        ("from=2024-01-01T00:00:00", "from", BAD_DATE),
        ("from=" + quote("٢٠٢٤-٠١-٠١"), "from", BAD_DATE),  # digits of another script
        ("from=" + quote("2024-01-01\n"), "from", BAD_DATE),
        ("from=2024-01-10&to=2024-01-09", "to", BAD_RANGE),
    ],
)
def test_a_bad_date_or_range_is_a_clear_400(api: Any, dated: Any, query: str, field: str, message: str) -> None:
    for url in (f"/api/v1/patients/{dated.alice.pk}/records/?{query}", f"/api/v1/appointments/?{query}"):
        answer = api(dated.doctor).get(url)
        assert answer.status_code == 400, url
        assert error_fields(answer) == {field: [message]}


def test_both_bad_bounds_are_named_at_once() -> None:
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as refused:
        date_range({"from": "x", "to": "y"})
    assert refused.value.message_dict == {"from": [BAD_DATE], "to": [BAD_DATE]}


def test_the_ends_of_the_calendar_are_ranges_too(api: Any, dated: Any) -> None:
    everything = api(dated.doctor).get("/api/v1/appointments/?from=0001-01-01&to=9999-12-31")

    assert everything.status_code == 200 and len(everything.json()) == len(DAYS)
    assert DateRange(end=dt.date.max).on_times("scheduled_at") == {}
    assert DateRange().audit_details() == {}
