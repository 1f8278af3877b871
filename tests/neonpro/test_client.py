"""neonpro.client against a fake of the API (httpx.MockTransport): every method sends the
request the API documents and parses its answer; every failure is an ApiError.

The same client against the live served app is tests/api/test_client_live.py.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from neonpro.client import ApiError, Appointment, Clinician, Me, NeonProClient, Patient, Record

BASE = "https://records.example.org"
P1, P2, R1, A1, C1 = (uuid.uuid4() for _ in range(5))
PATIENT = {
    "id": str(P1),
    "full_name": "Ada Demo",
    "date_of_birth": "1984-03-14",
    "mrn": "MRN-000101",
    "ssn": "***-**-0001",
    "email": None,
    "phone": "+1 555 0101",
    "address": None,
    "contact_by_email": False,
    "contact_by_sms": True,
    "active": True,
    "updated_at": "2026-01-02T03:04:05.123456Z",
}
RECORD = {
    "id": str(R1),
    "patient": str(P1),
    "patient_name": "Ada Demo",
    "provider": str(C1),
    "provider_name": "Gregory House",
    "record_date": "2026-01-02",
    "diagnosis": "Flu",
    "treatment_plan": "Rest",
    "medications": "",
    "allergies": "Penicillin",
    "lab_results": {"crp": 12},
    "notes": "",
    "updated_at": "2026-01-02T03:04:05Z",
}
APPOINTMENT = {
    "id": str(A1),
    "patient": str(P1),
    "patient_name": "Ada Demo",
    "provider": str(C1),
    "provider_name": "Gregory House",
    "scheduled_at": "2026-02-01T09:30:00Z",
    "duration_minutes": 30,
    "status": "confirmed",
    "reason": "Check-up",
    "notes": "",
}

Handler = Callable[[httpx.Request], httpx.Response]


class Fake:
    """Answers by (method, path); records every request it saw."""

    def __init__(self, routes: dict[tuple[str, str], Handler | httpx.Response]) -> None:
        self.routes = routes
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        answer = self.routes[(request.method, request.url.path)]
        return answer(request) if callable(answer) else answer


def client(fake: Fake, **kwargs: Any) -> NeonProClient:
    return NeonProClient(BASE, token="npa_secret", transport=httpx.MockTransport(fake), **kwargs)


def ok(body: Any, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content)


def test_me_sends_the_bearer_token_and_parses_the_caller() -> None:
    fake = Fake(
        {
            ("GET", "/api/v1/me/"): ok(
                {"id": str(C1), "role": "agent", "display_name": "triage", "patient": None, "links": {"me": "x"}}
            )
        }
    )

    with client(fake) as api:
        me = api.me()

    assert me == Me(id=C1, role="agent", display_name="triage", patient=None, links={"me": "x"})
    [request] = fake.seen
    assert request.headers["Authorization"] == "Bearer npa_secret"
    assert request.headers["Accept"] == "application/json"


def test_a_patients_me_names_their_patient_id() -> None:
    me = {"id": str(C1), "role": "patient", "display_name": "Ada", "patient": str(P1)}
    fake = Fake({("GET", "/api/v1/me/"): ok(me)})

    assert client(fake).me().patient == P1


def test_patients_follow_the_link_header_page_by_page() -> None:
    second = {**PATIENT, "id": str(P2)}
    pages = {
        None: ok([PATIENT], Link=f'<{BASE}/api/v1/patients/?page_size=1&cursor=c1.abc>; rel="next"'),
        "c1.abc": ok([second]),
    }
    fake = Fake({("GET", "/api/v1/patients/"): lambda request: pages[request.url.params.get("cursor")]})

    listed = list(client(fake).patients(page_size=1))

    assert [p.id for p in listed] == [P1, P2]
    assert listed[0] == Patient(
        id=P1,
        full_name="Ada Demo",
        date_of_birth=dt.date(1984, 3, 14),
        mrn="MRN-000101",
        ssn="***-**-0001",
        email=None,
        phone="+1 555 0101",
        address=None,
        contact_by_email=False,
        contact_by_sms=True,
        active=True,
        updated_at=dt.datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=dt.UTC),
    )
    assert [dict(r.url.params) for r in fake.seen] == [{"page_size": "1"}, {"page_size": "1", "cursor": "c1.abc"}]


def test_lists_are_lazy() -> None:
    fake = Fake({("GET", "/api/v1/patients/"): ok([PATIENT])})

    pages = client(fake).patients()

    assert fake.seen == []
    assert next(pages).id == P1


def test_a_next_link_to_another_origin_is_not_followed() -> None:
    fake = Fake({("GET", "/api/v1/patients/"): ok([PATIENT], Link='<https://evil.example/steal>; rel="next"')})

    with pytest.raises(ApiError) as refused:
        list(client(fake).patients())

    assert refused.value.code == "bad_link"
    assert len(fake.seen) == 1  # the token went nowhere else


def test_patient_and_search_keep_the_value_in_the_body() -> None:
    fake = Fake({("GET", f"/api/v1/patients/{P1}/"): ok(PATIENT), ("POST", "/api/v1/patients/search/"): ok([PATIENT])})
    api = client(fake)

    assert api.patient(str(P1)).mrn == "MRN-000101"
    assert [p.id for p in api.search_patients("ssn", "900-12-0001")] == [P1]

    search = fake.seen[1]
    assert body_of(search) == {"field": "ssn", "value": "900-12-0001"}
    assert "900" not in str(search.url)


def test_a_patient_id_that_is_not_a_uuid_never_reaches_the_wire() -> None:
    fake = Fake({})

    with pytest.raises(ValueError):
        client(fake).patient("../admin")
    assert fake.seen == []


def test_clinicians_of_a_care_team() -> None:
    fake = Fake({("GET", f"/api/v1/patients/{P1}/clinicians/"): ok([{"id": str(C1), "display_name": "Dr House"}])})

    assert list(client(fake).clinicians(P1)) == [Clinician(id=C1, display_name="Dr House")]


def test_records_with_a_date_range_and_one_record() -> None:
    fake = Fake(
        {("GET", f"/api/v1/patients/{P1}/records/"): ok([RECORD]), ("GET", f"/api/v1/records/{R1}/"): ok(RECORD)}
    )
    api = client(fake)

    [listed] = api.records(P1, since=dt.date(2026, 1, 1), until=dt.date(2026, 1, 31), page_size=10)
    one = api.record(R1)

    assert (
        listed
        == one
        == Record(
            id=R1,
            patient=P1,
            patient_name="Ada Demo",
            provider=C1,
            provider_name="Gregory House",
            record_date=dt.date(2026, 1, 2),
            diagnosis="Flu",
            treatment_plan="Rest",
            medications="",
            allergies="Penicillin",
            lab_results={"crp": 12},
            notes="",
            updated_at=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        )
    )
    assert dict(fake.seen[0].url.params) == {"page_size": "10", "from": "2026-01-01", "to": "2026-01-31"}


def test_create_record_sends_only_what_is_given() -> None:
    fake = Fake({("POST", f"/api/v1/patients/{P1}/records/"): ok(RECORD, status=201)})

    record = client(fake).create_record(
        P1, diagnosis="Flu", record_date=dt.date(2026, 1, 2), allergies="Penicillin", lab_results={"crp": 12}
    )

    assert record.id == R1 and record.allergies == "Penicillin"
    assert body_of(fake.seen[0]) == {
        "record_date": "2026-01-02",
        "diagnosis": "Flu",
        "allergies": "Penicillin",
        "lab_results": {"crp": 12},
    }


@pytest.mark.parametrize(
    "row",
    [
        {**RECORD, "allergies": None},  # a record written before allergies were recorded
        {key: value for key, value in RECORD.items() if key != "allergies"},  # a server from before the field
    ],
)
def test_a_record_without_allergies_has_none(row: dict[str, Any]) -> None:
    fake = Fake({("GET", f"/api/v1/records/{R1}/"): ok(row)})

    assert client(fake).record(R1).allergies is None


def test_appointments_list_get_book_cancel_and_reschedule() -> None:
    cancelled = {**APPOINTMENT, "status": "cancelled"}
    moved = {**APPOINTMENT, "status": "requested", "scheduled_at": "2026-03-01T10:00:00+00:00"}
    fake = Fake(
        {
            ("GET", "/api/v1/appointments/"): ok([APPOINTMENT]),
            ("GET", f"/api/v1/appointments/{A1}/"): ok(APPOINTMENT),
            ("POST", "/api/v1/appointments/"): ok(APPOINTMENT, status=201),
            ("POST", f"/api/v1/appointments/{A1}/cancel/"): ok(cancelled),
            ("POST", f"/api/v1/appointments/{A1}/reschedule/"): ok(moved),
        }
    )
    api = client(fake)
    when = dt.datetime(2026, 2, 1, 9, 30, tzinfo=dt.UTC)

    [listed] = api.appointments(patient=P1, provider=C1, since=dt.date(2026, 2, 1), until=dt.date(2026, 2, 28))
    one = api.appointment(A1)
    booked = api.book_appointment(P1, when, provider=C1, duration_minutes=30, reason="Check-up")
    gone = api.cancel_appointment(A1)
    later = api.reschedule_appointment(A1, dt.datetime(2026, 3, 1, 10, tzinfo=dt.UTC), duration_minutes=45)

    assert (
        listed
        == one
        == booked
        == Appointment(
            id=A1,
            patient=P1,
            patient_name="Ada Demo",
            provider=C1,
            provider_name="Gregory House",
            scheduled_at=when,
            duration_minutes=30,
            status="confirmed",
            reason="Check-up",
            notes="",
        )
    )
    assert (gone.status, later.status) == ("cancelled", "requested")
    list_params, book, cancel, reschedule = (
        dict(fake.seen[0].url.params),
        *(body_of(fake.seen[n]) for n in (2, 3, 4)),
    )
    assert list_params == {"patient": str(P1), "provider": str(C1), "from": "2026-02-01", "to": "2026-02-28"}
    assert book == {
        "patient": str(P1),
        "scheduled_at": "2026-02-01T09:30:00+00:00",
        "provider": str(C1),
        "duration_minutes": 30,
        "reason": "Check-up",
    }
    assert cancel == {}
    assert reschedule == {"scheduled_at": "2026-03-01T10:00:00+00:00", "duration_minutes": 45}


def test_the_error_body_becomes_a_typed_api_error() -> None:
    error = {"error": {"code": "invalid", "message": "See fields.", "fields": {"scheduled_at": ["Required."]}}}
    fake = Fake({("POST", "/api/v1/appointments/"): ok(error, status=400)})

    with pytest.raises(ApiError) as refused:
        client(fake).book_appointment(P1, dt.datetime(2026, 2, 1, tzinfo=dt.UTC))

    assert (refused.value.status, refused.value.code, refused.value.message) == (400, "invalid", "See fields.")
    assert refused.value.fields == {"scheduled_at": ["Required."]}
    assert refused.value.retry_after is None
    assert str(refused.value) == "400 invalid: See fields."


def test_throttling_and_outages_say_when_to_retry() -> None:
    throttled = {"error": {"code": "throttled", "message": "Slow down.", "fields": {}}}
    fake = Fake({("GET", "/api/v1/me/"): ok(throttled, status=429, **{"Retry-After": "17"})})

    with pytest.raises(ApiError) as refused:
        client(fake).me()

    assert (refused.value.status, refused.value.code, refused.value.retry_after) == (429, "throttled", 17)


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(502, text="<html>Bad gateway</html>"),
        httpx.Response(500, json={"detail": "old shape"}),
        httpx.Response(503, json=["not", "an", "object"], headers={"Retry-After": "soon"}),
    ],
)
def test_an_answer_without_the_error_body_is_still_an_api_error(answer: httpx.Response) -> None:
    fake = Fake({("GET", "/api/v1/me/"): answer})

    with pytest.raises(ApiError) as refused:
        client(fake).me()

    assert refused.value.code == "http_error" and refused.value.status == answer.status_code
    assert refused.value.fields == {} and refused.value.retry_after is None


def test_an_unreachable_server_is_an_api_error_with_status_0() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(ApiError) as refused:
        NeonProClient(BASE, transport=httpx.MockTransport(down)).me()

    assert (refused.value.status, refused.value.code) == (0, "unreachable")
    assert "ConnectError" in refused.value.message


def test_a_session_client_sends_cookies_csrf_referer_and_the_user_agent_that_signed_in_and_no_token() -> None:
    fake = Fake({("POST", f"/api/v1/appointments/{A1}/cancel/"): ok(APPOINTMENT)})
    api = NeonProClient.with_session(
        BASE,
        cookies={"__Host-sessionid": "s3ss10n"},
        csrf_token="t0ken",
        user_agent="Browser/1.0",
        transport=httpx.MockTransport(fake),
    )

    api.cancel_appointment(A1)

    [request] = fake.seen
    assert request.headers["Cookie"] == "__Host-sessionid=s3ss10n"
    assert request.headers["X-CSRFToken"] == "t0ken"
    assert request.headers["Referer"] == f"{BASE}/"
    assert request.headers["User-Agent"] == "Browser/1.0"  # the server ends a session on another one
    assert "Authorization" not in request.headers


@pytest.mark.parametrize("url", ["http://records.example.org", "records.example.org", "https://"])
def test_only_https_urls_are_accepted(url: str) -> None:
    with pytest.raises(ValueError, match="https"):
        NeonProClient(url)


def test_a_base_url_with_a_path_uses_its_origin() -> None:
    fake = Fake({("GET", "/api/v1/me/"): ok({"id": str(C1), "role": "agent", "display_name": "a", "patient": None})})

    NeonProClient(f"{BASE}/some/path/", transport=httpx.MockTransport(fake)).me()

    assert str(fake.seen[0].url) == f"{BASE}/api/v1/me/"


def test_a_ca_bundle_path_is_the_clients_only_trust_anchor() -> None:
    import certifi

    api = NeonProClient(BASE, verify=certifi.where())

    context = api._http._transport._pool._ssl_context  # type: ignore[attr-defined]
    assert context.verify_mode.name == "CERT_REQUIRED" and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 0
