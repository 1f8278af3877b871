"""record_event appends one hash-chained event; verify_chain walks it; details carry no free text."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from zoneinfo import ZoneInfo

import pytest
from django.db import connections

from neonpro.audit.models import GENESIS, AuditEvent
from neonpro.audit.services import bind_request, export_events, record_event, unbind_request, verify_chain
from tests.audit.conftest import THREAD_TIMEOUT, last_event_id, run_token

pytestmark = pytest.mark.django_db

UTC = dt.UTC


def _stored(ids: list[int]) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(pk__in=ids).order_by("id"))


# -- Append and verify ----------------------------------------------------------------------


def test_appended_events_link_into_one_chain_that_verifies() -> None:
    tail = AuditEvent.objects.order_by("-id").first()
    patient = uuid.uuid4()
    first = record_event("patient.read", resource_type="patients.patient", resource_id=patient, patient_id=patient)
    second = record_event("patient.update", resource_type="patients.patient", resource_id=patient, details={"n": 1})
    third = record_event("patient.export", outcome="denied", purpose="treatment")

    stored = _stored([first.pk, second.pk, third.pk])
    assert [event.pk for event in stored] == [first.pk, second.pk, third.pk]
    assert bytes(stored[0].prev_hash) == (bytes(tail.hash) if tail else GENESIS)
    assert bytes(stored[1].prev_hash) == bytes(stored[0].hash)
    assert bytes(stored[2].prev_hash) == bytes(stored[1].hash)
    for event in stored:
        assert len(bytes(event.hash)) == 32
        assert bytes(event.hash) == hashlib.sha256(bytes(event.prev_hash) + event.canonical()).digest()
    report = verify_chain()
    assert report.ok, report.problems
    assert report.checked >= 3


def test_the_first_event_of_the_chain_follows_32_zero_bytes() -> None:
    record_event("audit_test.genesis")  # the chain is not empty now, whatever ran before
    oldest = AuditEvent.objects.order_by("id").first()
    assert oldest is not None
    assert bytes(oldest.prev_hash) == GENESIS == bytes(32)


def test_the_stored_event_hashes_the_same_bytes_as_the_one_returned() -> None:
    token = bind_request(
        actor_id=uuid.uuid4(),
        actor_role="clinician",
        source_ip="10.1.2.3",
        user_agent="UA/1.0",
        request_id=uuid.uuid4(),
    )
    try:
        event = record_event("patient.read", resource_id=uuid.uuid4(), details={"ids": [uuid.uuid4(), uuid.uuid4()]})
    finally:
        unbind_request(token)
    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.canonical() == event.canonical()
    assert stored.source_ip == "10.1.2.3"
    assert stored.user_agent_hash == hashlib.sha256(b"UA/1.0").hexdigest()
    assert verify_chain().ok


def test_the_chain_is_verified_in_batches() -> None:
    for n in range(5):
        record_event("audit_test.batch", details={"n": n})
    whole, batched = verify_chain(), verify_chain(batch=2)
    assert whole.ok and batched.ok
    assert batched.checked == whole.checked


def test_an_event_recorded_with_a_non_utc_time_verifies() -> None:
    record_event("audit_test.timezone", now=dt.datetime(2024, 1, 1, 12, tzinfo=ZoneInfo("Europe/Berlin")))
    report = verify_chain()
    assert report.ok, report.problems


def test_an_event_from_a_non_canonical_ipv6_address_verifies() -> None:
    token = bind_request(actor_id=None, actor_role="", source_ip="2001:DB8::1", user_agent="", request_id=uuid.uuid4())
    try:
        record_event("audit_test.ipv6")
    finally:
        unbind_request(token)
    report = verify_chain()
    assert report.ok, report.problems


# -- Concurrent writers ----------------------------------------------------------------------

WRITERS = 8
APPENDS = 25


def test_concurrent_writers_extend_one_linear_chain() -> None:
    token = run_token()
    start = threading.Barrier(WRITERS)

    def writer(number: int) -> list[int]:
        try:
            start.wait(timeout=THREAD_TIMEOUT)
            return [
                record_event("audit_test.concurrent", details={"run": token, "writer": number, "seq": seq}).pk
                for seq in range(APPENDS)
            ]
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        futures = [pool.submit(writer, number) for number in range(WRITERS)]
        written = [future.result(timeout=THREAD_TIMEOUT) for future in futures]

    ids = sorted(pk for chunk in written for pk in chunk)
    assert len(ids) == len(set(ids)) == WRITERS * APPENDS
    mine = list(AuditEvent.objects.filter(details__run=token).order_by("id"))
    assert [event.pk for event in mine] == ids
    for number in range(WRITERS):  # each writer's events are in the chain in the order it wrote them
        assert [e.details["seq"] for e in mine if e.details["writer"] == number] == list(range(APPENDS))

    # Linear, no fork: from the first of these events on, each follows the one before it.
    span = list(AuditEvent.objects.filter(id__gte=ids[0]).order_by("id").values_list("prev_hash", "hash"))
    assert all(bytes(span[n + 1][0]) == bytes(span[n][1]) for n in range(len(span) - 1))
    with connections["audit"].cursor() as cursor:
        cursor.execute("SELECT count(*), count(DISTINCT prev_hash), count(DISTINCT hash) FROM audit_auditevent")
        total, prevs, hashes = cursor.fetchone()
    assert total == prevs == hashes
    report = verify_chain()
    assert report.ok, report.problems
    assert report.checked >= WRITERS * APPENDS


# -- Details, actions, outcomes ------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "Alice Canary",
        "lives at 1 Canary Street",
        "line\nbreak",
        "semi;colon",
        "x" * 81,
        {"nested": "dict"},
        b"bytes",
        ["ok", "not ok"],
    ],
    ids=["name", "sentence", "newline", "punctuation", "too-long", "dict", "bytes", "list-with-text"],
)
def test_free_text_in_details_is_refused_and_nothing_is_written(value: object) -> None:
    before = last_event_id()
    with pytest.raises(ValueError, match="audit detail"):
        record_event("patient.read", details={"note": value})
    assert last_event_id() == before


@pytest.mark.parametrize("key", ["first name", "ssn=123", "x" * 81])
def test_detail_keys_must_be_identifiers(key: str) -> None:
    before = last_event_id()
    with pytest.raises(ValueError, match="not an identifier"):
        record_event("patient.read", details={key: 1})
    assert last_event_id() == before


@pytest.mark.parametrize(
    "value", ["900-55-0001", "900550001", "canary1@example.org"], ids=["ssn", "ssn-digits", "email"]
)
def test_phi_shaped_details_are_refused(value: str) -> None:
    before = last_event_id()
    with pytest.raises(ValueError, match="audit detail"):
        record_event("patient.search", details={"value": value})
    assert last_event_id() == before


@pytest.mark.parametrize(
    "action", ["patient", "Patient.read", "patient.", ".read", "patient read", "patient.read;drop", "patient..read", ""]
)
def test_malformed_actions_are_refused(action: str) -> None:
    before = last_event_id()
    with pytest.raises(ValueError, match=r"resource\.verb"):
        record_event(action)
    assert last_event_id() == before


@pytest.mark.parametrize("outcome", ["ok", "SUCCESS", "", "failure"])
def test_unknown_outcomes_are_refused(outcome: str) -> None:
    before = last_event_id()
    with pytest.raises(ValueError, match="outcome"):
        record_event("patient.read", outcome=outcome)
    assert last_event_id() == before


def test_identifiers_numbers_and_uuids_are_accepted() -> None:
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    event = record_event(
        "patient.list",
        details={
            "ids": [b, a],
            "more": (c,),
            "patient": a,
            "count": 2,
            "flag": True,
            "nothing": None,
            "field": "ssn",
            "path": "patients.patient:v2/key_1",
        },
    )
    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.details == {
        "ids": sorted([str(a), str(b)]),
        "more": [str(c)],
        "patient": str(a),
        "count": 2,
        "flag": True,
        "nothing": None,
        "field": "ssn",
        "path": "patients.patient:v2/key_1",
    }
    assert verify_chain().ok


def test_a_malformed_resource_id_is_recorded_as_no_id_never_echoed() -> None:
    event = record_event("patient.read", resource_id="123-45-6789", patient_id="not-a-uuid")
    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.resource_id is None and stored.patient_id is None
    assert "123-45-6789" not in stored.canonical().decode()


# -- Export ----------------------------------------------------------------------------------


def test_export_filters_by_time_since_inclusive_until_exclusive(three_days: list[AuditEvent]) -> None:
    first, second, third = three_days
    window = list(
        export_events(since=dt.datetime(1999, 3, 2, 10, tzinfo=UTC), until=dt.datetime(1999, 3, 3, 10, tzinfo=UTC))
    )
    assert [row["id"] for row in window] == [second.pk]
    since = [row["id"] for row in export_events(since=dt.datetime(1999, 3, 2, tzinfo=UTC))]
    assert second.pk in since and third.pk in since and first.pk not in since
    until = [row["id"] for row in export_events(until=dt.datetime(1999, 3, 2, tzinfo=UTC))]
    assert first.pk in until and second.pk not in until and third.pk not in until


def test_exported_events_carry_their_hashes_and_reverify_offline(three_days: list[AuditEvent]) -> None:
    events = three_days
    rows = list(export_events(since=dt.datetime(1999, 3, 1, tzinfo=UTC), until=dt.datetime(1999, 3, 4, tzinfo=UTC)))
    assert [row["id"] for row in rows] == [event.pk for event in events]
    for row, event in zip(rows, events, strict=True):
        assert row["hash"] == bytes(event.hash).hex() and row["prev_hash"] == bytes(event.prev_hash).hex()
        payload = {key: value for key, value in row.items() if key not in ("id", "hash", "prev_hash")}
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        assert hashlib.sha256(bytes.fromhex(row["prev_hash"]) + canonical).hexdigest() == row["hash"]
    assert rows[1]["prev_hash"] == rows[0]["hash"] and rows[2]["prev_hash"] == rows[1]["hash"]
