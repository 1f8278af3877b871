"""neonpro.client against the live served app (TLS, PostgreSQL, row-level security), as a
clinician with a session; with a bearer token once agents can have one (tests/neonpro/test_client.py
covers the token header and every error path with a fake)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from neonpro.client import ApiError, NeonProClient
from tests.api.live import signed_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def clinician(api_app: Any) -> Iterator[NeonProClient]:
    session = signed_in(api_app, "dr.house")
    with NeonProClient.with_session(
        api_app.url,
        cookies=dict(session.cookies.items()),
        csrf_token=session.headers["X-CSRFToken"],
        user_agent=str(session.headers["User-Agent"]),
        verify=str(api_app.cert),
    ) as client:
        yield client


def test_a_clinician_works_through_the_client(clinician: NeonProClient, api_app: Any) -> None:
    me = clinician.me()
    assert me.role == "clinician" and me.display_name == "dr.house" and "patients" in me.links

    patients = list(clinician.patients(page_size=1))  # one page per patient: the Link header is followed
    assert "MRN-000101" in {p.mrn for p in patients}
    ada = next(p for p in patients if p.mrn == "MRN-000101")
    assert clinician.patient(ada.id) == ada
    assert [p.id for p in clinician.search_patients("mrn", "MRN-000101")] == [ada.id]
    [house] = [c for c in clinician.clinicians(ada.id) if c.id == me.id]
    assert house.display_name == "dr.house"

    written = clinician.create_record(ada.id, diagnosis="Client test diagnosis", record_date=dt.date(2030, 6, 1))
    assert written.provider == me.id and written.patient_name == "Ada Demo"
    assert clinician.record(written.id) == written
    in_range = list(clinician.records(ada.id, since=dt.date(2030, 6, 1), until=dt.date(2030, 6, 1)))
    assert [r.id for r in in_range] == [written.id]

    when = dt.datetime(2031, 3, 4, 9, 30, tzinfo=dt.UTC)
    booked = clinician.book_appointment(ada.id, when, reason="Client test")
    assert booked.status == "confirmed" and booked.provider_name == "dr.house"
    moved = clinician.reschedule_appointment(booked.id, when + dt.timedelta(days=1), duration_minutes=45)
    assert (moved.scheduled_at, moved.duration_minutes, moved.status) == (when + dt.timedelta(days=1), 45, "confirmed")
    on_the_day = list(clinician.appointments(patient=ada.id, since=dt.date(2031, 3, 5), until=dt.date(2031, 3, 5)))
    assert [a.id for a in on_the_day] == [booked.id]
    assert clinician.cancel_appointment(booked.id).status == "cancelled"
    assert clinician.appointment(booked.id).status == "cancelled"


def test_refusals_arrive_as_api_errors(clinician: NeonProClient, api_app: Any) -> None:
    [canary, _] = api_app.canaries.patient_ids

    with pytest.raises(ApiError) as missing:
        clinician.patient(canary)
    with pytest.raises(ApiError) as invalid:
        list(clinician.records(canary, since=dt.date(2030, 1, 2), until=dt.date(2030, 1, 1)))

    assert (missing.value.status, missing.value.code) == (404, "not_found")
    assert invalid.value.status in (400, 404)  # the range is checked first, or the patient: either way refused


def test_a_token_that_is_not_valid_is_refused(api_app: Any) -> None:
    with NeonProClient(api_app.url, token="npa_not-a-real-token", verify=str(api_app.cert)) as client:
        with pytest.raises(ApiError) as refused:
            client.me()

    assert refused.value.status in (401, 403) and refused.value.code in ("not_authenticated", "authentication_failed")
