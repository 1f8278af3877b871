"""Audit fixtures: committed events written from threads, and a DBA who tampers and restores.

A test's own audit writes stay inside its transaction (and hold the chain lock until it
rolls back), so anything that needs committed rows — tampering as the owner, parallel
writers — writes from threads, each with its own connections, in autocommit. Committed
events stay in the test database (the log is append-only), so nothing here assumes an
empty chain, and every tampering is undone exactly before the test ends.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import connections

from neonpro.audit.models import AuditEvent
from neonpro.audit.services import record_event
from tests.conftest import in_thread

__all__ = ["in_thread"]

THREAD_TIMEOUT = 60  # seconds; a hung thread fails the test instead of the run
LOCK_TIMEOUT = "5s"  # the owner's DDL fails fast if a test transaction still holds the table


def run_token() -> str:
    """A detail value that tags the events of one test (details accept identifiers and
    canonical UUIDs only; a hex string may hold a run of digits, which identifiers may not)."""
    return str(uuid.uuid4())


@pytest.fixture
def three_days() -> list[AuditEvent]:
    """Three events at 10:00 UTC on 1-3 March 1999: a window no other test writes into."""
    token = run_token()
    return [
        record_event(
            "audit_test.export", details={"run": token, "day": day}, now=dt.datetime(1999, 3, day, 10, tzinfo=dt.UTC)
        )
        for day in (1, 2, 3)
    ]


@pytest.fixture
def commit_events() -> Callable[..., list[int]]:
    """Append ``count`` events from a thread, committed; return their ids in chain order."""

    def commit(count: int, *, action: str = "audit_test.append") -> list[int]:
        token = run_token()

        def write() -> list[int]:
            return [record_event(action, details={"run": token, "seq": n}).pk for n in range(count)]

        return in_thread(write)

    return commit


class DBA:
    """The table owner on its own autocommit connection: it sees committed rows only."""

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor
        cursor.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")

    def row(self, pk: int) -> tuple[Any, ...] | None:
        self.cursor.execute("SELECT * FROM audit_auditevent WHERE id = %s", [pk])
        return self.cursor.fetchone()  # type: ignore[no-any-return]

    def rows(self, ids: list[int]) -> list[tuple[Any, ...]]:
        self.cursor.execute("SELECT * FROM audit_auditevent WHERE id = ANY(%s) ORDER BY id", [ids])
        return list(self.cursor.fetchall())

    @contextmanager
    def without_triggers(self) -> Iterator[Any]:
        """One transaction with the append-only trigger off: nobody else ever sees it off."""
        with self.cursor.connection.transaction():
            self.cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER USER")
            yield self.cursor
            self.cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER USER")

    @contextmanager
    def tampered(self, ids: list[int], *statements: tuple[str, list[Any]]) -> Iterator[None]:
        """Save rows ``ids``, run ``statements`` on them with the trigger off (committed), and
        put the rows back exactly when the block ends."""
        original = self.rows(ids)
        assert [row[0] for row in original] == sorted(ids), "tamper only committed events"
        self.cursor.execute(
            "CREATE TEMP TABLE pristine_audit AS SELECT * FROM audit_auditevent WHERE id = ANY(%s)", [ids]
        )
        try:
            with self.without_triggers() as cursor:
                for statement, params in statements:
                    cursor.execute(statement, params)
            yield
        finally:
            with self.without_triggers() as cursor:
                cursor.execute("DELETE FROM audit_auditevent WHERE id = ANY(%s)", [ids])
                cursor.execute("INSERT INTO audit_auditevent SELECT * FROM pristine_audit")
            self.cursor.execute("DROP TABLE pristine_audit")
            assert self.rows(ids) == original, "the tampered events were not restored exactly"


@pytest.fixture
def dba(owner_cursor: Any) -> DBA:
    return DBA(owner_cursor)


def audit_rows_as_text(after_id: int) -> list[tuple[int, str, str]]:
    """(id, action, every column as JSON text) of each audit row with id > ``after_id``,
    read with raw SQL on the audit connection (where this test's own events are visible)."""
    with connections["audit"].cursor() as cursor:
        cursor.execute(
            "SELECT a.id, a.action, row_to_json(a)::text FROM audit_auditevent a WHERE a.id > %s ORDER BY a.id",
            [after_id],
        )
        return [(int(pk), action, text) for pk, action, text in cursor.fetchall()]


def last_event_id() -> int:
    """The highest event id this test can see (0 for an empty chain)."""
    return AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
