"""A small typed client of the NeonPro Records API, for agents and scripts.

    from neonpro.client import NeonProClient

    with NeonProClient("https://records.example.org", token="npa_…", verify="ca.pem") as api:
        me = api.me()
        for patient in api.patients():                    # every page, following the Link header
            for record in api.records(patient.id, since=dt.date(2024, 1, 1)):
                ...
        booked = api.book_appointment(patient.id, scheduled_at, provider=clinician.id)

Guarantees:

* Every call is one HTTPS request (lists: one per page) with the bearer token
  (``Authorization: Bearer <token>``), or a session's cookies and CSRF header
  (``NeonProClient.with_session``, for people's scripts and tests); TLS is verified (``verify``:
  True, a CA bundle path or an ``ssl.SSLContext``).
* Every answer outside 2xx raises ``ApiError(code, message, fields, status)``, read from the
  API's one error body (docs/api.md); an unreachable server raises ``ApiError`` with status 0
  and code ``unreachable``. Nothing else escapes but programming errors.
* Lists follow ``Link: <…>; rel="next"`` only to the origin the client was made for: a token is
  never sent anywhere else.
* Searchable values (SSN, MRN, email, phone) travel in request bodies, never in URLs; an
  ``ApiError``'s text is the server's message, which never repeats a submitted value.
"""

from __future__ import annotations

import datetime as dt
import re
import ssl
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

T = TypeVar("T")
Id = uuid.UUID | str
Verify = bool | str | ssl.SSLContext
_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


class ApiError(Exception):
    """An answer outside 2xx (or no answer): the API's error body, typed."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int,
        fields: Mapping[str, list[str]] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.fields: dict[str, list[str]] = dict(fields or {})
        self.retry_after = retry_after


@dataclass(frozen=True)
class Me:
    id: uuid.UUID
    role: str
    display_name: str
    patient: uuid.UUID | None
    links: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Patient:
    id: uuid.UUID
    full_name: str
    date_of_birth: dt.date
    mrn: str
    ssn: str | None  # masked: ***-**-1234
    email: str | None
    phone: str | None
    address: str | None
    contact_by_email: bool
    contact_by_sms: bool
    active: bool
    updated_at: dt.datetime


@dataclass(frozen=True)
class Record:
    id: uuid.UUID
    patient: uuid.UUID
    patient_name: str | None
    provider: uuid.UUID
    provider_name: str | None
    record_date: dt.date
    diagnosis: str
    treatment_plan: str
    medications: str
    allergies: str | None  # None: written before allergies were recorded
    lab_results: Any
    notes: str
    updated_at: dt.datetime


@dataclass(frozen=True)
class Appointment:
    id: uuid.UUID
    patient: uuid.UUID
    patient_name: str | None
    provider: uuid.UUID
    provider_name: str | None
    scheduled_at: dt.datetime
    duration_minutes: int
    status: str
    reason: str
    notes: str


@dataclass(frozen=True)
class Clinician:
    id: uuid.UUID
    display_name: str


def _uuid(value: Any) -> uuid.UUID | None:
    return None if value is None else uuid.UUID(str(value))


def _me(row: dict[str, Any]) -> Me:
    return Me(
        id=uuid.UUID(row["id"]),
        role=row["role"],
        display_name=row["display_name"],
        patient=_uuid(row.get("patient")),
        links=dict(row.get("links", {})),
    )


def _patient(row: dict[str, Any]) -> Patient:
    return Patient(
        id=uuid.UUID(row["id"]),
        full_name=row["full_name"],
        date_of_birth=dt.date.fromisoformat(row["date_of_birth"]),
        mrn=row["mrn"],
        ssn=row["ssn"],
        email=row["email"],
        phone=row["phone"],
        address=row["address"],
        contact_by_email=row["contact_by_email"],
        contact_by_sms=row["contact_by_sms"],
        active=row["active"],
        updated_at=dt.datetime.fromisoformat(row["updated_at"]),
    )


def _record(row: dict[str, Any]) -> Record:
    return Record(
        id=uuid.UUID(row["id"]),
        patient=uuid.UUID(row["patient"]),
        patient_name=row.get("patient_name"),
        provider=uuid.UUID(row["provider"]),
        provider_name=row.get("provider_name"),
        record_date=dt.date.fromisoformat(row["record_date"]),
        diagnosis=row["diagnosis"],
        treatment_plan=row["treatment_plan"],
        medications=row["medications"],
        allergies=row.get("allergies"),
        lab_results=row["lab_results"],
        notes=row["notes"],
        updated_at=dt.datetime.fromisoformat(row["updated_at"]),
    )


def _appointment(row: dict[str, Any]) -> Appointment:
    return Appointment(
        id=uuid.UUID(row["id"]),
        patient=uuid.UUID(row["patient"]),
        patient_name=row.get("patient_name"),
        provider=uuid.UUID(row["provider"]),
        provider_name=row.get("provider_name"),
        scheduled_at=dt.datetime.fromisoformat(row["scheduled_at"]),
        duration_minutes=row["duration_minutes"],
        status=row["status"],
        reason=row["reason"],
        notes=row["notes"],
    )


def _clinician(row: dict[str, Any]) -> Clinician:
    return Clinician(id=uuid.UUID(row["id"]), display_name=row["display_name"])


def _given(**values: Any) -> dict[str, Any]:
    """The keyword arguments that were given (not None), JSON-ready."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, dt.date | dt.datetime):
            value = value.isoformat()
        elif isinstance(value, uuid.UUID):
            value = str(value)
        out[name] = value
    return out


class NeonProClient:
    """The NeonPro API over HTTPS. Use as a context manager, or call ``close()``."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        verify: Verify = True,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "https" or not parts.netloc:
            raise ValueError("base_url must be an https:// URL (the API is served over TLS only)")
        self.origin = f"{parts.scheme}://{parts.netloc}"
        headers = {"Accept": "application/json"}
        if isinstance(verify, str):  # a CA bundle: the one trust anchor of this client
            verify = ssl.create_default_context(cafile=verify)
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=self.origin, headers=headers, verify=verify, timeout=timeout, transport=transport
        )

    @classmethod
    def with_session(
        cls,
        base_url: str,
        *,
        cookies: Mapping[str, str],
        csrf_token: str,
        user_agent: str,
        verify: Verify = True,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> NeonProClient:
        """A client acting with a signed-in person's session (its cookies, and the CSRF token
        and same-origin Referer that every unsafe request needs). ``user_agent`` is the one
        that signed in: the server binds a session to it and ends the session on another."""
        client = cls(base_url, verify=verify, timeout=timeout, transport=transport)
        for name, value in cookies.items():
            client._http.cookies.set(name, value)
        client._http.headers.update(
            {"X-CSRFToken": csrf_token, "Referer": f"{client.origin}/", "User-Agent": user_agent}
        )
        return client

    def __enter__(self) -> NeonProClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- plumbing --------------------------------------------------------------------------

    def _request(self, method: str, url: str, *, json: Any = None, params: Any = None) -> httpx.Response:
        try:
            response = self._http.request(method, url, json=json, params=params)
        except httpx.TransportError as exc:
            raise ApiError("unreachable", f"The API could not be reached ({type(exc).__name__}).", status=0) from exc
        if response.is_success:
            return response
        raise _error_of(response)

    def _one(self, method: str, url: str, parse: Callable[[dict[str, Any]], T], *, json: Any = None) -> T:
        return parse(self._request(method, url, json=json).json())

    def _pages(self, url: str, parse: Callable[[dict[str, Any]], T], params: dict[str, Any]) -> Iterator[T]:
        next_url: str | None = url
        query: dict[str, Any] | None = params
        while next_url is not None:
            response = self._request("GET", next_url, params=query)
            yield from (parse(row) for row in response.json())
            next_url, query = self._next_link(response), None  # the link carries the whole query

    def _next_link(self, response: httpx.Response) -> str | None:
        match = _NEXT.search(response.headers.get("Link", ""))
        if match is None:
            return None
        link = match.group(1)
        parts = urlsplit(link)
        if f"{parts.scheme}://{parts.netloc}" != self.origin:
            raise ApiError("bad_link", "The next page is on another origin: not followed.", status=response.status_code)
        return link

    # -- resources -------------------------------------------------------------------------

    def me(self) -> Me:
        return self._one("GET", "/api/v1/me/", _me)

    def patients(self, *, page_size: int | None = None) -> Iterator[Patient]:
        """Every patient the caller may see, newest first (page by page, lazily)."""
        return self._pages("/api/v1/patients/", _patient, _given(page_size=page_size))

    def patient(self, patient_id: Id) -> Patient:
        return self._one("GET", f"/api/v1/patients/{uuid.UUID(str(patient_id))}/", _patient)

    def search_patients(self, field: str, value: str) -> list[Patient]:
        """Exact match on ``ssn``, ``mrn``, ``email`` or ``phone`` (the value in the body)."""
        response = self._request("POST", "/api/v1/patients/search/", json={"field": field, "value": value})
        return [_patient(row) for row in response.json()]

    def clinicians(self, patient_id: Id) -> Iterator[Clinician]:
        """The clinicians on a patient's care team (whom to book with)."""
        return self._pages(f"/api/v1/patients/{uuid.UUID(str(patient_id))}/clinicians/", _clinician, {})

    def records(
        self,
        patient_id: Id,
        *,
        since: dt.date | None = None,
        until: dt.date | None = None,
        page_size: int | None = None,
    ) -> Iterator[Record]:
        """A patient's records, newest first, dated ``since``..``until`` (both included)."""
        params = _given(page_size=page_size, **{"from": since, "to": until})
        return self._pages(f"/api/v1/patients/{uuid.UUID(str(patient_id))}/records/", _record, params)

    def record(self, record_id: Id) -> Record:
        return self._one("GET", f"/api/v1/records/{uuid.UUID(str(record_id))}/", _record)

    def create_record(
        self,
        patient_id: Id,
        *,
        record_date: dt.date | None = None,
        diagnosis: str | None = None,
        treatment_plan: str | None = None,
        medications: str | None = None,
        allergies: str | None = None,
        lab_results: Any = None,
        notes: str | None = None,
    ) -> Record:
        body = _given(
            record_date=record_date,
            diagnosis=diagnosis,
            treatment_plan=treatment_plan,
            medications=medications,
            allergies=allergies,
            lab_results=lab_results,
            notes=notes,
        )
        return self._one("POST", f"/api/v1/patients/{uuid.UUID(str(patient_id))}/records/", _record, json=body)

    def appointments(
        self,
        *,
        patient: Id | None = None,
        provider: Id | None = None,
        since: dt.date | None = None,
        until: dt.date | None = None,
        page_size: int | None = None,
    ) -> Iterator[Appointment]:
        """Appointments the caller may see, earliest first, on days ``since``..``until``."""
        params = _given(patient=patient, provider=provider, page_size=page_size, **{"from": since, "to": until})
        return self._pages("/api/v1/appointments/", _appointment, params)

    def appointment(self, appointment_id: Id) -> Appointment:
        return self._one("GET", f"/api/v1/appointments/{uuid.UUID(str(appointment_id))}/", _appointment)

    def book_appointment(
        self,
        patient_id: Id,
        scheduled_at: dt.datetime,
        *,
        provider: Id | None = None,
        duration_minutes: int | None = None,
        reason: str | None = None,
        notes: str | None = None,
    ) -> Appointment:
        """Clinicians book (``confirmed``); patients request (``requested``, ``provider`` needed)."""
        body = _given(
            patient=uuid.UUID(str(patient_id)),
            scheduled_at=scheduled_at,
            provider=provider,
            duration_minutes=duration_minutes,
            reason=reason,
            notes=notes,
        )
        return self._one("POST", "/api/v1/appointments/", _appointment, json=body)

    def cancel_appointment(self, appointment_id: Id) -> Appointment:
        url = f"/api/v1/appointments/{uuid.UUID(str(appointment_id))}/cancel/"
        return self._one("POST", url, _appointment, json={})

    def reschedule_appointment(
        self, appointment_id: Id, scheduled_at: dt.datetime, *, duration_minutes: int | None = None
    ) -> Appointment:
        body = _given(scheduled_at=scheduled_at, duration_minutes=duration_minutes)
        url = f"/api/v1/appointments/{uuid.UUID(str(appointment_id))}/reschedule/"
        return self._one("POST", url, _appointment, json=body)


def _error_of(response: httpx.Response) -> ApiError:
    retry = response.headers.get("Retry-After", "")
    retry_after = int(retry) if retry.isdigit() else None
    try:
        error = response.json()["error"]
        code, message, fields = str(error["code"]), str(error["message"]), dict(error.get("fields") or {})
    except (ValueError, KeyError, TypeError):
        code, message, fields = "http_error", f"HTTP {response.status_code} without the API's error body.", {}
    return ApiError(code, message, status=response.status_code, fields=fields, retry_after=retry_after)
