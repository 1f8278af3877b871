"""An edited, deleted or reordered event breaks the chain, and the verifier names where.

The events are committed from a thread and altered by the table owner (a DBA with the
append-only trigger switched off, in one transaction), then restored exactly. Everything
that reads the audit table runs on threads too: this test's own transaction must hold no
lock on the table, or the owner's ALTER TABLE would wait for it.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from keys.crypto import chain_hash
from neonpro.audit.models import AuditEvent
from neonpro.audit.services import ChainReport, verify_chain
from tests.audit.conftest import in_thread

pytestmark = pytest.mark.django_db


def _verify() -> ChainReport:
    return in_thread(verify_chain)  # type: ignore[no-any-return]


def _verify_command() -> str:
    def run() -> str:
        out = io.StringIO()
        call_command("audit", "verify", stdout=out)
        return out.getvalue()

    return in_thread(run)  # type: ignore[no-any-return]


def _assert_detected(event_id: int, why: str) -> None:
    report = _verify()
    assert not report.ok
    assert report.problems[0].startswith(f"event {event_id}:"), report.problems
    assert why in report.problems[0]
    with pytest.raises(CommandError, match=rf"audit chain broken: event {event_id}:"):
        _verify_command()


def test_an_untouched_chain_verifies(commit_events: Any) -> None:
    commit_events(3)
    report = _verify()
    assert report.ok, report.problems
    assert report.checked >= 3
    assert f"Audit chain intact: {report.checked} events verified." in _verify_command()


@pytest.mark.parametrize(
    "change",
    [
        "outcome = 'denied'",
        "action = 'audit_test.other'",
        "actor_role = 'admin'",
        "occurred_at = occurred_at + interval '1 second'",
        "details = details || '{\"seq\": 99}'::jsonb",
        "patient_id = gen_random_uuid()",
    ],
    ids=["outcome", "action", "actor_role", "occurred_at", "details", "patient_id"],
)
def test_an_edited_event_is_detected(commit_events: Any, dba: Any, change: str) -> None:
    _, edited, _ = commit_events(3)
    with dba.tampered([edited], (f"UPDATE audit_auditevent SET {change} WHERE id = %s", [edited])):
        _assert_detected(edited, "content does not match its hash")
    assert _verify().ok


def test_an_edited_event_with_a_recomputed_hash_is_detected_itself(commit_events: Any, dba: Any) -> None:
    """The forge: whoever edits an event and recomputes its hash the way anyone can (SHA-256)
    no longer gets past it: the hash is an HMAC under the audit key. (Before keyed hashing
    only the next event's broken link showed it, and a forger who rewrote the rest of the
    chain, or appended at the tail, went unnoticed.)"""
    _, edited, following = commit_events(3)

    def forge() -> bytes:
        event = AuditEvent.objects.get(pk=edited)
        event.outcome = "denied"
        return chain_hash(bytes(event.prev_hash), event.canonical())

    statement = "UPDATE audit_auditevent SET outcome = 'denied', hash = %s WHERE id = %s"
    with dba.tampered([edited], (statement, [in_thread(forge), edited])):
        _assert_detected(edited, "content does not match its hash")
        broken_link = f"event {following}: does not follow the previous event (after event {edited})"
        assert _verify().problems[1].startswith(broken_link)
    assert _verify().ok


def test_a_deleted_event_is_detected(commit_events: Any, dba: Any) -> None:
    before, deleted, after = commit_events(3)
    with dba.tampered([deleted], ("DELETE FROM audit_auditevent WHERE id = %s", [deleted])):
        assert dba.row(deleted) is None
        _assert_detected(after, f"does not follow the previous event (after event {before})")
    assert _verify().ok


def test_a_reordered_pair_is_detected(commit_events: Any, dba: Any) -> None:
    before, first, second = commit_events(3)
    swap = [
        ("CREATE TEMP TABLE swapped_audit AS SELECT * FROM audit_auditevent WHERE id = ANY(%s)", [[first, second]]),
        ("UPDATE swapped_audit SET id = CASE id WHEN %s THEN %s ELSE %s END", [first, second, first]),
        ("DELETE FROM audit_auditevent WHERE id = ANY(%s)", [[first, second]]),
        ("INSERT INTO audit_auditevent SELECT * FROM swapped_audit", []),
        ("DROP TABLE swapped_audit", []),
    ]
    original = dba.rows([first, second])
    with dba.tampered([first, second], *swap):
        swapped = dba.rows([first, second])
        assert swapped[0][1:] == original[1][1:] and swapped[1][1:] == original[0][1:]
        _assert_detected(first, f"does not follow the previous event (after event {before})")
    assert _verify().ok
