"""record_event appends one hash-chained event; verify_chain walks it; details carry no free text."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from zoneinfo import ZoneInfo

import pytest
from django.db import connections
from django.utils import timezone

from keys.crypto import sign, verify_signature
from keys.keyring import keyring
from keys.signals import key_event
from neonpro.audit.models import GENESIS, AuditEvent
from neonpro.audit.services import (
    CHAIN_LABEL,
    SYSTEM_ACTOR_ID,
    Actor,
    bind_request,
    current_request,
    export_events,
    link_bytes,
    record_event,
    unbind_request,
    verify_chain,
)
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
        # Keyed: an HMAC under the active audit key (named on the row) of the link, never a
        # plain SHA-256 that anyone could compute.
        assert event.key_id == keyring.mac_keys("audit")[0].key_id
        assert bytes(event.hash) != hashlib.sha256(bytes(event.prev_hash) + event.canonical()).digest()
        assert bytes(event.hash) == sign(link_bytes(event), purpose="audit", label=CHAIN_LABEL)[1]
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


def test_exported_events_carry_their_hashes_and_reverify_with_the_audit_key(three_days: list[AuditEvent]) -> None:
    events = three_days
    rows = list(export_events(since=dt.datetime(1999, 3, 1, tzinfo=UTC), until=dt.datetime(1999, 3, 4, tzinfo=UTC)))
    assert [row["id"] for row in rows] == [event.pk for event in events]
    for row, event in zip(rows, events, strict=True):
        assert row["hash"] == bytes(event.hash).hex() and row["prev_hash"] == bytes(event.prev_hash).hex()
        assert row["key_id"] == event.key_id is not None
        payload = {key: value for key, value in row.items() if key not in ("id", "hash", "prev_hash", "key_id")}
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        link = bytes.fromhex(row["prev_hash"]) + row["id"].to_bytes(8, "big", signed=True) + canonical
        # Whoever holds the audit key reverifies an export; without it, nobody can recompute it.
        assert verify_signature(
            link, bytes.fromhex(row["hash"]), purpose="audit", label=CHAIN_LABEL, key_id=row["key_id"]
        )
        assert hashlib.sha256(bytes.fromhex(row["prev_hash"]) + canonical).hexdigest() != row["hash"]
    assert rows[1]["prev_hash"] == rows[0]["hash"] and rows[2]["prev_hash"] == rows[1]["hash"]


# -- UUID strings: only the canonical form passes ---------------------------------------------

CANONICAL = "12345678-9abc-4def-8123-456789abcdef"


@pytest.mark.parametrize(
    "value",
    [
        CANONICAL.upper(),
        "A2345678-9ABC-4DEF-8123-456789ABCDEF",  # uppercase that starts with a letter
        "{" + CANONICAL + "}",
        "urn:uuid:" + CANONICAL,
        "uuid:" + CANONICAL,
        CANONICAL.replace("-", ""),
        "a2345678" + CANONICAL[8:].replace("-", ""),  # 32 hex digits that start with a letter
        "1234-5678-9abc-4def-8123-4567-89ab-cdef",  # hyphens in the wrong places
        "123-45-6789-00000000000000000000000",  # an SSN, padded to parse as a UUID
        "0x" + CANONICAL.replace("-", "")[2:],
        "1234_5678_9abc_4def_8123_4567_89ab_cdef",
        CANONICAL + "\n",
    ],
    ids=[
        "uppercase",
        "uppercase-letter-first",
        "braces",
        "urn",
        "uuid-prefix",
        "no-hyphens",
        "no-hyphens-letter-first",
        "stray-hyphens",
        "ssn-inside",
        "0x",
        "underscores",
        "newline",
    ],
)
def test_uuid_strings_in_any_non_canonical_form_are_refused(value: str) -> None:
    before = last_event_id()
    with pytest.raises(ValueError, match="never free text"):
        record_event("patient.read", details={"id": value})
    with pytest.raises(ValueError, match="never free text"):
        record_event("patient.read", details={"ids": [CANONICAL, value]})
    assert last_event_id() == before


def test_a_canonical_uuid_string_is_stored_as_given() -> None:
    event = record_event("patient.read", details={"id": CANONICAL, "ids": [CANONICAL, str(uuid.uuid4())]})
    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.details["id"] == CANONICAL
    assert CANONICAL in stored.details["ids"]


@pytest.mark.parametrize(
    "value",
    [
        "MRN-000123",
        "ssn:900-55-0001",
        "x900550001",
        "dob:1980-01-02",
        "phone:5550001234",
        "zip_90210",
        "patients\n",
        "12345678900000000000000000000000",  # an SSN padded to 32 digits (parses as a UUID)
    ],
)
def test_phi_behind_an_identifier_prefix_is_refused(value: str) -> None:
    before = last_event_id()
    with pytest.raises(ValueError, match="never free text"):
        record_event("patient.search", details={"query": value})
    assert last_event_id() == before


@pytest.mark.parametrize("key", ["ssn_900550001", "field\n", "1st"])
def test_detail_keys_are_held_to_the_same_rule(key: str) -> None:
    with pytest.raises(ValueError, match="not an identifier"):
        record_event("patient.read", details={key: 1})


@pytest.mark.parametrize("value", ["sha256", "aes_256_gcm", "v1.2.3", "x509", "a" * 80, "0" * 40 + "abc", "f" * 128])
def test_identifiers_with_short_digit_runs_and_hex_digests_pass(value: str) -> None:
    event = record_event("patient.read", details={"value": value})
    assert AuditEvent.objects.get(pk=event.pk).details == {"value": value}


@pytest.mark.parametrize("value", ["1" + "f" * 30, "1" + "f" * 128, "1" + "F" * 63, "g" * 81])
def test_digests_and_identifiers_have_bounds(value: str) -> None:
    with pytest.raises(ValueError, match="never free text"):
        record_event("patient.read", details={"value": value})


def test_an_action_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(ValueError, match=r"resource\.verb"):
        record_event("patient.read\n")


def test_unsupported_detail_types_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unsupported type float"):
        record_event("patient.read", details={"score": 0.5})


def test_collections_of_details_are_stored_sorted_and_checked_item_by_item() -> None:
    a, b = sorted([str(uuid.uuid4()), str(uuid.uuid4())])
    event = record_event("patient.list", details={"set": {b, a}, "frozen": frozenset([2, 1]), "nested": [[b], [a]]})
    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.details == {"set": [a, b], "frozen": [1, 2], "nested": [[a], [b]]}
    with pytest.raises(ValueError, match="'nested'"):
        record_event("patient.list", details={"nested": [["ok"], ["Alice Canary"]]})


# -- defaults, and the actor outside and inside a request --------------------------------------


def test_an_event_outside_a_request_has_no_actor_and_empty_defaults() -> None:
    before = timezone.now()
    event = record_event("audit_test.defaults")
    after = timezone.now()
    stored = AuditEvent.objects.get(pk=event.pk)
    assert (stored.actor_id, stored.actor_role) == (None, "")
    assert (stored.source_ip, stored.user_agent_hash, stored.request_id) == (None, "", None)
    assert (stored.resource_type, stored.resource_id, stored.patient_id) == ("", None, None)
    assert (stored.outcome, stored.purpose, stored.details) == ("success", "", {})
    assert before <= stored.occurred_at <= after
    assert event.occurred_at.utcoffset() == dt.timedelta(0)


def test_an_explicit_actor_wins_over_the_request_and_missing_attributes_are_empty() -> None:
    user_id = uuid.uuid4()
    token = bind_request(
        actor_id=uuid.uuid4(), actor_role="clinician", source_ip="10.0.0.9", user_agent="UA", request_id=uuid.uuid4()
    )
    try:
        explicit = record_event("audit_test.actor", actor=Actor(user_id=user_id, role="patient"))
        anonymous = record_event("audit_test.actor", actor=object())
    finally:
        unbind_request(token)
    assert (explicit.actor_id, explicit.actor_role) == (user_id, "patient")
    assert (anonymous.actor_id, anonymous.actor_role) == (None, "")
    assert explicit.source_ip == anonymous.source_ip == "10.0.0.9"  # the request still says where from


def test_a_bound_request_is_every_events_default_until_it_is_unbound() -> None:
    actor, request_id = uuid.uuid4(), uuid.uuid4()
    token = bind_request(actor_id=actor, actor_role="admin", source_ip="", user_agent="", request_id=request_id)
    try:
        inside = record_event("audit_test.request")
        assert current_request().actor_id == actor
    finally:
        unbind_request(token)
    outside = record_event("audit_test.request")
    assert (inside.actor_id, inside.actor_role, inside.request_id) == (actor, "admin", request_id)
    assert (inside.source_ip, inside.user_agent_hash) == (None, "")  # nothing bound: nothing stored
    assert (outside.actor_id, outside.actor_role, outside.request_id) == (None, "", None)


def test_key_events_outside_a_request_are_the_system_and_inside_one_the_requester() -> None:
    outside = record_event("audit_test.marker")
    key_event.send("tests", action="key.test_event", outcome="success", key_id=7, purpose="field", details={})
    system_event = AuditEvent.objects.filter(action="key.test_event", id__gt=outside.pk).get()
    assert (system_event.actor_id, system_event.actor_role) == (SYSTEM_ACTOR_ID, "system")
    assert system_event.details == {"key_id": 7, "purpose": "field"}

    admin = uuid.uuid4()
    token = bind_request(actor_id=admin, actor_role="admin", source_ip=None, user_agent="", request_id=uuid.uuid4())
    try:
        key_event.send("tests", action="key.test_event", outcome="success", key_id=None, purpose="", details={})
    finally:
        unbind_request(token)
    requested = AuditEvent.objects.filter(action="key.test_event").order_by("-id").first()
    assert requested is not None
    assert (requested.actor_id, requested.actor_role) == (admin, "admin")
    assert requested.details == {"key_id": None, "purpose": None}


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("", None),
        ("not-an-ip", None),
        ("10.0.0.1", "10.0.0.1"),
        ("2001:DB8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
        ("::ffff:10.0.0.1", "::ffff:10.0.0.1"),  # IPv4-mapped, as dual-stack listeners report clients
        ("0:0:0:0:0:ffff:0a00:0001", "::ffff:10.0.0.1"),
        ("::ffff:0.0.0.0", "::ffff:0.0.0.0"),
        ("::10.0.0.1", "::10.0.0.1"),  # IPv4-compatible
        ("::0.0.0.2", "::2"),
        ("::1", "::1"),
        ("::", "::"),
        ("2001:db8::ffff:1.2.3.4", "2001:db8::ffff:102:304"),
    ],
)
def test_the_source_address_is_stored_canonical_or_not_at_all(given: str, stored: str | None) -> None:
    token = bind_request(actor_id=None, actor_role="", source_ip=given, user_agent="", request_id=uuid.uuid4())
    try:
        event = record_event("audit_test.ip")
    finally:
        unbind_request(token)
    assert event.source_ip == AuditEvent.objects.get(pk=event.pk).source_ip == stored
    report = verify_chain()
    assert report.ok, report.problems


def test_resource_and_patient_ids_are_taken_as_uuids_or_strings() -> None:
    resource = uuid.uuid4()
    event = record_event("patient.read", resource_id=str(resource), patient_id=resource)
    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.resource_id == stored.patient_id == resource
    empty = record_event("patient.read", resource_id="", patient_id=None)
    assert (empty.resource_id, empty.patient_id) == (None, None)


# -- a chain that starts at id 1 ----------------------------------------------------------------


@pytest.fixture
def empty_chain() -> Iterator[None]:
    """A fresh, empty audit table for this test only: a temporary copy of the real one (same
    columns, constraints and identity, counting from 1), which PostgreSQL resolves before the
    real table on the audit connection. It disappears when the test's transaction rolls back."""
    with connections["audit"].cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE audit_auditevent (LIKE public.audit_auditevent INCLUDING ALL)")
    yield
    with connections["audit"].cursor() as cursor:
        cursor.execute("DROP TABLE pg_temp.audit_auditevent")


def _temp_update(sql: str, params: list[object]) -> None:
    with connections["audit"].cursor() as cursor:
        cursor.execute(f"UPDATE pg_temp.audit_auditevent SET {sql}", params)


@pytest.mark.usefixtures("empty_chain")
def test_a_chain_that_starts_at_id_one_verifies_from_its_first_event() -> None:
    assert verify_chain().checked == 0 and verify_chain().ok  # empty
    events = [record_event("audit_test.genesis", details={"n": n}) for n in range(3)]
    assert [e.pk for e in events] == [1, 2, 3]
    assert bytes(events[0].prev_hash) == GENESIS
    report = verify_chain(batch=2)
    assert report.ok, report.problems
    assert report.checked == 3


@pytest.mark.usefixtures("empty_chain")
def test_an_edited_first_event_is_named() -> None:
    for n in range(3):
        record_event("audit_test.genesis", details={"n": n})
    _temp_update("purpose = 'edited' WHERE id = %s", [1])
    assert verify_chain().problems == [
        "event 1: content does not match its hash: the event was edited, or forged without the audit key"
    ]


@pytest.mark.usefixtures("empty_chain")
def test_a_first_event_that_does_not_follow_genesis_is_named() -> None:
    record_event("audit_test.genesis")
    _temp_update("prev_hash = %s WHERE id = %s", [b"\x01" * 32, 1])
    [problem] = verify_chain().problems
    assert problem.startswith("event 1: does not follow the previous event (at the start)")


@pytest.mark.usefixtures("empty_chain")
def test_a_broken_link_names_the_event_and_the_one_before() -> None:
    for n in range(3):
        record_event("audit_test.genesis", details={"n": n})
    _temp_update("prev_hash = %s WHERE id = %s", [b"\x02" * 32, 3])
    report = verify_chain()
    assert report.checked == 2
    assert report.problems == [
        "event 3: does not follow the previous event (after event 2): an event was deleted, inserted or reordered"
    ]


def test_an_event_stores_every_field_it_was_given() -> None:
    resource, patient = uuid.uuid4(), uuid.uuid4()
    event = record_event(
        "patient.export",
        outcome="denied",
        resource_type="patients.patient",
        resource_id=resource,
        patient_id=patient,
        purpose="treatment",
        details={"count": 1},
    )
    stored = AuditEvent.objects.get(pk=event.pk)
    assert (stored.action, stored.outcome, stored.purpose) == ("patient.export", "denied", "treatment")
    assert (stored.resource_type, stored.resource_id, stored.patient_id) == ("patients.patient", resource, patient)
    assert stored.details == {"count": 1}


def test_mixed_collections_sort_by_their_text() -> None:
    thing = uuid.UUID(CANONICAL)
    event = record_event("patient.list", details={"mixed": [thing, "field", 10, None, True]})
    assert AuditEvent.objects.get(pk=event.pk).details == {"mixed": [10, CANONICAL, None, True, "field"]}


def test_events_hash_their_utc_time_whatever_the_local_time_zone(settings) -> None:  # type: ignore[no-untyped-def]
    settings.TIME_ZONE = "Asia/Kolkata"  # the process's local time too (Django calls tzset)
    first = record_event("audit_test.local_time")
    second = record_event("audit_test.local_time", now=dt.datetime(2024, 6, 1, 12, 0))  # naive: local
    assert first.occurred_at.utcoffset() == second.occurred_at.utcoffset() == dt.timedelta(0)
    report = verify_chain()
    assert report.ok, report.problems


def test_the_chain_is_read_and_written_on_the_audit_connection_whatever_the_routers(settings) -> None:  # type: ignore[no-untyped-def]
    """The services name their connection: the AuditRouter is not what keeps one chain."""
    settings.DATABASE_ROUTERS = []
    first = record_event("audit_test.unrouted", details={"n": 1})
    second = record_event("audit_test.unrouted", details={"n": 2})
    assert bytes(second.prev_hash) == bytes(first.hash)
    exported = [row["id"] for row in export_events(since=first.occurred_at)]
    assert first.pk in exported and second.pk in exported
    report = verify_chain()
    assert report.ok, report.problems
    assert report.checked == AuditEvent.objects.using("audit").count()  # including this test's own
