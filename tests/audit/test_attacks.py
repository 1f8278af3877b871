"""The security review's attacks on the audit chain, with the application role's SQL: forge,
skip and jam; and what an operator sees when the log cannot be written.

Every crafted row is inserted on the test's own audit connection (``neonpro_app``, inside the
test's transaction), so it, and everything chained after it, rolls back with the test.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.db import DatabaseError, IntegrityError, connections, transaction
from django.test import Client
from django.utils import timezone

from keys.crypto import chain_hash
from keys.exceptions import KeysError, ProviderError
from keys.keyring import keyring
from keys.rotation import rotate_data_key
from neonpro.accounts.models import Notification
from neonpro.audit import alerts
from neonpro.audit.models import AuditEvent
from neonpro.audit.services import (
    ANCHOR_ACTION,
    CHAIN_LOCK,
    MAX_PROBLEMS,
    AuditUnavailableError,
    failure_reason,
    probe_append,
    record_event,
    verify_chain,
)
from neonpro.security import views
from tests.conftest import APP_ROLE
from tests.errors import error_of

pytestmark = pytest.mark.django_db

COLUMNS = (
    "occurred_at, actor_id, actor_role, action, resource_type, resource_id, patient_id, outcome, purpose, "
    "source_ip, user_agent_hash, request_id, details, prev_hash, hash"
)
LOGIN = "/accounts/login/"
PASSWORD = "correct horse battery staple"  # tests/conftest.py user_factory


@pytest.fixture(autouse=True)
def _no_stale_alerts_or_probes() -> Iterator[None]:
    """Alert deduplication lives in Redis and the probe result in the process: start clean."""
    cache.delete_many([alerts.CACHE_PREFIX + alerts.UNAVAILABLE])
    views._probe_memo.clear()
    yield
    views._probe_memo.clear()


@pytest.fixture
def administrator() -> Any:
    """An administrator on the audit connection, which is where alerts are written (so that a
    request that fails and rolls back does not take its alert along): in production both
    connections see every committed account; in a test only this one sees it."""
    from neonpro.accounts.models import User

    return User.objects.db_manager("audit").create_user(username="alerted.admin", password=PASSWORD, role="admin")


def _alerts(kind: str, recipient: Any) -> Any:
    return Notification.objects.using("audit").filter(kind=kind, recipient=recipient)


def _tail() -> AuditEvent:
    tail = AuditEvent.objects.order_by("-id").first()
    assert tail is not None
    return tail


def _forge(
    *, prev_hash: bytes, event_id: str = "DEFAULT", digest: bytes | None = None, key_id: int | None = None
) -> int:
    """Append an event the way anyone with the application role's SQL can: its hash computed
    as the chain used to compute it (SHA-256 of the previous hash and the canonical JSON)."""
    event = AuditEvent(
        occurred_at=timezone.now(),
        actor_id=uuid.uuid4(),
        actor_role="clinician",
        action="record.delete",
        outcome="success",
        details={},
    )
    event.prev_hash = prev_hash
    digest = digest if digest is not None else chain_hash(prev_hash, event.canonical())
    columns, extra, params = COLUMNS, "", []
    if key_id is not None:
        columns, extra, params = COLUMNS + ", key_id", ", %s", [key_id]
    with connections["audit"].cursor() as cursor:
        cursor.execute(
            f"INSERT INTO audit_auditevent (id, {columns}) VALUES ({event_id}, %s, %s, %s, %s, '', NULL, NULL, "
            f"%s, '', NULL, '', NULL, '{{}}'::jsonb, %s, %s{extra}) RETURNING id",
            [
                event.occurred_at,
                event.actor_id,
                event.actor_role,
                event.action,
                event.outcome,
                prev_hash,
                digest,
                *params,
            ],
        )
        return int(cursor.fetchone()[0])


def _verify_command(*args: str) -> str:
    out = io.StringIO()
    call_command("audit", "verify", *args, stdout=out)
    return out.getvalue()


def test_the_attacks_run_as_the_application_role() -> None:
    with connections["audit"].cursor() as cursor:
        cursor.execute("SELECT current_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        assert cursor.fetchone() == (APP_ROLE, False, False)


# -- Forge --------------------------------------------------------------------------------------


@pytest.mark.parametrize("claims_key", [False, True], ids=["no-key-id", "claims-the-active-key"])
def test_a_forged_event_with_a_valid_sha256_hash_is_reported(
    administrator: Any, caplog: pytest.LogCaptureFixture, claims_key: bool
) -> None:
    record_event("audit_test.before_forgery")
    key_id = keyring.mac_keys("audit")[0].key_id if claims_key else None
    forged = _forge(prev_hash=bytes(_tail().hash), key_id=key_id)

    report = verify_chain()
    assert not report.ok
    why = "content does not match its hash" if claims_key else "has no audit key id after the chain was keyed"
    assert len(report.problems) == 1 and report.problems[0].startswith(f"event {forged}:"), report.problems
    assert why in report.problems[0]
    with pytest.raises(CommandError, match=rf"audit chain broken: event {forged}: "):
        _verify_command()

    # The log goes on (chained after the forged row), and the forgery is raised at once.
    caplog.set_level(logging.CRITICAL, logger="neonpro.audit")
    after = record_event("audit_test.after_forgery")
    assert bytes(after.prev_hash) == bytes(AuditEvent.objects.get(pk=forged).hash)
    assert f"event {forged} was not written by the application" in caplog.text
    assert [alert.details for alert in _alerts(alerts.TAMPERING, administrator)] == [{"event": forged}]
    assert verify_chain().problems == report.problems  # nothing else is wrong
    record_event("audit_test.after_forgery")  # the tail is genuine again: no second alert
    assert _alerts(alerts.TAMPERING, administrator).count() == 1


# -- Skip ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("event_id", ["-1", "0", "nextval(pg_get_serial_sequence('audit_auditevent', 'id')) + 1000"])
def test_an_event_id_not_from_the_sequence_is_refused(event_id: str) -> None:
    record_event("audit_test.before_skip")
    with (
        pytest.raises(IntegrityError, match="audit event ids come from the sequence"),
        transaction.atomic(using="audit"),
    ):
        _forge(prev_hash=bytes(_tail().hash), event_id=event_id)


@pytest.fixture
def unconstrained_chain() -> Iterator[None]:
    """An audit table that predates the id CHECK and trigger (the migration keeps rows that
    break them, as evidence), for this test only: a temporary table the audit connection
    resolves first."""
    with connections["audit"].cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE audit_auditevent (LIKE public.audit_auditevent INCLUDING DEFAULTS INCLUDING IDENTITY)"
        )
        cursor.execute("ALTER TABLE pg_temp.audit_auditevent ADD PRIMARY KEY (id), ADD UNIQUE (hash)")
    yield
    with connections["audit"].cursor() as cursor:
        cursor.execute("DROP TABLE pg_temp.audit_auditevent")


@pytest.mark.usefixtures("unconstrained_chain")
def test_rows_with_ids_outside_the_sequence_are_verified_and_named() -> None:
    """The skip: verify used to start at id > 0, so a row at id -1 (a jam row from before this
    release) was never looked at."""
    for n in range(2):
        record_event("audit_test.skip", details={"n": n})
    crafted = _forge(prev_hash=bytes(_tail().hash), event_id="-1")
    record_event("audit_test.skip", details={"n": 2})  # no unique prev_hash: the jam is gone
    report = verify_chain()
    assert report.problems == [
        f"event {crafted}: its id is not from the sequence: a row inserted by hand, outside the chain"
    ]
    assert report.checked == report.walked == 3


# -- Jam ----------------------------------------------------------------------------------------


def _serves(world: Any, api: Any) -> None:
    """Sign-in and a PHI endpoint still work."""
    signed_in = Client().post(LOGIN, {"username": "dr.care", "password": PASSWORD}, secure=True)
    assert signed_in.status_code == 302, signed_in.status_code
    read = api(world.doctor).get(f"/api/v1/patients/{world.alice.pk}/")
    assert read.status_code == 200 and read.json()["id"] == str(world.alice.pk)


def test_the_reviewed_jam_row_is_refused_and_the_system_keeps_working(world: Any, api: Any) -> None:
    """INSERT id = -1, prev_hash = the tail's hash: every later append used to fail on the
    unique prev_hash, and sign-in and every PHI endpoint answered 500 for good."""
    with pytest.raises(IntegrityError, match="ids come from the sequence"), transaction.atomic(using="audit"):
        _forge(prev_hash=bytes(_tail().hash), event_id="-1")
    _serves(world, api)
    assert verify_chain().ok


@pytest.mark.parametrize("rows", ["one-row", "two-rows"])
def test_a_jam_with_ids_from_the_sequence_stops_nothing_and_is_reported(
    world: Any, api: Any, client: Client, administrator: Any, rows: str
) -> None:
    """The same jam with ids the sequence hands out (the database accepts those): a row that
    claims the tail's successor slot, or a pair where one row's prev_hash is the other's
    hash, the hash the next append chains from."""
    head = bytes(_tail().hash)
    if rows == "one-row":
        crafted = [_forge(prev_hash=head)]
    else:
        decoy = uuid.uuid4().bytes * 2
        crafted = [_forge(prev_hash=decoy), _forge(prev_hash=head, digest=decoy)]

    _serves(world, api)
    ready = client.get("/readyz", secure=True)
    assert ready.status_code == 200, ready.json()  # one crafted row takes no instance out

    report = verify_chain()
    assert not report.ok
    assert all(any(p.startswith(f"event {pk}:") for p in report.problems) for pk in crafted), report.problems
    with pytest.raises(CommandError, match="audit chain broken"):
        _verify_command()
    assert _alerts(alerts.TAMPERING, administrator).exists()


def test_prev_hash_is_not_unique_any_more(owner_cursor: Any) -> None:
    owner_cursor.execute(
        "SELECT count(*) FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
        "WHERE i.indrelid = 'audit_auditevent'::regclass AND i.indisunique AND a.attname = 'prev_hash'"
    )
    assert owner_cursor.fetchone() == (0,)


# -- A held chain lock: a clear 503, not a hang, and visible ------------------------------------


@pytest.fixture
def chain_lock_held(settings: Any) -> Iterator[None]:
    """Another session of the application role takes the chain lock and keeps it."""
    settings.NEONPRO_AUDIT_LOCK_TIMEOUT = 1
    db = connections["audit"].settings_dict
    dsn = f"host={db['HOST'] or '127.0.0.1'} port={db['PORT'] or 5432} user={APP_ROLE} dbname={db['NAME']}"
    with psycopg.connect(dsn, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", [CHAIN_LOCK])
        yield
        other.execute("SELECT pg_advisory_unlock(%s)", [CHAIN_LOCK])


def test_a_held_chain_lock_fails_closed_with_a_clear_503_and_says_why(
    chain_lock_held: None, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with pytest.raises(AuditUnavailableError, match="the chain lock is held by another session"):
        record_event("audit_test.locked")

    refused = client.post(LOGIN, {"username": "nobody.here", "password": "hunter2-secret"}, secure=True)
    assert refused.status_code == 503 and refused["Retry-After"] == "30"
    assert b"audit log is unavailable" in refused.content
    anonymous_api = client.get("/api/v1/patients/", secure=True)
    assert anonymous_api.status_code == 503
    assert error_of(anonymous_api) == {
        "code": "audit_unavailable",
        "message": "The audit log is unavailable, so this request was refused; try again shortly.",
        "fields": {},
    }

    ready = client.get("/readyz", secure=True)
    assert ready.status_code == 503
    assert ready.json() == {
        "database": "ok",
        "cache": "ok",
        "audit": "error",
        "ready": False,
        "reasons": ["audit log not writable: the chain lock is held by another session (lock timeout)"],
    }
    views._probe_memo.clear()
    health = client.get("/healthz", secure=True)
    assert health.status_code == 503 and health.json() == {"database": "ok", "cache": "ok", "audit": "error"}

    critical = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert critical and all("audit log unavailable" in r.getMessage() for r in critical)
    assert "nobody.here" not in caplog.text and "hunter2" not in caplog.text


def test_the_lock_released_the_service_is_ready_again(settings: Any, client: Client) -> None:
    settings.NEONPRO_AUDIT_LOCK_TIMEOUT = 1
    assert probe_append() is None
    ready = client.get("/readyz", secure=True)
    assert ready.status_code == 200
    assert ready.json() == {"database": "ok", "cache": "ok", "audit": "ok", "ready": True, "reasons": []}
    before = AuditEvent.objects.count()
    assert probe_append() is None
    assert AuditEvent.objects.count() == before  # the probe leaves no event


# -- Alerts when the log cannot be written -------------------------------------------------------


def test_administrators_are_notified_once_per_interval(administrator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable(purpose: str) -> list[Any]:
        raise ProviderError("the master key provider did not answer")

    monkeypatch.setattr(keyring, "mac_keys", unavailable)
    for _ in range(2):
        with pytest.raises(AuditUnavailableError, match=r"audit key unavailable \(ProviderError\)"):
            record_event("audit_test.no_key")
    assert [n.details for n in _alerts(alerts.UNAVAILABLE, administrator)] == [{}]


def test_an_alert_that_cannot_be_delivered_is_logged_and_never_raises(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any, **kwargs: Any) -> bool:
        raise ConnectionError("redis is down")

    monkeypatch.setattr(cache, "add", broken)
    alerts.audit_unavailable("audit_test.action", "database error (OperationalError)")
    assert "could not notify administrators of audit_unavailable (ConnectionError)" in caplog.text


def test_failure_reasons_name_the_kind_of_failure_only(monkeypatch: pytest.MonkeyPatch) -> None:
    assert failure_reason(KeysError("x")) == "audit key unavailable (KeysError)"
    assert failure_reason(DatabaseError("no sqlstate")) == "database error (DatabaseError)"
    # A database error inside the append itself: an id the sequence did not issue.
    monkeypatch.setattr("neonpro.audit.services._next_id", lambda alias: -5)
    with pytest.raises(AuditUnavailableError, match=r"database error \(IntegrityError, SQLSTATE 23514\)"):
        record_event("audit_test.bad_id")


# -- Keyed hashing: rotation, legacy rows, a flood of crafted rows -------------------------------


def test_the_chain_verifies_across_an_audit_key_rotation() -> None:
    first = record_event("audit_test.before_rotation")
    rotate_data_key("audit")
    second = record_event("audit_test.after_rotation")
    assert first.key_id is not None and second.key_id is not None and first.key_id != second.key_id
    report = verify_chain()
    assert report.ok, report.problems


@pytest.fixture
def empty_chain() -> Iterator[None]:
    with connections["audit"].cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE audit_auditevent (LIKE public.audit_auditevent INCLUDING ALL)")
    yield
    with connections["audit"].cursor() as cursor:
        cursor.execute("DROP TABLE pg_temp.audit_auditevent")


def _legacy(prev_hash: bytes) -> tuple[int, bytes]:
    """An event as the previous release wrote it: no key id, SHA-256."""
    event = AuditEvent(occurred_at=timezone.now(), action="patient.read", outcome="success", details={"n": 1})
    digest = chain_hash(prev_hash, event.canonical())
    with connections["audit"].cursor() as cursor:
        cursor.execute(
            f"INSERT INTO audit_auditevent ({COLUMNS}) VALUES (%s, NULL, '', %s, '', NULL, NULL, %s, '', NULL, '', "
            "NULL, %s::jsonb, %s, %s) RETURNING id",
            [event.occurred_at, event.action, event.outcome, json.dumps(event.details), prev_hash, digest],
        )
        return int(cursor.fetchone()[0]), digest


@pytest.mark.usefixtures("empty_chain")
def test_legacy_events_are_anchored_by_the_first_keyed_one_and_only_lead_the_chain(
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, head = _legacy(bytes(32))
    second, head = _legacy(head)
    event = record_event("audit_test.first_keyed")

    anchor = AuditEvent.objects.get(action=ANCHOR_ACTION)
    assert anchor.pk == second + 1 and event.pk == anchor.pk + 1
    assert anchor.details == {"legacy_events": 2, "legacy_last_id": second, "legacy_head": head.hex()}
    assert bytes(anchor.prev_hash) == head and anchor.key_id is not None
    report = verify_chain()
    assert report.ok, report.problems
    assert (report.checked, report.legacy) == (4, 2)
    assert "2 events from before keyed hashing" in _verify_command()

    caplog.set_level(logging.CRITICAL, logger="neonpro.audit")
    forged, _ = _legacy(bytes(event.hash))  # an unkeyed row now: a forgery
    record_event("audit_test.after_legacy_forgery")  # chained after it, and alerted
    assert f"event {forged} was not written by the application" in caplog.text
    assert verify_chain().problems == [f"event {forged}: has no audit key id after the chain was keyed: it was forged"]


@pytest.mark.usefixtures("empty_chain")
def test_verify_stops_after_a_readable_number_of_problems() -> None:
    record_event("audit_test.flood")
    for _ in range(MAX_PROBLEMS + 5):
        _forge(prev_hash=uuid.uuid4().bytes * 2)
    report = verify_chain(batch=7)
    assert len(report.problems) == MAX_PROBLEMS + 1
    assert report.problems[-1] == f"(stopped after {MAX_PROBLEMS} problems)"
